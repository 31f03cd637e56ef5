# SPDX-License-Identifier: GPL-2.0-or-later
"""The honest mutation score (issue 14 point 4): what counts as a kill, and what does not.

A kill is a divergence, an abort, a crash, a sanitizer report, a lost bit or a hang that
re-running the input alone confirms. Teeth, with real processes: a C reference that only
stalls (slow, never wrong) makes heartbeat gaps that must end as an unconfirmed hang, never
a kill; the same functions looping forever must be a confirmed hang; calling abort() an
abort. The verdict and the two scores are then checked on hand-made runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recvmap.fuzz.mutation import mutants
from recvmap.fuzz.mutation.mutants import MutantResult, SeedRun, figures, settle

gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the mutants")

# Function openings of the C reference that the bitmap layer calls all the time.
OPENINGS = {
    "bitops.c": [
        "int test_bit(qref_long nr, const qref_ulong *addr)\n{",
        "void set_bit(qref_long nr, qref_ulong *addr)\n{",
    ],
    "bitmap.c": [
        "void bitmap_set(qref_ulong *map, qref_long start, qref_long nr)\n{",
        "void bitmap_clear(qref_ulong *map, qref_long start, qref_long nr)\n{",
        "void bitmap_copy(qref_ulong *dst, const qref_ulong *src, qref_long nbits)\n{",
        "int bitmap_empty(const qref_ulong *src, qref_long nbits)\n{",
        "qref_long bitmap_count_one(const qref_ulong *bitmap, qref_long nbits)\n{",
    ],
}
STALL = "\n    for (volatile long stall_ = 0; stall_ < 300000000L; stall_++) {\n    }"
LOOP = "\n    for (;;) {\n    }"
ABORT = "\n    abort();"


def libraries(statement: str) -> dict[int, Path]:
    edits = {
        file: [(opening, opening + statement) for opening in openings]
        for file, openings in OPENINGS.items()
    }
    if statement == ABORT:
        for file in edits:
            edits[file].append(
                ('#include "qemu_ref.h"', '#include <stdlib.h>\n#include "qemu_ref.h"')
            )
    from recvmap.fuzz.subjects.build import build_library

    return {64: build_library(64, edits)}


@gcc
def test_a_slow_reference_is_an_unconfirmed_hang_not_a_kill() -> None:
    """The heartbeat gaps of a slow but correct library (what load alone can cause): the
    re-run of the input passes, so the seed is an unconfirmed hang, never a kill."""
    run = mutants.run_seed(
        libraries(STALL), 1, 20.0, hang_timeout=0.2, layers=("bitmap",), confirm_timeout=120
    )
    assert run.outcome == "unconfirmed", run
    assert run.how == "hang, the input alone passes" and run.layer == "bitmap"


@gcc
def test_a_real_hang_is_confirmed() -> None:
    run = mutants.run_seed(
        libraries(LOOP), 1, 20.0, hang_timeout=1.0, layers=("bitmap",), confirm_timeout=5
    )
    assert run.outcome == "kill" and run.how == "hang", run


@gcc
def test_an_abort_is_a_kill_by_abort() -> None:
    run = mutants.run_seed(
        libraries(ABORT), 1, 20.0, hang_timeout=3.0, layers=("bitmap",), confirm_timeout=60
    )
    assert run.outcome == "kill" and run.how == "abort", run


@gcc
def test_the_clean_reference_is_clean() -> None:
    """The control: the unmutated reference, same seed and layer, is neither kill nor error."""
    from recvmap.fuzz.subjects.build import build_library

    run = mutants.run_seed({64: build_library(64)}, 1, 3.0, layers=("bitmap",))
    assert run.outcome == "clean", run


RELOAD_ASSERT = "    assert(block->bmap && nbits > 0);"


@gcc
@pytest.mark.parametrize(
    "edit, wrong",
    [
        (None, None),
        ("    assert(nbits > 0);", "ram_dirty_bitmap_reload with a NULL bmap: died by signal 11"),
    ],
    ids=["reference", "no-null-bmap-assert"],
)
def test_abort_oracle_tries_the_reload_asserts(edit: str | None, wrong: str | None) -> None:
    """The abort oracle runs the ram layer's map asserts too: the reload's guard on a NULL
    bmap dropped (the survivor ram.c:6d374a0708) is a kill; the reference is clean (its
    controls, the same calls inside the domain, return)."""
    from recvmap.fuzz.subjects.build import build_library

    edits = {"ram.c": [(RELOAD_ASSERT, edit)]} if edit else None
    run = mutants.abort_oracle({64: build_library(64, edits)})
    if wrong is None:
        assert run.outcome == "clean", run
    else:
        assert run.outcome == "kill" and run.how == "abort", run
        assert f"64-bit {wrong}" in run.description, run


# --- verdicts and scores on hand-made runs ---------------------------------------------


def _result(
    key: str, *outcomes: str, kind: str = "", oracles: tuple[SeedRun, ...] = ()
) -> MutantResult:
    res = MutantResult(key, "systematic", "aor", f"x.c:{key}", "", "", "pending")
    res.equivalent_kind = kind
    res.seeds = [
        SeedRun(
            i, o, 1.0 + i if o == "kill" else None, "divergence" if o == "kill" else "exception"
        )
        for i, o in enumerate(outcomes)
    ]
    res.oracles = list(oracles)
    return settle(res)


def test_verdicts() -> None:
    assert _result("k", "kill", "kill", "kill").verdict == "killed"
    assert _result("f", "kill", "clean", "kill").verdict == "flaky"
    assert _result("e", "error", "error", "error").verdict == "error"
    assert _result("u", "unconfirmed", "clean", "clean").verdict == "unconfirmed-hang"
    assert _result("s", "clean", "clean", "clean").verdict == "survived"
    assert _result("a", "clean", "clean", "clean", kind="reasoned").verdict == "argued-equivalent"
    refuted = _result("r", "kill", "kill", "kill", kind="barrier")
    assert refuted.verdict == "equivalence-refuted" and refuted.killed
    lost = SeedRun(0, "kill", 2.0, "lost bit", oracle="stress")
    by_stress = _result("o", "clean", "clean", "clean", oracles=(lost,))
    assert (by_stress.verdict, by_stress.killed_by, by_stress.cause) == (
        "killed",
        "stress",
        "lost bit",
    )


def test_scores_both_ways() -> None:
    """Strict: 1 kill of the 5 mutants with new code. Lenient (the former rule): the errors
    and the unconfirmed hang count as kills, the argued equivalent leaves: 3 of 4."""
    identical = MutantResult("i", "systematic", "aor", "x.c:1", "", "", "equivalent")
    stillborn = MutantResult("b", "systematic", "aor", "x.c:2", "", "", "stillborn")
    results = [
        _result("k", "kill", "kill", "kill"),
        _result("e", "error", "error", "error"),
        _result("u", "unconfirmed", "unconfirmed", "unconfirmed"),
        _result("a", "clean", "clean", "clean", kind="reasoned"),
        _result("s", "clean", "clean", "clean"),
        identical,
        stillborn,
    ]
    fig = figures(results, budget=10.0)
    assert fig["counted"] == 5 and fig["identical_code"] == 1 and fig["stillborn"] == 1
    assert fig["score_strict"] == 0.2
    assert fig["lenient_denominator"] == 4 and fig["score_lenient"] == 0.75
    assert fig["errors"] == 1 and fig["unconfirmed_hangs"] == 1
    assert fig["argued_equivalent_not_killed"] == 1
    assert fig["killed_by_cause"] == {"divergence": 1}
    text = mutants.summary_text(results, mutants.Options(), fig)
    assert "strict 20.0%" in text and "lenient 75.0%" in text


def test_the_vectors_pipeline_scores_beside_the_fuzzer() -> None:
    """The vectors' replay takes the seeds' place in a pipeline of its own; the other
    oracles count for both (not the sanitized run of the other pipeline). Fuzzing kills
    f and s; the vectors kill v and f; the stress oracle kills o for both; the sanitized
    vectors kill a for the vectors only."""
    stress = SeedRun(0, "kill", 2.0, "lost bit", oracle="stress")
    asan = SeedRun(0, "kill", 1.0, "sanitizer", oracle="asan-vectors")

    def with_vectors(res: MutantResult, outcome: str) -> MutantResult:
        res.vectors = SeedRun(0, outcome, 0.1 if outcome == "kill" else None, oracle="vectors")
        return settle(res)

    results = [
        with_vectors(_result("f", "kill", "kill", "kill"), "kill"),
        with_vectors(_result("s", "kill", "kill", "kill"), "clean"),
        with_vectors(_result("v", "clean", "clean", "clean"), "kill"),
        with_vectors(_result("o", "clean", "clean", "clean", oracles=(stress,)), "clean"),
        with_vectors(_result("a", "clean", "clean", "clean", oracles=(asan,)), "clean"),
    ]
    assert [r.verdict for r in results] == ["killed", "killed", "survived", "killed", "survived"]
    assert [r.vectors_verdict for r in results] == ["killed", "survived", "killed"] + ["killed"] * 2
    fig = figures(results, budget=10.0)
    assert fig["score_strict"] == 0.6 and fig["score_fuzz"] == 0.4
    v = fig["vectors"]
    assert (v["score_strict"], v["score_replay"]) == (0.8, 0.4)
    assert v["fuzzer_only"] == ["s"] and v["vectors_only"] == ["v", "a"]
    assert v["killed_by_oracle"] == {"vectors": 2, "stress": 1, "asan-vectors": 1}
    text = mutants.summary_text(results, mutants.Options(), fig)
    assert "strict 80.0% (4 kills of 5" in text and "the replay alone 40.0%" in text


@gcc
def test_the_vectors_oracle_kills_a_bug_of_a_class_and_passes_the_reference() -> None:
    """The replay of the shipped vectors: clean on the reference; a bitmap_set that loses
    BITMAP_FIRST_WORD_MASK(start) inside one word is killed by a class vector."""
    from recvmap.fuzz.subjects.build import build_library

    clean = mutants.vectors_oracle({64: build_library(64), 32: build_library(32)})
    assert clean.outcome == "clean" and clean.programs > 300, clean
    edit = ("        *p |= mask & BITMAP_LAST_WORD_MASK(end);",
            "        *p |= BITMAP_LAST_WORD_MASK(end);")  # fmt: skip
    libs = {b: build_library(b, {"bitmap.c": [edit]}) for b in (64, 32)}
    run = mutants.vectors_oracle(libs)
    assert run.outcome == "kill" and run.how == "divergence", run
    assert run.description.startswith("bitmap-"), run
