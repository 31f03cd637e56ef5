# SPDX-License-Identifier: GPL-2.0-or-later
"""A Hypothesis state machine drives the model and the C library side by side.

Three arrays of the same size live on both sides; each rule applies one QEMU function to both,
and the invariant compares every memory image after every step. Numbers are drawn near word
boundaries (0, 1, BPL-1, BPL, BPL+1, 2*BPL ...) and near the end of the bitmap; arrays start
with dirty tail bits.
"""

from __future__ import annotations

from typing import Any

from helpers import RANGE_FUNCTIONS
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from recvmap.fuzz.engine import Session
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.subjects.impls import CImpl, ModelImpl
from recvmap.qemu_ref import load

NWORDS = 5


def near_boundaries(bpl: int, nbits: int) -> st.SearchStrategy[int]:
    marks = sorted({k * bpl + d for k in range(NWORDS + 1) for d in (-1, 0, 1)} | {nbits})
    return st.one_of(
        st.sampled_from([m for m in marks if 0 <= m <= nbits]),
        st.integers(0, nbits),
    )


def machine_for(bits: int) -> type[RuleBasedStateMachine]:
    lib = load(bits=bits)
    model, impl = ModelImpl(lib.layout), CImpl(lib)
    bpl = lib.layout.bits_per_long
    nbits = NWORDS * bpl
    num = near_boundaries(bpl, nbits)
    arr = st.integers(0, 2)
    full = (1 << bpl) - 1

    class BitmapMachine(RuleBasedStateMachine):
        session: Session
        step_no: int

        @initialize(words=st.lists(st.integers(0, full), min_size=3 * NWORDS, max_size=3 * NWORDS))
        def start(self, words: list[int]) -> None:
            arrays = [
                ArraySpec(NWORDS, {i: words[k * NWORDS + i] for i in range(NWORDS)})
                for k in range(3)
            ]
            self.session = Session(Program(lib.layout, arrays), model, impl)
            self.step_no = 0

        def apply(self, name: str, *args: Any) -> None:
            op = Op(name, tuple(Ref(a.index) if isinstance(a, Ref) else a for a in args))
            _, divergence = self.session.step(self.step_no, op)
            self.step_no += 1
            assert divergence is None, divergence.describe()

        @rule(
            name=st.sampled_from(
                [
                    "set_bit",
                    "set_bit_atomic",
                    "clear_bit",
                    "clear_bit_atomic",
                    "change_bit",
                    "test_bit",
                    "test_and_set_bit",
                    "test_and_clear_bit",
                    "test_and_change_bit",
                ]
            ),
            nr=st.integers(0, nbits - 1),
            a=arr,
        )
        def bitop(self, name: str, nr: int, a: int) -> None:
            self.apply(name, nr, Ref(a))

        @rule(
            name=st.sampled_from(RANGE_FUNCTIONS),
            start=num,
            nr=num,
            a=arr,
        )
        def range_op(self, name: str, start: int, nr: int, a: int) -> None:
            if start + nr <= nbits:
                self.apply(name, Ref(a), start, nr)

        @rule(
            name=st.sampled_from(["bitmap_and", "bitmap_or", "bitmap_xor", "bitmap_andnot"]),
            n=num.filter(bool),
            d=arr,
            a=arr,
            b=arr,
        )
        def binary_op(self, name: str, n: int, d: int, a: int, b: int) -> None:
            self.apply(name, Ref(d), Ref(a), Ref(b), n)

        @rule(
            name=st.sampled_from(
                ["bitmap_equal", "bitmap_intersects", "bitmap_complement", "bitmap_copy"]
            ),
            n=num.filter(bool),
            a=arr,
            b=arr,
        )
        def pair_op(self, name: str, n: int, a: int, b: int) -> None:
            if name == "bitmap_copy" and a == b:
                return  # memcpy onto itself is outside C's rules
            self.apply(name, Ref(a), Ref(b), n)

        @rule(
            name=st.sampled_from(
                ["bitmap_zero", "bitmap_fill", "bitmap_empty", "bitmap_full", "bitmap_count_one"]
            ),
            n=num.filter(bool),
            a=arr,
        )
        def whole_op(self, name: str, n: int, a: int) -> None:
            self.apply(name, Ref(a), n)

        @rule(
            name=st.sampled_from(["find_next_bit", "find_next_zero_bit"]),
            size=num,
            offset=num,
            a=arr,
        )
        def find_op(self, name: str, size: int, offset: int, a: int) -> None:
            self.apply(name, Ref(a), size, offset)

        @rule(
            start=num,
            nr=st.integers(0, 2 * bpl),
            mask=st.sampled_from([0, 1, 3, 7, 63]),
            size=num,
            a=arr,
        )
        def zero_area(self, start: int, nr: int, mask: int, size: int, a: int) -> None:
            self.apply("bitmap_find_next_zero_area", Ref(a), size, start, nr, mask)

        @rule(
            name=st.sampled_from(["bitmap_copy_with_src_offset", "bitmap_copy_with_dst_offset"]),
            off=num,
            n=num.filter(bool),
            d=arr,
            s=arr,
        )
        def offset_copy(self, name: str, off: int, n: int, d: int, s: int) -> None:
            if d != s and off + n <= nbits:
                self.apply(name, Ref(d), Ref(s), off, n)

        @rule(
            name=st.sampled_from(
                ["bitmap_to_le", "bitmap_from_le", "bitmap_copy_and_clear_atomic"]
            ),
            n=num.filter(bool),
            d=arr,
            s=arr,
        )
        def move_op(self, name: str, n: int, d: int, s: int) -> None:
            if d != s:
                self.apply(name, Ref(d), Ref(s), n)

        @precondition(lambda self: hasattr(self, "session"))
        @invariant()
        def memory_identical(self) -> None:
            assert self.session.compare_memory(self.step_no, Op("invariant", ())) is None

    BitmapMachine.__name__ = f"BitmapMachine{bits}"
    return BitmapMachine


TestStateful64 = machine_for(64).TestCase
TestStateful32 = machine_for(32).TestCase
TestStateful64.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestStateful32.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
