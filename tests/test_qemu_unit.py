# SPDX-License-Identifier: GPL-2.0-or-later
"""``recvmap vectors export --qemu-unit-test``: the GTest file, built with QEMU's own code.

For each shared QEMU tree, the unit test exported for its release is compiled as QEMU's
tests/unit would compile it: with the tree's util/bitmap.c, util/bitops.c and include/, the
same glue ``--qemu-tree`` uses (``fuzz/subjects/qemu_tree/glue``: its osdep.h stand-in and
a config-host.h with configure's answers), and real glib (Debian's libglib2.0-dev) in place
of the glue's glib-lite.h. It must pass on every tree, and fail once a COPY of the tree's
util/bitmap.c is changed on one line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from qemu_trees import SKIP_REASON, TREES

from recvmap.fuzz import cli
from recvmap.fuzz.subjects.qemu_tree import QemuTree, inventory
from recvmap.fuzz.subjects.qemu_tree.build import GLUE_INCLUDE, config_host
from recvmap.fuzz.vectors import qemu_unit
from recvmap.pymodel.releases import at_release, parse_release

GLUE = GLUE_INCLUDE
MUTATION = ("const long size = start + nr;", "const long size = start + nr + 1;")  # bitmap_set


def glib_flags() -> list[str] | None:
    if shutil.which("pkg-config") is None:
        return None
    r = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "glib-2.0"], capture_output=True, text=True
    )
    return r.stdout.split() if r.returncode == 0 else None


needs_trees = pytest.mark.skipif(not TREES, reason=SKIP_REASON)
needs_glib = pytest.mark.skipif(
    shutil.which("gcc") is None or glib_flags() is None,
    reason="needs gcc and glib (Debian: libglib2.0-dev, pkg-config)",
)


def build(
    test_c: Path, tree: QemuTree, bitmap_c: Path, work: Path, bitops_c: Path | None = None
) -> Path:
    """The unit test linked with the tree's bitmap code, as tests/unit builds it."""
    (work / "glib").mkdir(parents=True, exist_ok=True)
    # in QEMU the real glib comes through osdep.h; here glue/glib-lite.h's name leads to it
    (work / "glib" / "glib-lite.h").write_text("#include <glib.h>\n")
    (work / "config-host.h").write_text(config_host(tree))  # what --qemu-tree writes
    exe = work / "test-recvmap-vectors"
    flags = glib_flags() or []
    cmd = ["gcc", "-std=gnu11", "-O1", "-D_GNU_SOURCE", "-fno-strict-aliasing", "-fwrapv"]
    cmd += ["-I", str(work / "glib"), "-I", str(GLUE), "-I", str(work)]
    cmd += ["-I", str(tree.root / "include"), *[f for f in flags if f.startswith("-I")]]
    bitops = bitops_c or tree.root / "util" / "bitops.c"
    cmd += ["-o", str(exe), str(test_c), str(bitmap_c), str(bitops)]
    cmd += [f for f in flags if not f.startswith("-I")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return exe


def export(path: Path, release: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "recvmap.fuzz.cli", "vectors", "export"]
        + ["--qemu-unit-test", str(path), "--release", release],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def run(exe: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), "--tap"], capture_output=True, text=True, timeout=60)


@needs_trees
@needs_glib
@pytest.mark.parametrize("release", sorted(TREES, key=parse_release))
def test_the_unit_test_passes_on_the_tree_and_fails_on_a_mutant(
    release: str, tmp_path: Path
) -> None:
    tree = QemuTree.open(TREES[release])
    test_c = tmp_path / "test-recvmap-vectors.c"
    out = export(test_c, tree.release)
    assert f"for QEMU {tree.release}" in out
    text = test_c.read_text()
    includes = re.findall(r"^#include\s+(\S+)", text, re.M)  # nothing of recvmap at run time
    assert includes == ['"qemu/osdep.h"', '"qemu/bitops.h"', '"qemu/bitmap.h"']
    exe = build(test_c, tree, tree.root / "util" / "bitmap.c", tmp_path / "good")
    good = run(exe)
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    oks = [line for line in good.stdout.splitlines() if line.startswith("ok ")]
    assert len(oks) >= 2 and "not ok" not in good.stdout
    assert any("/recvmap/bitmap-rules/64le" in line for line in oks), good.stdout

    source = (tree.root / "util" / "bitmap.c").read_text()
    assert source.count(MUTATION[0]) >= 1
    mutant = tmp_path / "mutant" / "util" / "bitmap.c"  # a copy: the tree is never touched
    mutant.parent.mkdir(parents=True)
    mutant.write_text(source.replace(MUTATION[0], MUTATION[1], 1))
    changed = [
        (a, b)
        for a, b in zip(source.splitlines(), mutant.read_text().splitlines(), strict=True)
        if a != b
    ]
    assert len(changed) == 1
    bad = run(build(test_c, tree, mutant, tmp_path / "bad"))
    assert bad.returncode != 0, bad.stdout[-3000:]
    assert "not ok" in bad.stdout or "ERROR" in bad.stderr, bad.stdout + bad.stderr


@needs_trees
@pytest.mark.parametrize("release", sorted(TREES, key=parse_release))
def test_the_functions_a_release_has_are_the_trees(release: str) -> None:
    """What the export leaves out as missing at a release, the tree indeed lacks."""
    tree = QemuTree.open(TREES[release])
    absent = {o.function for o in inventory(tree) if o.kind == "absent"}
    rel = parse_release(release)
    for fn in at_release().functions():
        assert (fn in absent) == (not rel.has_function(fn)), (fn, release)


def test_release_choice_leaves_out_what_an_old_release_lacks(tmp_path: Path) -> None:
    new = qemu_unit.qemu_unit_test("v10.1.0")
    old = qemu_unit.qemu_unit_test("v2.12.0")
    assert old.tests < new.tests
    assert "bitmap_test_and_clear(" in new.text
    assert "bitmap_test_and_clear(" not in old.text
    assert "bitmap_copy_with_dst_offset(" not in old.text
    assert any("its group holds at >=v4.0.0" in why for why in old.left_out)
    assert any("<v4.0.0, not at v10.1.0" in why for why in new.left_out)
    # the old bitmap_count_one(map, 0) is a test at v2.12.0, the fixed one at v10.1.0
    assert "bitmap_count_one(" in old.text and "bitmap_count_one(" in new.text


def test_bad_release_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli.main(["vectors", "export", "--qemu-unit-test", str(tmp_path / "t.c")] + [
        "--release", "v1.0.0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "predates the received-page bitmap" in err
    assert cli.main(["vectors", "export"]) == 2


# Three one-line changes to a copy of v10.1.0, each in a class the vectors of issue 23 hold:
# (file, function, line, its mutation, the vector file that must fail).
ONE_LINE_BUGS = {
    # the one-word step of bitmap_set loses BITMAP_FIRST_WORD_MASK(start): bits below an
    # unaligned start get set when the whole range is inside one word
    "bitmap_set-unaligned-one-word": (
        "bitmap.c",
        "void bitmap_set(",
        "        mask_to_set &= BITMAP_LAST_WORD_MASK(size);",
        "        mask_to_set = BITMAP_LAST_WORD_MASK(size);",
    ),
    # find_next_bit's early return for offset >= size answers offset rounded down to its
    # word: right on a word boundary, wrong for offset == size inside a word (QEMU's other
    # way to get offset == size wrong, ">" for ">=", is equivalent: its fall-through
    # answers size without a read, on a word boundary or not)
    "find_next_bit-offset-equals-size": (
        "bitops.c",
        "unsigned long find_next_bit(",
        "        return size;",
        "        return result;",
    ),
    # bitmap_copy_with_src_offset's word loop stores the high part of each word instead of
    # merging it with the low part (= for |=)
    "bitmap_copy_with_src_offset-store": (
        "bitmap.c",
        "void bitmap_copy_with_src_offset(",
        "        *dst |= (src[1] & right_mask) << (BITS_PER_LONG - shift);",
        "        *dst = (src[1] & right_mask) << (BITS_PER_LONG - shift);",
    ),
}


def one_line_copy(tree: QemuTree, bug: str, out: Path) -> Path:
    """A copy of the tree's file with the bug's line changed inside its function only."""
    file, function, line, new = ONE_LINE_BUGS[bug]
    source = (tree.root / "util" / file).read_text()
    start = source.index(function)
    at = source.index(line + "\n", start)
    assert at < source.index("\n}\n", start), f"{bug}: the line is not in {function}"
    copy = out / "util" / file
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(source[:at] + new + source[at + len(line) :])
    changed = [
        (a, b)
        for a, b in zip(source.splitlines(), copy.read_text().splitlines(), strict=True)
        if a != b
    ]
    assert len(changed) == 1, changed
    return copy


NEWEST_TREE = "v10.1.0"


@needs_trees
@needs_glib
@pytest.mark.skipif(NEWEST_TREE not in TREES, reason=f"no {NEWEST_TREE} tree")
@pytest.mark.parametrize("bug", sorted(ONE_LINE_BUGS))
def test_the_unit_test_fails_on_a_one_line_bug_of_a_class(bug: str, tmp_path: Path) -> None:
    """The export of v10.1.0 fails on each bug (its control, the unchanged tree, passes in
    the test above), and names the first differing word: its index, expected and actual."""
    tree = QemuTree.open(TREES[NEWEST_TREE])
    test_c = tmp_path / "test-recvmap-vectors.c"
    export(test_c, NEWEST_TREE)
    copy = one_line_copy(tree, bug, tmp_path / "bug")
    util = tree.root / "util"
    bitmap_c = copy if copy.name == "bitmap.c" else util / "bitmap.c"
    bitops_c = copy if copy.name == "bitops.c" else util / "bitops.c"
    bad = run(build(test_c, tree, bitmap_c, tmp_path / "bad", bitops_c))
    print(bad.stdout[-1500:], bad.stderr[-1500:])
    assert bad.returncode != 0, bad.stdout[-3000:]
    assert "not ok" in bad.stdout or "ERROR" in bad.stderr, bad.stdout + bad.stderr
    if "find_next_bit" not in bug:  # a memory difference: the first differing word
        assert re.search(r"word \d+: expected 0x[0-9a-f]+, actual 0x[0-9a-f]+", bad.stdout)
