# SPDX-License-Identifier: GPL-2.0-or-later
"""The vectors alone are a regression suite: every boundary class has a vector (issue 23).

``tests/vectors/classes.py`` writes down the boundary classes of every function of the
ABI and the two sides of every release delta; here the vector files are analysed (each
program run on the model, call by call: the arguments, the words before and after, the
result) and every class must be held by a vector in every word layout of its layer. The
teeth: removing any vector that is the only one of a class uncovers it, and a program
that no longer does what a class needs is not credited, whatever its comment says.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from recvmap.fuzz.vectors.files import Case, iter_files, load_file

VECTORS = Path(__file__).parent / "vectors"
sys.path.insert(0, str(VECTORS))
import classes  # noqa: E402

CASES = [c for f in iter_files([VECTORS]) for c in load_file(f)]
NEW_FILES = {"bitmap-classes.json", "ram-classes.json", "release-deltas.json"}


@pytest.fixture(scope="module")
def held() -> dict[str, set[str]]:
    """The (class, layout) keys each vector holds, by vector name."""
    return {c.name: classes.covered(c) for c in CASES}


def uncovered(held: dict[str, set[str]], without: set[str] | None = None) -> list[str]:
    gone = without or set()
    have = set().union(*(keys for name, keys in held.items() if name not in gone))
    return sorted(classes.wanted() - have)


def test_every_function_of_the_abi_has_boundary_classes() -> None:
    named = {bc.function for bc in classes.table()}
    assert set(classes.functions()) <= named, sorted(set(classes.functions()) - named)
    assert named <= set(classes.functions()), sorted(named - set(classes.functions()))


def test_every_arch_page_bits_value_is_a_class() -> None:
    values = classes.page_bits_values()
    assert {10, 12, 13, 14, 16} <= set(values)
    names = {bc.name for bc in classes.table() if bc.function == "ramblock_recv_bitmap_offset"}
    assert all(any(f"bits {b}," in n for n in names) for b in values)


def test_every_release_delta_has_its_sides() -> None:
    """Both sides of each rule change, the old side only where a vector can hold it."""
    from recvmap.pymodel.releases import CHANGES

    sides = {(c.key, side) for c, side in classes.release_sides()}
    for change in CHANGES:
        for side in ("old", "new"):
            exempt = (change.key, side) in classes.SIDE_EXEMPT or (
                side == "old" and classes._added(change)
            )
            assert ((change.key, side) in sides) != exempt, (change.key, side)


def test_every_boundary_class_has_a_vector(held: dict[str, set[str]]) -> None:
    missing = uncovered(held)
    assert not missing, f"{len(missing)} classes without a vector:\n" + "\n".join(missing)


def test_removing_a_vector_it_relies_on_uncovers_a_class(held: dict[str, set[str]]) -> None:
    """Every vector that is the only holder of some class: without it, that class fails."""
    holders: dict[str, list[str]] = {}
    for name, keys in held.items():
        for key in keys:
            holders.setdefault(key, []).append(name)
    sole = {names[0] for key, names in holders.items() if len(names) == 1}
    assert len(sole) > 100
    for name in sorted(sole):
        assert uncovered(held, {name}), name


def test_the_issue_holes_are_held_by_the_new_vectors(held: dict[str, set[str]]) -> None:
    """The classes issue 23 found without a vector, and the vector that holds each now:
    removing that one vector (the example of the closing note) fails the coverage."""
    holes = [
        "bitmap_set: one word, unaligned start, unaligned end [64le]",
        "bitmap_set: spanning, unaligned start, end on a word boundary [64le]",
        "bitmap_set_atomic: spanning, unaligned start, end on a word boundary [64le]",
        "find_next_bit: offset == size on a word boundary [64le]",
        "ramblock_recv_bitmap_offset: target page bits 13, inside a later page [64le]",
        "bitmap_copy_with_src_offset: unaligned, words and a tail [64le]",
        "release v5.0.0 72821d93e0 (discard_unaligned_length): old side [64le]",
        "release v6.1.0 dcdc460767 (discard_overrun_max_length): new side [64le]",
        "release v6.1.0 898ba906cc (send_postcopy_length): old side [64le]",
    ]
    for hole in holes:
        names = [n for n, keys in held.items() if hole in keys]
        assert names, hole
        assert {n.split("#")[0] for n in names} <= NEW_FILES, (hole, names)
        gone = set(names)
        assert hole in uncovered(held, gone), hole


def _find(function: str, file: str = "bitmap-classes.json", bits: int = 64) -> Case:
    return next(
        c
        for c in CASES
        if c.path.name == file
        and c.group["bits_per_long"] == bits
        and not c.group["big_endian"]
        and any(op.name == function for op in c.program.ops)
    )


def test_a_class_comes_from_the_program_not_from_the_comment() -> None:
    """The find_next_bit vector holds "offset == size on a word boundary"; the same vector
    with that call's offset moved by one (comment, flags and results untouched) does not."""
    case = _find("find_next_bit")
    key = "find_next_bit: offset == size on a word boundary [64le]"
    assert key in classes.covered(case)
    test = copy.deepcopy(case.test)
    ops = test["program"]["ops"]
    k = next(i for i, (name, args) in enumerate(ops) if args[1] == args[2] == 64)
    ops[k][1][2] = 63
    test["tcId"] = 10_000  # another vector for the analysis
    assert key not in classes.covered(Case(case.path, case.group, test))


def test_a_release_side_needs_the_model_to_differ_across_the_change() -> None:
    """The new side of dcdc460767 is credited because the model at v6.0.0 refuses what
    v6.1.0 accepts; the same program at a range the change does not split holds neither."""
    case = next(
        c
        for c in CASES
        if c.path.name == "release-deltas.json"
        and c.group["bits_per_long"] == 64
        and not c.group["big_endian"]
        and c.group["release"] == ">=v6.1.0"
        and "dcdc460767" in c.test["comment"]
    )
    key = "release v6.1.0 dcdc460767 (discard_overrun_max_length): new side [64le]"
    assert key in classes.covered(case)
    test = copy.deepcopy(case.test)
    for name, args in test["program"]["ops"]:
        if name.endswith("discard_range") and args[2] == 4 * 4096:
            args[2] = 2 * 4096  # pages 6..7: inside used_length at every release
    test["tcId"] = 10_001
    assert key not in classes.covered(Case(case.path, case.group, test))
