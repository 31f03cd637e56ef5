# SPDX-License-Identifier: GPL-2.0-or-later
"""The decoder's inlined fast path reads the same choices as its readable form.

``decode_op`` calls ``_boundary``, a copy of ``boundary_number`` with the one-byte reads
inlined for speed; the readable ``boundary_number`` is the definition. Same bytes, same
position: same number and same bytes consumed, including inputs that run out mid-number.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from recvmap.fuzz.program import ArraySpec, Ref
from recvmap.fuzz.program.decode_bitmap import (
    Source,
    _boundary,
    _signatures,
    boundary_number,
    decode_op,
    fold,
)
from recvmap.pymodel import LP64_LE, PreconditionError, Words, at_release

MODEL_FUNCTIONS = at_release().functions()  # the model's table (pymodel.releases)


@pytest.mark.parametrize("bpl", [32, 64])
def test_boundary_fast_path_matches_definition(bpl: int) -> None:
    rng = random.Random(bpl)
    for _ in range(20_000):
        data = rng.randbytes(rng.randrange(0, 6))
        limit = rng.choice([0, 1, bpl - 1, bpl, 3 * bpl, 64 * bpl, 300 * bpl + 5])
        top = limit - rng.randrange(0, 2)  # a count's top, or a bit number's
        start = rng.randrange(0, 3)
        a, b = Source(data), Source(data)
        a.pos = b.pos = start
        assert _boundary(a, bpl, limit, top) == boundary_number(b, bpl, limit, top), (data, top)
        assert a.pos == b.pos, (data, limit)


def test_fold_reflects_into_the_domain() -> None:
    # Worked out by hand: reflection at -0 and at top + 1/2.
    assert [fold(v, 63) for v in (-1, 0, 1, 62, 63, 64, 65, 127, 128)] == [
        1, 0, 1, 62, 63, 63, 62, 0, 63
    ]  # fmt: skip
    assert fold(5, 0) == 0 and fold(-3, 10) == 3 and fold(70, -1) == 70


@pytest.mark.parametrize("nwords", [1, 4])
def test_mostly_inside_the_domain_some_outside(nwords: int) -> None:
    """Decoded operations are mostly inside QEMU's domain (they reach the implementation)
    yet some are outside it, of every class the model rejects, and the boundary values
    stay frequent. ~0.1 s."""
    bpl = 64
    sigs, names = _signatures(None)
    arrays = [ArraySpec(nwords, {}) for _ in range(3)]
    rng = random.Random(nwords)
    rejected: Counter[str] = Counter()
    values: Counter[int] = Counter()
    total = 0
    for _ in range(300):
        src = Source(rng.randbytes(200))
        maps = [Words(LP64_LE, nwords) for _ in arrays]
        for _ in range(10):
            op = decode_op(src, sigs, names, arrays, bpl)
            args = [maps[a.index] if isinstance(a, Ref) else a for a in op.args]
            values.update(a for a in op.args if isinstance(a, int))
            total += 1
            try:
                MODEL_FUNCTIONS[op.name](*args)
            except PreconditionError as err:
                kind = (
                    "long"
                    if "-bit" in err.rule
                    else "past the allocation"
                    if "past the allocation" in err.rule
                    else "assert"
                    if "assert" in err.rule
                    else "nbits != 0"
                    if "nbits != 0" in err.rule
                    else err.rule
                )
                rejected[kind] += 1
    share = sum(rejected.values()) / total
    assert 0.03 < share < 0.2, (share, rejected)
    assert {"long", "past the allocation", "assert", "nbits != 0"} <= set(rejected), rejected
    limit = nwords * bpl
    for boundary in (0, 1, bpl - 1, bpl, limit - 1, limit):
        assert values[boundary] > total / 100, (boundary, values[boundary])


def test_harness_decodes_only_functions_the_release_has() -> None:
    """At v2.12.0 the bitmap harness never picks a function that release lacks (its calls
    would all be rejected): count_one_with_offset, the offset copies, test_and_clear and
    clear_bit_atomic come later (pymodel/releases.py). ~0.3 s."""
    from recvmap.fuzz.campaign.harness import Harness
    from recvmap.fuzz.subjects.impls import ModelImpl, Subject

    old = ModelImpl(LP64_LE, "v2.12.0")
    lacks = {n for n in MODEL_FUNCTIONS if not old.has(n)}
    assert {"bitmap_test_and_clear", "clear_bit_atomic"} <= lacks
    harness = Harness("bitmap", Subject(None, 64), release="v2.12.0")
    rng = random.Random(3)
    seen: set[str] = set()
    for _ in range(150):
        data = rng.randbytes(300)
        program, next_op, _ = harness.decode(data)
        while (op := next_op()) is not None:
            seen.add(op.name)
    assert not seen & lacks, seen & lacks
    assert len(seen) > 20, seen
