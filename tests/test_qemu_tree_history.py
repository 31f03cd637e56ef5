# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's history as trees: every release and release candidate builds, loads and runs, or
says in one line why not (issue 21, points 3 and 4).

The trees are checkouts of ``../shared/qemu-history/qemu.bundle`` (tests/qemu_history.py:
one clone per module, one worktree per revision), so each is judged by the rules its own
history contains, as a user's QEMU checkout is. The default suite takes a handful: the
seed commit (f9494614898f), v3.1.0 and v4.2.0 (ram_load_cleanup asks ramblock_is_pmem and
pmem_persist, which made them fail at load time), and the dev commit 7aa6070d09 (an
Error ** with an int return). ``test_every_tag_builds_loads_and_runs`` takes every tag from
v2.11.0-rc0 to v10.1.3 and is marked ``slow`` (``make check``).

Expected absences and layers were read from the trees by hand (grep, and the history
audit of issue 21), never from the extractor or the build under test. The planted trees
are copies with one added call of a function that exists nowhere; the expected line names
the file:line where it was planted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import qemu_history
from qemu_history import checkout, upstream

pytest.importorskip("tree_sitter_c", reason="the qemu-tree extra (tree-sitter-c) is absent")

from recvmap.fuzz.subjects.qemu_tree.build import BuildError, build_tree  # noqa: E402
from recvmap.fuzz.subjects.qemu_tree.ram import ram_problem  # noqa: E402
from recvmap.fuzz.subjects.qemu_tree.repo import Repo  # noqa: E402
from recvmap.pymodel.releases import SEED  # noqa: E402
from recvmap.qemu_ref.loader import load  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not qemu_history.available(), reason=qemu_history.SKIP_REASON),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the trees"),
]

RECVMAP = [sys.executable, "-c", "import sys; from recvmap.fuzz.cli import main; sys.exit(main())"]
NOWHERE = "recvmap_planted_nowhere"
NOT_DECLARED = "which is declared nowhere in the tree's compiled files or recvmap's glue"
NOT_DEFINED = "which is defined nowhere in the tree's compiled files or recvmap's glue"

# The ram ABI functions each era lacks, by VERSION (first tags in the bundle:
# test_byte_offset v2.12.0-rc0, the recovery stream v3.0.0-rc0, set_offset v9.1.0-rc0).
NOT_YET = {
    (0,): {
        "ramblock_recv_bitmap_test_byte_offset",
        "ramblock_recv_bitmap_set_offset",
        "ramblock_recv_bitmap_send",
        "ram_dirty_bitmap_reload",
    },
    (2, 11, 90): {
        "ramblock_recv_bitmap_set_offset",
        "ramblock_recv_bitmap_send",
        "ram_dirty_bitmap_reload",
    },
    (2, 12, 90): {"ramblock_recv_bitmap_set_offset"},
    (9, 0, 90): set(),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the bundle, shared by the tests of this module."""
    return qemu_history.clone(tmp_path_factory.mktemp("history") / "qemu")


def tree_of(bundle: Path, rev: str) -> Path:
    """The checkout of ``rev`` (a tag, or a commit), made once per clone."""
    dest = bundle.parent / "checkouts" / rev
    if not dest.is_dir():
        dest.parent.mkdir(exist_ok=True)
        checkout(bundle, rev, dest)
    return dest


def copy_of(bundle: Path, rev: str, dest: Path) -> Path:
    """The files of ``rev`` without git (a tree to plant a call in)."""
    dest.mkdir()
    Repo(bundle).materialise(rev, dest)
    return dest


def tree_version(tree: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in (tree / "VERSION").read_text().split()[0].split("."))


def not_yet(tree: Path) -> set[str]:
    """The ram ABI functions the tree's era lacks."""
    era = max(k for k in NOT_YET if k <= tree_version(tree))
    return NOT_YET[era]


def fuzz(tree: Path, tmp: Path, seconds: float, *options: str) -> tuple[int, str, dict]:
    """``recvmap fuzz --qemu-tree tree`` on 64-bit words: (exit status, output, summary)."""
    summary = tmp / "summary.json"
    proc = subprocess.run(
        [
            *RECVMAP,
            "fuzz",
            "--qemu-tree",
            str(tree),
            "--word-bits",
            "64",
            "--max-time",
            str(seconds),
            "--seed",
            "1",
            "--quiet",
            "--out",
            str(tmp / "out"),
            "--json",
            str(summary),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=seconds * 6 + 120,
    )
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    data = json.loads(summary.read_text()) if summary.is_file() else {}
    return proc.returncode, text, data


def layers_run(summary: dict) -> list[str]:
    return sorted(j["layer"] for j in summary.get("jobs", ()) if j.get("programs", 0) > 0)


def expected_layers(tree: Path) -> list[str]:
    """bitmap and ram everywhere from the seed; recovery from v3.0.0-rc0 (VERSION 2.12.90)."""
    recovery = tree_version(tree) >= (2, 12, 90)
    return sorted(["bitmap", "ram", *(["recovery"] if recovery else [])])


def check_tree(tree: Path, tmp: Path, seconds: float) -> None:
    """Builds, loads with exactly its era's ram functions, runs every layer it has, clean
    under the rules its history contains."""
    lib = load(build_tree(tree), bits=64, partial=True)
    problem = ram_problem(tree)
    assert problem is None, str(problem)
    ram = {d for d in lib.missing if d.startswith(("ram", "postcopy", "qemu_ram"))}
    assert ram == not_yet(tree), lib.missing
    status, text, summary = fuzz(tree, tmp, seconds)
    assert status == 0, text
    assert layers_run(summary) == expected_layers(tree), text


# --- the default suite: a handful of representative trees -----------------------------------


def test_the_seed_runs_the_ram_layer_on_its_own_functions(bundle: Path, tmp_path: Path) -> None:
    """Clean under the seed's rules, the discard of a target page bigger than the host's
    included (fallocate on fd -1 before db144f7000: -EBADF; the glue's fallocate fails on
    no file as the kernel's does)."""
    check_tree(tree_of(bundle, upstream(bundle, SEED)), tmp_path, 4)


@pytest.mark.parametrize("tag", ["v3.1.0", "v4.2.0"])
def test_releases_that_persist_pmem_build_load_and_run(
    bundle: Path, tmp_path: Path, tag: str
) -> None:
    """ram_load_cleanup asks ramblock_is_pmem (exec.c:4068 at v3.1.0) and calls the tree's
    pmem_persist stand-in: both are the tree's, and no ABI block is pmem."""
    check_tree(tree_of(bundle, tag), tmp_path, 4)


def test_an_error_pointer_with_an_int_return_is_the_int(bundle: Path) -> None:
    """7aa6070d09 gives ram_dirty_bitmap_reload an Error ** and keeps its int returns;
    88577f3242, one commit later, makes it bool. The glue maps a bool to 0/-1, never an
    int: a good stream is 0 there (it was -1), a short one QEMU's -EIO."""
    from recvmap.pymodel.errors import RecoveryError
    from recvmap.pymodel.ramblock import RamContext, Side, TargetPage
    from recvmap.qemu_ref.ram import c_context

    lib = load(build_tree(tree_of(bundle, upstream(bundle, "7aa6070d09"))), bits=64, partial=True)
    dst = RamContext(TargetPage.fixed(12))
    dst.ram_block_add("pc.ram", 16 * 4096)
    dst.ramblock_recv_map_init()
    stream = dst.ramblock_recv_bitmap_send("pc.ram")[0]
    outcomes = []
    for data in (stream, stream[:8]):
        src = c_context(TargetPage.fixed(12), lib=lib, checked=False, side=Side.SOURCE)
        rb = src.ram_block_add("pc.ram", 16 * 4096)
        src.ram_list_init_bitmaps()
        try:
            outcomes.append((src.ram_dirty_bitmap_reload(rb, data), ""))
        except RecoveryError as err:
            outcomes.append((err.ret, src.error_log[-1]))
    assert outcomes == [
        (0, ""),
        (-5, "read bitmap failed for ramblock 'pc.ram': -5 (size 0x8, got: 0x0)"),
    ]


# --- one line for a call of a function that exists nowhere -----------------------------------


def _plant(bundle: Path, tmp: Path, rel: str, head: str, after: int, declare: bool) -> tuple:
    """A copy of v3.1.0 whose ``rel`` calls NOWHERE ``after`` lines below the line ``head``
    (declared before ``head`` with ``declare``): (tree, line of the call in the copy)."""
    tree = copy_of(bundle, "v3.1.0", tmp / "planted")
    lines = (tree / rel).read_text().splitlines()
    at = lines.index(head)
    lines.insert(at + after, f"    {NOWHERE}();")
    if declare:
        lines.insert(at, f"extern void {NOWHERE}(void);")
    (tree / rel).write_text("\n".join(lines) + "\n")
    return tree, at + after + 1 + int(declare)


BITMAP_SET = "void bitmap_set(unsigned long *map, long start, long nr)"


def test_an_undeclared_call_in_the_bitmap_files_is_one_line(bundle: Path, tmp_path: Path) -> None:
    tree, line = _plant(bundle, tmp_path, "util/bitmap.c", BITMAP_SET, 2, declare=False)
    with pytest.raises(BuildError) as err:
        build_tree(tree)
    assert str(err.value) == (
        f"{tree}: util/bitmap.c does not compile: util/bitmap.c:{line}: bitmap_set calls "
        f"{NOWHERE}, {NOT_DECLARED}"
    )


@pytest.mark.parametrize("host", [None, "i686"])
def test_an_undefined_call_is_a_link_error_of_one_line(
    bundle: Path, tmp_path: Path, host: str | None
) -> None:
    """-Wl,-z,defs for the library, the static link for a host's driver: never a load error
    and never just "ld returned 1 exit status"."""
    if host is not None:
        from recvmap.fuzz.subjects.hosts import host_status

        if reason := host_status(host):
            pytest.skip(reason)
    tree, line = _plant(bundle, tmp_path, "util/bitmap.c", BITMAP_SET, 2, declare=True)
    with pytest.raises(BuildError) as err:
        build_tree(tree, host=host)
    assert str(err.value) == (
        f"{tree}: does not link: util/bitmap.c:{line}: bitmap_set calls {NOWHERE}, {NOT_DEFINED}"
    )


def test_an_undeclared_call_in_a_ram_function_is_one_line_and_exit_2(
    bundle: Path, tmp_path: Path
) -> None:
    """The ram part is left out with one line; the ram layers exit 2 with it, `recvmap
    qemu-tree` prints it, bench/qemu_tree_build.py reports the tree as NOT built, and the
    bitmap layer still runs."""
    head = "static int ram_load_cleanup(void *opaque)"
    tree, line = _plant(bundle, tmp_path, "migration/ram.c", head, 3, declare=False)
    expected = f"migration/ram.c:{line}: ram_load_cleanup calls {NOWHERE}, {NOT_DECLARED}"

    build_tree(tree)
    assert str(ram_problem(tree)) == expected
    status, text, _ = fuzz(tree, tmp_path / "ram", 2, "--target", "ram")
    assert status == 2
    assert (
        text.strip()
        .splitlines()[-1]
        .endswith(f"{expected} (--target bitmap runs the bitmap layer without it)")
    ), text
    shown = subprocess.run([*RECVMAP, "qemu-tree", str(tree)], capture_output=True, text=True)
    assert shown.returncode == 0
    assert f"ram and recovery layers skipped: {expected}" in shown.stdout
    bench = Path(__file__).resolve().parent.parent / "bench" / "qemu_tree_build.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--repeat", "1", str(tree)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert f"NOT BUILT planted library: ram part left out: {expected}" in proc.stdout
    status, text, summary = fuzz(tree, tmp_path / "bitmap", 2, "--target", "bitmap")
    assert status == 0 and layers_run(summary) == ["bitmap"], text


# --- every tag (slow) ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("tag", qemu_history.tags() or ["(no bundle)"])
def test_every_tag_builds_loads_and_runs(bundle: Path, tmp_path: Path, tag: str) -> None:
    """Every release and release candidate from v2.11.0-rc0 to v10.1.3: built, loaded with
    its era's ram functions, every layer it has run for 3 s, clean under its own rules."""
    check_tree(tree_of(bundle, tag), tmp_path, 3)
