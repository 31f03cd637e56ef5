# SPDX-License-Identifier: GPL-2.0-or-later
"""Bitmaps of 2^31 bits and more on the 64-bit build (a guest of 8 TiB at 4K pages).

Indexes at and past 2^31 break any 32-bit `int` hiding in index arithmetic. Operations are
sparse (near 2^31, near the end); memory is compared in a window around each operation and
in full once at the end, so no test scans the whole map per step.
"""

from __future__ import annotations

import random

import pytest

from recvmap.fuzz.engine import first_difference
from recvmap.fuzz.subjects.impls import CImpl, ModelImpl
from recvmap.pymodel.errors import PreconditionError
from recvmap.qemu_ref import load

NBITS = (1 << 31) + 200
BPL = 64


def marks() -> list[int]:
    around = [(1 << 31), (1 << 31) - BPL, (1 << 30), NBITS - 1, NBITS - BPL, (1 << 31) + BPL]
    return [m + d for m in around for d in (-65, -64, -1, 0, 1, 63, 64) if 0 <= m + d < NBITS]


@pytest.fixture(scope="module")
def big() -> tuple[ModelImpl, CImpl, object, object]:
    lib = load(bits=64)
    model, impl = ModelImpl(lib.layout), CImpl(lib)
    nwords = -(-NBITS // BPL)
    return model, impl, model.alloc(nwords), impl.alloc(nwords)


def window_equal(model: ModelImpl, impl: CImpl, mh: object, ih: object, bit: int) -> None:
    lo = max(0, bit // 8 - 64)
    a, b = model.image(mh)[lo : lo + 160], impl.image(ih)[lo : lo + 160]
    assert a == b, f"bytes differ at {lo + first_difference(a, b)} near bit {bit:#x}"


def test_sparse_operations_past_2_31(big: tuple[ModelImpl, CImpl, object, object]) -> None:
    model, impl, mh, ih = big
    rng = random.Random(31)
    points = marks()
    ops = []
    for _ in range(400):
        a, b = rng.choice(points), rng.choice(points)
        lo, hi = min(a, b), max(a, b)
        ops.append(
            rng.choice(
                [
                    ("set_bit", (a, "@")),
                    ("test_and_change_bit", (a, "@")),
                    ("test_bit", (a, "@")),
                    ("bitmap_set", ("@", lo, min(hi - lo, 300))),
                    ("bitmap_set_atomic", ("@", lo, min(hi - lo, 300))),
                    ("bitmap_clear", ("@", lo, min(hi - lo, 200))),
                    ("bitmap_test_and_clear_atomic", ("@", lo, min(hi - lo, 100))),
                    ("bitmap_count_one_with_offset", ("@", lo, min(hi - lo, 4096))),
                    ("find_next_bit", ("@", min(hi + 1, NBITS), lo)),
                    ("find_next_zero_bit", ("@", min(hi + 1, NBITS), lo)),
                    ("bitmap_find_next_zero_area", ("@", NBITS, lo, 3, 7)),
                ]
            )
        )
    compared = 0
    for name, args in ops:
        margs = [mh if x == "@" else x for x in args]
        iargs = [ih if x == "@" else x for x in args]
        try:
            expected = model.call(name, *margs)
        except PreconditionError:
            continue
        actual = impl.call(name, *iargs)
        compared += 1
        assert expected == actual or int(expected) == int(actual), f"{name}{args}: {actual}"
        touched = [x for x in args if isinstance(x, int) and x > 1000]
        for bit in touched:
            window_equal(model, impl, mh, ih, bit)
    assert compared > 350, f"only {compared} operations were inside QEMU's domain"
    assert model.image(mh) == impl.image(ih)  # one full comparison at the end


def test_whole_map_queries_agree(big: tuple[ModelImpl, CImpl, object, object]) -> None:
    model, impl, mh, ih = big
    model.call("set_bit", NBITS - 3, mh)
    impl.call("set_bit", NBITS - 3, ih)
    for name, args in [
        ("find_last_bit", (NBITS,)),
        ("bitmap_count_one", (NBITS,)),
        ("find_first_bit", (NBITS,)),
    ]:
        assert model.call(name, mh, *args) == impl.call(name, ih, *args), name
