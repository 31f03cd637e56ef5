# SPDX-License-Identifier: GPL-2.0-or-later
"""The mutation gate: a change that weakens the fuzzer fails CI.

A fixed sample of mutants of the C reference (fuzz/mutation/mutants_hand.py), each a plausible
patch mistake that only a particular strength of the generators reveals (target pages
smaller than host pages, failing discards, damaged recovery streams, 32-bit senders, dirty
tail bits, ranges crossing words...). The differential engine, run here in-process exactly
as ``recvmap mutants`` runs it (random inputs through each layer's harness in turn), must
kill every one within a short budget; the measured times are a fraction of a second, so
the budget leaves room for a slow CI machine. ``recvmap mutants`` measures the full set.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from recvmap.fuzz.mutation import mutants

pytestmark = [
    pytest.mark.extra("mutation"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the mutants"),
]

BUDGET = 10.0  # seconds of fuzzing per mutant (they die in well under one second)
SEED = 1

# (mutant, what of the generators it needs): all die by divergence, none by a crash.
GATE = [
    ("hand:recv-offset-host-page-bits", "host pages larger than target pages"),
    ("hand:offset-no-32bit-wrap", "32-bit hosts, addresses below the block"),
    ("hand:discard-clear-after-checks", "discards that fail the alignment checks"),
    ("hand:discard-clear-rounds-length-up", "discard lengths that are not whole target pages"),
    ("hand:discard-length-align-mask-off-by-one", "discard lengths a few bytes off a page"),
    ("hand:recovery-size-padded-to-long", "a 32-bit destination sending the stream"),
    ("hand:send-used-length", "blocks whose postcopy_length differs from used_length"),
    ("hand:reload-size-check-lenient", "recovery streams with a damaged size"),
    ("hand:reload-ignores-file-error", "recovery streams cut inside the end mark"),
    ("hand:init-bitmaps-no-ram-guard", "setups with no RAM (every used_length 0)"),
    ("hand:test-and-clear-resets-mask", "unaligned ranges that end inside a later word"),
    ("hand:find-first-bit-unclamped", "dirty tail bits past nbits"),
    ("hand:zero-area-end-inclusive", "zero areas that end exactly at size"),
    ("hand:bit-mask-hardcoded-64", "32-bit word layouts"),
]


@pytest.fixture(scope="module")
def by_key() -> dict[str, mutants.Mutant]:
    return {m.key: m for m in mutants.all_mutants()}


def libraries(m: mutants.Mutant | None) -> dict[int, Path]:
    return {bits: mutants.build(m, bits) for bits in (64, 32)}


def test_reference_is_clean() -> None:
    """The control: the unmutated reference survives, so every kill below is the mutant's."""
    libs = libraries(None)
    print(f"seed {SEED}")
    result = mutants.hunt(libs, SEED, 3.0)
    assert not result["killed"], result.get("description")


@pytest.mark.parametrize("key, needs", GATE, ids=[k for k, _ in GATE])
def test_fuzzer_kills(by_key: dict[str, mutants.Mutant], key: str, needs: str) -> None:
    assert key in by_key, f"{key} is gone from fuzz/mutation/mutants_hand.py"
    m = by_key[key]
    assert m.line > 0, f"{key} no longer applies to the C sources: update its edit"
    libs = libraries(m)  # gcc first: the budget below is the fuzzer's alone
    t0 = time.monotonic()
    result = mutants.hunt(libs, SEED, BUDGET)
    assert result["killed"], (
        f"the fuzzer no longer kills {key} ({m.note}) within {BUDGET:g} s: "
        f"check the generator bias for {needs} ({result['programs']} programs ran, "
        f"seed {SEED})"
    )
    assert result["how"] == "divergence", result
    assert time.monotonic() - t0 < BUDGET + 30


def test_every_mutant_applies_exactly_once() -> None:
    """Stale mutants fail loudly: each edit of every mutant matches its source exactly once
    (build_library's rule), so the table and the generator follow the C sources."""
    texts = mutants.source_texts()
    stale = []
    for m in mutants.all_mutants():
        current = dict(texts)
        for file, old, new in m.edits:
            if current[file].count(old) != 1:
                stale.append(f"{m.key}: {old.strip()[:60]!r}")
                break
            current[file] = current[file].replace(old, new)
    assert not stale, "mutants that no longer apply:\n" + "\n".join(stale)


def test_generator_covers_every_operator() -> None:
    """universalmutator's C rules and ours (generate.OWN_RULES) all produce mutants of the C
    reference, inside function and #define bodies."""
    ms = mutants.systematic_mutants()
    ops = {m.operator for m in ms}
    expected = {"aor", "ror", "lcr", "bitop", "shift", "constant", "assign", "incdec",
                "unary-drop", "negate", "swap-args", "drop-statement", "insert-jump",
                "condition-constant", "atomic-plain", "atomic-wrong"}  # fmt: skip
    assert expected <= ops, expected - ops
    assert all(m.function for m in ms), "a mutant outside any function or #define body"


def test_generator_leaves_comments_alone() -> None:
    """tree-sitter's view: no systematic mutant changes text inside a comment or a string
    (the changed span of each line starts after an even number of quotes, outside any
    comment of that line)."""
    for m in mutants.systematic_mutants():
        before, after = m.before, m.after
        lo = next(
            (i for i, (x, y) in enumerate(zip(before, after, strict=False)) if x != y), len(before)
        )
        head = before[:lo]
        assert head.count('"') % 2 == 0, (m.key, before, after)
        assert "//" not in head and head.count("/*") == head.count("*/"), (m.key, before)


def test_every_argued_equivalent_exists() -> None:
    """The argued equivalents of mutants_hand name mutants the generator still makes."""
    from recvmap.fuzz.mutation.mutants_hand import EQUIVALENT

    keys = {m.key for m in mutants.systematic_mutants()}
    assert set(EQUIVALENT) <= keys, set(EQUIVALENT) - keys
