# SPDX-License-Identifier: GPL-2.0-or-later
"""``--qemu-tree``: QEMU's own bitmap code, built from the shared trees, against the model.

The expectations about each release (which functions it has, where QEMU defines them, what
old QEMU returned) are written here by hand from QEMU's history (the trees' FUNCTIONS.md
and qemu-facts), never read from the inventory or the build under test. The teeth tests
mutate one line of a temporary copy of a tree and require the fuzzer to catch it.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import helpers
import pytest
from qemu_trees import SKIP_REASON, TREES, copy_tree

from recvmap.fuzz import cli
from recvmap.fuzz.engine import Session, run_stream
from recvmap.fuzz.program.decode_bitmap import decode_bitmap_program
from recvmap.fuzz.subjects.impls import ModelImpl, Subject
from recvmap.fuzz.subjects.qemu_tree.build import BuildError, build_tree
from recvmap.fuzz.subjects.qemu_tree.tree import QemuTree
from recvmap.pymodel import at_release, bitmap_count_one, bitmap_new
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import parse_version
from recvmap.pymodel.words import LP64_LE
from recvmap.qemu_ref.loader import abi


def release_tuple(release: str) -> tuple[int, int, int]:
    return parse_version(release).tuple


pytestmark = [
    pytest.mark.skipif(not TREES, reason=SKIP_REASON),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the trees"),
]

# Where QEMU keeps each function (qemu-facts section 4): static inline in a header ...
INLINE = {
    "include/qemu/bitops.h": (
        "set_bit set_bit_atomic clear_bit clear_bit_atomic change_bit test_and_set_bit "
        "test_and_clear_bit test_and_change_bit test_bit find_first_bit find_first_zero_bit"
    ).split(),
    "include/qemu/bitmap.h": (
        "bitmap_zero bitmap_fill bitmap_copy bitmap_and bitmap_or bitmap_xor bitmap_andnot "
        "bitmap_complement bitmap_equal bitmap_empty bitmap_full bitmap_intersects "
        "bitmap_count_one bitmap_count_one_with_offset bitmap_new bitmap_zero_extend"
    ).split(),
}
# ... or defined in util/.
DEFINED = {
    "util/bitops.c": "find_next_bit find_next_zero_bit find_last_bit".split(),
    "util/bitmap.c": (
        "bitmap_set bitmap_set_atomic bitmap_clear bitmap_test_and_clear "
        "bitmap_test_and_clear_atomic bitmap_copy_and_clear_atomic bitmap_find_next_zero_area "
        "bitmap_to_le bitmap_from_le bitmap_copy_with_src_offset bitmap_copy_with_dst_offset"
    ).split(),
}
# The release each function first appears in (FUNCTIONS.md); the others are in v2.12.0.
FIRST = {
    "bitmap_count_one_with_offset": (4, 0, 0),
    "bitmap_copy_with_src_offset": (4, 1, 0),
    "bitmap_copy_with_dst_offset": (4, 1, 0),
    "bitmap_test_and_clear": (7, 2, 0),
    "clear_bit_atomic": (9, 0, 0),
}
# A few places FUNCTIONS.md gives for v2.12.0.
V2_12_LINES = {
    "set_bit": "glue (inline in include/qemu/bitops.h:35)",
    "find_first_bit": "glue (inline in include/qemu/bitops.h:175)",
    "find_next_bit": "util/bitops.c:20",
    "find_last_bit": "util/bitops.c:130",
    "bitmap_zero": "glue (inline in include/qemu/bitmap.h:104)",
    "bitmap_count_one": "glue (inline in include/qemu/bitmap.h:222)",
    "bitmap_set": "util/bitmap.c:160",
    "bitmap_from_le": "util/bitmap.c:394",
    "bitmap_to_le": "util/bitmap.c:400",
}
# The rule QEMU changed in v4.0.0 (e7c91368d2 "bitmap: fix bitmap_count_one"): before it,
# bitmap_count_one(map, 0) counted all of word 0.
OLD_COUNT_ONE = (4, 0, 0)
BITMAP_ABI = [
    d.name
    for d in abi()
    if d.header == "qemu_ref.h"
    and d.name not in ("qref_bits_per_long", "qref_bitmap_free", "qref_set_guard")
]


recvmap = functools.partial(helpers.recvmap, timeout=180)


def mutate(path: Path, old: str, new: str) -> None:
    """Change the first occurrence of one line's text (it must be there)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def patched_tree(tmp_path: Path, file: str, old: str, new: str) -> tuple[str, Path]:
    """v10.1.0 (else the newest shared release) copied, with ``old`` in ``file`` changed
    to ``new``: the release and the patched copy."""
    release = "v10.1.0" if "v10.1.0" in TREES else max(TREES, key=release_tuple)
    copy = copy_tree(release, tmp_path / "patched")
    mutate(copy / file, old, new)
    return release, copy


def listing(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, str]]:
    assert cli.main(["qemu-tree", str(path)]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^  (\w+)\s+(.+)$", out, re.M))
    return out, rows


def short_fuzz(lib: Path, release: str, seconds: float, seed: int) -> tuple:
    """Random bitmap programs on the model at ``release`` and ``lib`` (in this process):
    (operations compared, first divergence or None)."""
    subject = Subject(lib)
    impl = subject.bitmap(LP64_LE)
    assert impl is not None
    names = subject.bitmap_functions(LP64_LE)
    rng = random.Random(seed)
    ops = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        program, next_op = decode_bitmap_program(
            rng.randbytes(rng.randrange(16, 600)), LP64_LE, names=names
        )
        model = ModelImpl(LP64_LE, release)
        kept, divergence = run_stream(program, next_op, Session(program, model, impl))
        ops += len(kept.ops)
        if divergence is not None:
            return ops, (kept, divergence)
    return ops, None


# --- inventory ------------------------------------------------------------------------------


@pytest.mark.parametrize("release", sorted(TREES, key=release_tuple))
def test_inventory_lists_every_bitmap_function(
    release: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = TREES[release]
    out, rows = listing(tree, capsys)
    version = (tree / "VERSION").read_text().splitlines()[0].strip()
    assert f"version {version} (VERSION)" in out
    # the first line says how the rules were chosen: a plain folder has only its VERSION
    assert out.splitlines()[0] == f"rules: by VERSION {version} = {release}"
    have = release_tuple(release)
    for name in BITMAP_ABI:
        where = rows[name]
        if have < FIRST.get(name, (0,)):
            assert where == "absent", name
            continue
        header = next((h for h, names in INLINE.items() if name in names), None)
        if header is not None:
            m = re.fullmatch(rf"glue \(inline in {re.escape(header)}:(\d+)\)", where)
        else:
            source = next(s for s, names in DEFINED.items() if name in names)
            m = re.fullmatch(rf"{re.escape(source)}:(\d+)", where)
        assert m, f"{name}: {where}"
        line = (tree / (header or source)).read_text().splitlines()[int(m[1]) - 1]
        assert re.search(rf"\b{name}\(", line), f"{name} is not defined at {where}: {line}"
    assert rows["qref_bits_per_long"].startswith("glue")
    assert rows["qref_bitmap_free"].startswith("glue")
    if release == "v2.12.0":
        for name, where in V2_12_LINES.items():
            assert rows[name] == where


def test_a_full_checkout_layout_is_not_required(tmp_path: Path) -> None:
    """Only QEMU's paths matter: the copy made here has no migration/ and no exec.c."""
    copy = copy_tree(max(TREES, key=release_tuple), tmp_path / "qemu")
    assert QemuTree.open(copy).release == max(TREES, key=release_tuple)


# --- build and fuzz -------------------------------------------------------------------------


@pytest.mark.parametrize("release", sorted(TREES, key=release_tuple))
def test_each_tree_builds_and_agrees_with_the_model(release: str) -> None:
    lib = build_tree(TREES[release])
    subject = Subject(lib)
    lacking = set(subject.missing(64))
    for name, first in FIRST.items():
        assert (name in lacking) == (release_tuple(release) < first), name
    ops, found = short_fuzz(lib, release, 3.0, seed=11)  # the model at the tree's release
    assert found is None, found[1].describe() if found else ""
    assert ops > 200


@pytest.mark.parametrize("release", [r for r in TREES if release_tuple(r) < OLD_COUNT_ONE])
def test_old_count_one_of_zero_bits_counts_word_0(release: str) -> None:
    """The first divergence the tree mode found, against the model of one rule set: QEMU
    before e7c91368d2 masked word 0 with BITMAP_LAST_WORD_MASK(0), all ones, and counted
    it. The model at the tree's release agrees with the tree; the newest rules do not."""
    subject = Subject(build_tree(TREES[release]))
    impl = subject.bitmap(LP64_LE)
    assert impl is not None
    words = impl.alloc(2)
    impl.load(words, bytes([0xFF, 0x0F]) + bytes(14))
    assert impl.call("bitmap_count_one", words, 0) == 12
    model = bitmap_new(128)
    model.load_image(bytes([0xFF, 0x0F]) + bytes(14))
    assert at_release(release).bitmap_count_one(model, 0) == 12
    assert bitmap_count_one(model, 0) == 0  # the newest rule: nothing to count


@pytest.mark.parametrize("release", sorted(TREES, key=release_tuple))
def test_bitmap_new_of_zero_bits_at_the_trees_release(release: str) -> None:
    """QEMU's bitmap_new(0) through our glib stand-in (0 bytes is NULL, as in glib): before
    5e9efe31f1 (v9.1.0) it aborts on that NULL, after it returns it. The model at the
    tree's release says the same: outside the domain, or no words."""
    lib = build_tree(TREES[release])
    code = (
        "import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); lib.bitmap_new.restype = "
        "ctypes.c_void_p; print(lib.bitmap_new(ctypes.c_long(0)))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(lib)], capture_output=True, text=True)
    model = at_release(release)
    if model.release.has("bitmap_new_zero"):
        assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr
        assert model.bitmap_new(0, LP64_LE).nwords == 0
    else:
        assert r.returncode < 0, (r.returncode, r.stdout)  # SIGABRT
        with pytest.raises(PreconditionError, match="abort"):
            model.bitmap_new(0, LP64_LE)


def test_the_cache_rebuilds_only_when_a_file_changes(tmp_path: Path) -> None:
    copy = copy_tree(max(TREES, key=release_tuple), tmp_path / "qemu")
    first = build_tree(copy)
    assert build_tree(copy) == first
    header = copy / "include/qemu/bitops.h"
    header.write_text(header.read_text() + "\n/* a comment changes the content */\n")
    assert build_tree(copy) != first
    assert build_tree(copy).is_file()


# --- teeth -----------------------------------------------------------------------------------


@dataclasses.dataclass
class MutantRun:
    release: str  # the shared tree that was copied
    copy: Path  # the copy with the one change
    out: Path  # the --out folder of the run
    proc: subprocess.CompletedProcess[str]
    seconds: float  # how long the fuzz command took


def fuzz_bitmap_mutant(
    tmp_path: Path, file: str, old: str, new: str, seed: int, with_original: bool = False
) -> MutantRun:
    """``recvmap fuzz`` of the bitmap layer for 30 s on a patched tree (``patched_tree``),
    after the unmodified tree when ``with_original``."""
    release, copy = patched_tree(tmp_path, file, old, new)
    trees = [TREES[release], copy] if with_original else [copy]
    tree_args = [arg for tree in trees for arg in ("--qemu-tree", str(tree))]
    out = tmp_path / "out"
    start = time.monotonic()
    r = recvmap(
        "fuzz", *tree_args, "--target", "bitmap", "--max-time", "30",
        "--seed", str(seed), "--quiet", "--out", str(out),
    )  # fmt: skip
    return MutantRun(release, copy, out, r, time.monotonic() - start)


def test_a_mutated_bitmap_c_is_caught_within_30_s(tmp_path: Path) -> None:
    run = fuzz_bitmap_mutant(
        tmp_path,
        "util/bitmap.c",
        "mask_to_set &= BITMAP_LAST_WORD_MASK(size);",
        "mask_to_set &= BITMAP_LAST_WORD_MASK(size + 1);",
        seed=3,
    )
    r, copy = run.proc, run.copy
    assert r.returncode == 1, r.stdout + r.stderr
    assert run.seconds < 30 + 25  # the budget, plus building and minimizing
    vectors = list(run.out.glob("divergence-*.json"))
    assert vectors and "DIVERGENCE" in r.stdout  # one per job that found it
    # the reproducers fail on the mutated tree and pass on the unmodified one
    bad = recvmap("replay", "--qemu-tree", str(copy), *map(str, vectors))
    good = recvmap("replay", "--qemu-tree", str(TREES[run.release]), *map(str, vectors))
    assert bad.returncode == 1 and "FAIL" in bad.stdout, bad.stdout + bad.stderr
    assert good.returncode == 0, good.stdout + good.stderr


@pytest.mark.slow
def test_two_trees_name_the_one_with_a_mutated_bitmap_h(tmp_path: Path) -> None:
    run = fuzz_bitmap_mutant(
        tmp_path,
        "include/qemu/bitmap.h",
        "return ! ((*src1 ^ *src2) & BITMAP_LAST_WORD_MASK(nbits));",
        "return ! ((*src1 ^ *src2));",
        seed=5,
        with_original=True,
    )
    r, copy = run.proc, run.copy
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"verdict: B ({copy}) disagrees with the spec" in r.stdout, r.stdout
    assert f"A ({TREES[run.release]}): agrees with the spec" in r.stdout


# --- bad input --------------------------------------------------------------------------------


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], words: str) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize("command", ["fuzz", "replay", "qemu-tree"])
def test_a_folder_that_is_not_a_qemu_tree(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "README").write_text("not QEMU\n")
    argv = {
        "fuzz": ["fuzz", "--qemu-tree", str(tmp_path), "--max-time", "1"],
        "replay": ["replay", "--qemu-tree", str(tmp_path), str(tmp_path / "README")],
        "qemu-tree": ["qemu-tree", str(tmp_path)],
    }[command]
    _one_line_exit_2(argv, capsys, "not a QEMU source tree")


def test_a_tree_missing_util_bitmap_c(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = copy_tree(max(TREES, key=release_tuple), tmp_path / "qemu")
    (copy / "util/bitmap.c").unlink()
    argv = ["fuzz", "--qemu-tree", str(copy), "--max-time", "1"]
    _one_line_exit_2(argv, capsys, "util/bitmap.c missing")


def test_a_tree_that_does_not_compile_leaves_nothing_in_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECVMAP_CACHE", str(tmp_path / "cache"))
    copy = copy_tree(max(TREES, key=release_tuple), tmp_path / "qemu")
    mutate(copy / "util/bitmap.c", "void bitmap_set(", "void bitmap_set(this is not C ")
    argv = ["fuzz", "--qemu-tree", str(copy), "--max-time", "1"]
    _one_line_exit_2(argv, capsys, "util/bitmap.c does not compile")
    cache = tmp_path / "cache" / "qemu-tree"
    assert not cache.exists() or not list(cache.iterdir())
    with pytest.raises(BuildError, match="does not compile"):
        build_tree(copy)
    assert not cache.exists() or not list(cache.iterdir())


def test_bits_other_than_the_host_long_are_refused() -> None:
    with pytest.raises(BuildError, match="--host i686 or armhf"):
        build_tree(max(TREES.values()), bits=32)


# --- emulated hosts -----------------------------------------------------------------------------


def _host_or_skip(name: str) -> None:
    from recvmap.fuzz.subjects.hosts import host_status

    if why := host_status(name):
        pytest.skip(f"host {name}: {why}")


@pytest.mark.slow
@pytest.mark.parametrize("host", ["s390x", "i686"])
def test_a_tree_on_an_emulated_host(host: str) -> None:
    """QEMU's code cross-built into the replay driver: big-endian and 32-bit words."""
    from recvmap.fuzz.campaign.hosts import fuzz_host
    from recvmap.fuzz.subjects.hosts import HostPool

    _host_or_skip(host)
    release = "v10.1.0" if "v10.1.0" in TREES else max(TREES, key=release_tuple)
    exe = build_tree(TREES[release], host=host)
    s = fuzz_host(host, 4.0, seed=2, layers=("bitmap",), pool=HostPool({host: exe}))
    assert s["divergence"] is None, s["divergence"]
    assert s["ops"] > 50


def test_an_old_tree_swaps_bytes_on_a_big_endian_host() -> None:
    """bitmap_to_le byte-swaps each word on big-endian hosts (qemu-facts section 4); an old
    tree tests HOST_WORDS_BIGENDIAN, which our generated config header must define."""
    from recvmap.fuzz.subjects.hosts import HostPool

    _host_or_skip("s390x")
    old = [r for r in TREES if release_tuple(r) < (7, 1, 0)]
    if not old:
        pytest.skip("no tree older than v7.1.0")
    pool = HostPool({"s390x": build_tree(TREES[old[0]], host="s390x")})
    try:
        impl = pool.impl("s390x")
        assert not impl.has("bitmap_test_and_clear")  # absent before v7.2.0
        src, dst = impl.alloc(1), impl.alloc(1)
        impl.load(src, bytes.fromhex("0102030405060708"))  # the word 0x0102030405060708
        impl.call("bitmap_to_le", dst, src, 64)
        assert bytes(impl.image(dst)) == bytes.fromhex("0807060504030201")
    finally:
        pool.close()


@pytest.mark.slow
def test_an_old_tree_on_a_host_is_judged_at_its_release() -> None:
    """The host jobs follow the tree's release: v2.12.0's bitmap_count_one(map, 0) agrees
    with the model at v2.12.0 and is caught by the newest rules (a real QEMU change)."""
    from recvmap.fuzz.campaign.hosts import fuzz_host
    from recvmap.fuzz.subjects.hosts import HostPool

    _host_or_skip("s390x")
    old = [r for r in TREES if release_tuple(r) < OLD_COUNT_ONE]
    if not old:
        pytest.skip("no tree older than v4.0.0")
    exe = build_tree(TREES[old[0]], host="s390x")

    def run(release: str | None) -> dict:
        pool = HostPool({"s390x": exe})
        return fuzz_host("s390x", 6.0, seed=1, layers=("bitmap",), pool=pool, release=release)

    assert run(old[0])["divergence"] is None
    caught = run(None)["divergence"]
    assert caught is not None and "bitmap_count_one" in caught["description"], caught


def test_a_killed_build_is_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build killed outright leaves its temporary folder; a later build removes it once
    it is stale, and never touches a fresh one (another build may be using it)."""
    import os

    from recvmap.fuzz.subjects.qemu_tree.build import STALE, cache_root

    monkeypatch.setenv("RECVMAP_CACHE", str(tmp_path / "cache"))
    root = cache_root()
    stale, fresh = root / ".building-killed", root / ".building-running"
    for d in (stale, fresh):
        d.mkdir(parents=True)
        (d / "bitmap.o").write_bytes(b"half")
    old = time.time() - STALE - 60
    os.utime(stale, (old, old))
    build_tree(max(TREES.values()))
    assert not stale.exists() and fresh.exists()
