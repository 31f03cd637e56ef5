# SPDX-License-Identifier: GPL-2.0-or-later
"""Every regression vector replays on the model and on our C library, both word widths.

The vectors (tests/vectors/*.json, recvmap-vectors-v1) hold hand-computed cases of the
bitmap and received-page issues and every divergence fuzzing has found. The model must
reproduce each vector's results and memory digests; the C library must then agree with the
model operation by operation (it runs in a forked child, so a crash is a failure here, not
the end of the test run). Invalid vectors end with an operation outside QEMU's domain: the
model rejects it and the C library is never given it.

Every group has a QEMU release range: the model replays each vector at every release of
its range where some rule changes (the behaviour is constant in between); our C, which
implements the newest release, replays the vectors whose range holds it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from recvmap.fuzz.engine import Divergence
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.subjects.impls import Subject
from recvmap.fuzz.vectors.files import (
    SCHEMA,
    Case,
    check_model,
    export,
    iter_files,
    load_file,
    make_test,
    replay,
    schema,
    validate,
    vector_file,
    write_divergence,
)
from recvmap.pymodel.releases import DEFAULT_RELEASE, boundaries, parse_rules
from recvmap.pymodel.words import LP64_LE

VECTORS = Path(__file__).parent / "vectors"
FILES = list(iter_files([VECTORS]))
CASES = [c for f in FILES for c in load_file(f)]


@pytest.fixture(scope="module")
def subject() -> Subject:
    return Subject()


def test_there_are_vectors_of_every_layer() -> None:
    layers = {c.program.layer for c in CASES}
    assert layers == {"bitmap", "ram", "recovery"}
    assert {c.program.layout.bits_per_long for c in CASES} == {64, 32}
    for layer in ("bitmap", "ram"):  # groups of each word layout, big-endian ones too
        assert {
            (c.group["bits_per_long"], c.group["big_endian"])
            for c in CASES
            if c.group["layer"] == layer
        } == {(64, False), (32, False), (64, True), (32, True)}
    assert any(c.test["result"] == "invalid" for c in CASES)
    assert any("Divergence" in c.test["flags"] for c in CASES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_follow_the_schema(path: Path) -> None:
    obj = json.loads(path.read_text())
    assert obj["schema"] == SCHEMA
    assert validate(obj, schema()) == []
    assert obj["numberOfTests"] == sum(len(g["tests"]) for g in obj["testGroups"])
    ids = [t["tcId"] for g in obj["testGroups"] for t in g["tests"]]
    assert ids == list(range(1, len(ids) + 1))


def test_the_validator_rejects_broken_files() -> None:
    obj = json.loads(FILES[0].read_text())
    broken = copy.deepcopy(obj)
    del broken["testGroups"][0]["tests"][0]["results"]
    assert any("missing 'results'" in p for p in validate(broken, schema()))
    broken = copy.deepcopy(obj)
    broken["testGroups"][0]["bits_per_long"] = 48
    assert validate(broken, schema())
    broken = copy.deepcopy(obj)
    broken["testGroups"][0]["tests"][0]["result"] = "maybe"
    assert validate(broken, schema())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_vector_replays(case: Case, subject: Subject) -> None:
    big = case.group["big_endian"] or case.group.get("sender_big_endian")
    if not case.covers(DEFAULT_RELEASE):  # an older release's rule (or rule set): model only
        first = parse_rules(case.group["release"].split(",")[0].lstrip("<>="))
        verdict = replay(case, subject, release=first)
        assert verdict.message.startswith("model only")
    elif big:  # our C here is little-endian: tests/test_hosts.py runs these on s390x,
        verdict = replay(case, subject)  # ppc64 and s390x-w32
        assert verdict.status == "skip" and "big-endian words" in verdict.message
        verdict = replay(case, None)
    else:
        verdict = replay(case, subject)
    assert verdict.status == "pass", f"{case.test['comment']}\n{verdict.message}"


@pytest.mark.parametrize("release", boundaries(), ids=str)
def test_vectors_replay_at_every_release(release: object) -> None:
    """At each release where a rule changes, every vector whose range holds it passes on
    the model, and the others are skipped -- never failed."""
    ran = 0
    for case in CASES:
        verdict = replay(case, None, release=release)  # type: ignore[arg-type]
        assert verdict.status in ("pass", "skip"), f"{case.name}: {verdict.message}"
        assert (verdict.status == "pass") == case.covers(release)  # type: ignore[arg-type]
        ran += verdict.status == "pass"
    assert ran > 0


def test_every_group_has_a_release_range() -> None:
    for path in FILES:
        for group in json.loads(path.read_text())["testGroups"]:
            # a range of releases, or a state between releases by its rule set
            rules = parse_rules(group["release"]) if group["release"][0] == "v" else None
            assert group["release"].startswith(">=v") or (rules and rules.release is None)


def test_a_wrong_expectation_is_reported() -> None:
    case = next(c for c in CASES if c.program.layer == "bitmap" and c.test["results"])
    test = copy.deepcopy(case.test)
    test["results"][-1] = 12345
    problem = check_model(Case(case.path, case.group, test))
    assert problem is not None and "12345" in problem
    test = copy.deepcopy(case.test)
    key = next(iter(test["memory"]))
    test["memory"][key] = "0" * 64
    problem = check_model(Case(case.path, case.group, test))
    assert problem is not None and key in problem


def test_programs_round_trip_through_json() -> None:
    for case in CASES:
        program = case.program
        again = Program.from_json(json.loads(json.dumps(program.to_json())))
        assert again.to_json() == program.to_json()
        assert again.ops == program.ops


def test_a_divergence_becomes_a_vector(tmp_path: Path) -> None:
    program = Program(LP64_LE, [ArraySpec(2, {1: 7})], [Op("bitmap_fill", (Ref(0), 70))])
    divergence = Divergence(0, program.ops[0], "memory", 0x3F, 0x7F, 0, 8)
    path = write_divergence(program, divergence, "libmutant.so", tmp_path)
    (case,) = load_file(path)
    assert case.test["flags"] == ["Divergence", "ModelSnapshot"]
    assert "libmutant.so diverged: op #0 bitmap_fill(@0, 70)" in case.test["comment"]
    assert replay(case, None).status == "pass"


def test_bare_programs_and_reproducers_load(tmp_path: Path) -> None:
    program = Program(
        LP64_LE,
        [ArraySpec(1)],
        [Op("bitmap_set", (Ref(0), 1, 3)), Op("find_first_bit", (Ref(0), 64))],
    )
    path = tmp_path / "repro.json"
    path.write_text(json.dumps(program.to_json()))
    (case,) = load_file(path)
    assert case.test["results"] == [None, 1]


def test_an_invalid_test_must_end_at_the_rejected_operation() -> None:
    program = Program(
        LP64_LE,
        [ArraySpec(1)],
        [Op("bitmap_set", (Ref(0), -1, 1)), Op("bitmap_set", (Ref(0), 0, 1))],
    )
    with pytest.raises(ValueError, match="rejected before the end"):
        make_test(program, "bad", [])


def test_export_writes_files_that_load(tmp_path: Path) -> None:
    written = export(tmp_path / "out")
    names = {p.name for p in written}
    assert "schema.json" in names and {f.name for f in FILES} <= names
    for path in iter_files([tmp_path / "out"]):
        assert load_file(path)


def test_groups_share_their_parameters() -> None:
    tests = [make_test(c.program, c.test["comment"], c.test["flags"]) for c in CASES[:40]]
    obj = vector_file(tests)
    for group in obj["testGroups"]:
        for t in group["tests"]:
            assert t["program"]["bits_per_long"] == group["bits_per_long"]
            if group["layer"] != "bitmap":
                assert t["program"]["setup"]["target"] == group["arch"]
