# SPDX-License-Identifier: GPL-2.0-or-later
"""The model and the C reference agree on every return value and every memory byte.

Programs come from three producers: the fuzz decoder driven by Hypothesis bytes, bounded
exhaustive enumeration of small ranges, and a stateful machine. Both word widths run.
"""

from __future__ import annotations

import pytest
from helpers import RANGE_FUNCTIONS
from hypothesis import given
from hypothesis import strategies as st

from recvmap.fuzz.engine import INVALID, Session, run_stream
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.program.decode_bitmap import decode_bitmap_program
from recvmap.fuzz.subjects.impls import CImpl, ModelImpl

Pair = tuple[ModelImpl, CImpl]


def check(program: Program, pair: Pair) -> list[object]:
    """Run ``program`` on both sides; fail with the first divergence."""
    model, impl = pair
    session = Session(program, model, impl)
    results = []
    for i, op in enumerate(program.ops):
        result, divergence = session.step(i, op)
        assert divergence is None, divergence.describe()
        results.append(result)
    return results


@given(data=st.binary(min_size=8, max_size=600))
def test_decoded_programs_agree(pair: Pair, data: bytes) -> None:
    model, impl = pair
    program, next_op = decode_bitmap_program(data, model.layout)
    kept, divergence = run_stream(program, next_op, Session(program, model, impl))
    assert divergence is None, f"{divergence.describe()}\n{kept.to_json()}"


def patterns(bpl: int, nwords: int) -> list[dict[int, int]]:
    """Initial contents: empty, full (tail bits set), and an irregular mixture."""
    full = (1 << bpl) - 1
    mixed = {i: (0x9E3779B97F4A7C15 * (i + 1)) & full for i in range(nwords)}
    return [{}, dict.fromkeys(range(nwords), full), mixed]


@pytest.mark.parametrize("name", RANGE_FUNCTIONS)
def test_every_small_range(pair: Pair, name: str) -> None:
    """Every (start, nr) with start + nr <= 3*BPL, from three initial contents."""
    model, _ = pair
    bpl = model.layout.bits_per_long
    limit = 3 * bpl
    for words in patterns(bpl, 3):
        session = Session(Program(model.layout, [ArraySpec(3, words)]), *pair)
        for start in range(limit + 1):
            for nr in range(limit - start + 1):
                session.reset()  # each range starts from the initial contents
                _, divergence = session.step(0, Op(name, (Ref(0), start, nr)))
                assert divergence is None, divergence.describe()


@pytest.mark.parametrize("name", ["find_next_bit", "find_next_zero_bit"])
def test_every_find_offset(pair: Pair, name: str) -> None:
    """Every size and offset up to 3*BPL on sparse, dense and mixed arrays."""
    model, _ = pair
    bpl = model.layout.bits_per_long
    limit = 3 * bpl
    for words in patterns(bpl, 3) + [{1: 1 << (bpl - 1)}, {2: 1}]:
        ops = [
            Op(name, (Ref(0), size, offset))
            for size in range(limit + 1)
            for offset in range(limit + 2)
        ]
        ops += [
            Op(f, (Ref(0), size))
            for size in range(limit + 1)
            for f in ("find_first_bit", "find_first_zero_bit", "find_last_bit")
        ]
        results = check(Program(model.layout, [ArraySpec(3, dict(words))], ops), pair)
        assert INVALID not in [r[0] if isinstance(r, tuple) else r for r in results]


@pytest.mark.parametrize("name", ["bitmap_copy_with_src_offset", "bitmap_copy_with_dst_offset"])
def test_every_small_offset_copy(pair: Pair, name: str) -> None:
    """Every (offset, nbits) with offset + nbits <= 3*BPL: aligned and unaligned paths, tails."""
    model, _ = pair
    bpl = model.layout.bits_per_long
    limit = 3 * bpl
    full = (1 << bpl) - 1
    for dst, src in [({}, dict.fromkeys(range(3), full)), (patterns(bpl, 3)[2], {0: 1, 2: full})]:
        arrays = [ArraySpec(3, dst), ArraySpec(3, src)]
        session = Session(Program(model.layout, arrays), *pair)
        compared = 0
        for offset in range(limit + 1):
            for nbits in range(limit - offset + 1):
                session.reset()
                result, divergence = session.step(0, Op(name, (Ref(0), Ref(1), offset, nbits)))
                assert divergence is None, divergence.describe()
                compared += not (isinstance(result, tuple) and result[0] == INVALID)
        assert compared > limit * limit // 4  # most of the sweep is inside QEMU's domain


def test_every_small_zero_area(pair: Pair) -> None:
    """bitmap_find_next_zero_area for every start and length up to 3*BPL, several alignments."""
    model, _ = pair
    bpl = model.layout.bits_per_long
    limit = 3 * bpl
    for words in patterns(bpl, 3)[::2] + [{0: 0x0F0F, 1: 1 << (bpl - 1)}]:
        ops = [
            Op("bitmap_find_next_zero_area", (Ref(0), limit, start, nr, mask))
            for mask in (0, 1, 7, bpl - 1)
            for start in range(0, limit + 1, 3)
            for nr in range(0, limit + 2, 5)
        ]
        check(Program(model.layout, [ArraySpec(3, words)], ops), pair)
