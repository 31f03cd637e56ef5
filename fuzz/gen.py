# SPDX-License-Identifier: GPL-2.0-or-later
"""Decode fuzzer bytes into programs, biased to word and page boundaries.

Any byte string decodes to a program (running out of bytes reads zeros), so atheris,
Hypothesis (``st.binary()``) and ``random.randbytes`` all drive the same decoder. The decoder
knows argument *kinds* from the model's parameter names; which values are inside QEMU's
domain is decided by the model alone, when the engine runs the operation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from recvmap.pymodel.words import Layout, Words

from .impls import ModelImpl
from .program import ArraySpec, Op, Program, Ref

T = TypeVar("T")

# Functions that copy with memcpy semantics: QEMU never passes the same array twice.
DISTINCT_ARRAYS = {
    "bitmap_copy",
    "bitmap_copy_with_src_offset",
    "bitmap_copy_with_dst_offset",
    "bitmap_copy_and_clear_atomic",
    "bitmap_to_le",
    "bitmap_from_le",
}
MODEL_ONLY = {"bitmap_new", "bitmap_zero_extend"}


class Source:
    """A stream of choices read from bytes; zeros once the bytes run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def exhausted(self) -> bool:
        return self.pos >= len(self.data)

    def uint(self, nbytes: int) -> int:
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return int.from_bytes(chunk.ljust(nbytes, b"\0"), "little")

    def below(self, n: int) -> int:
        """An integer in [0, n)."""
        if n <= 1:
            return 0
        return self.uint(max(1, (n.bit_length() + 7) // 8)) % n

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]


ARRAY = "@array"  # parameter kind: a word array (annotated ``Words`` in the model)


def bitmap_signatures(names: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Parameter kinds of each model function of the bitmap layer: ARRAY or the QEMU name."""
    sigs = {}
    for name, fn in ModelImpl.functions.items():
        if name in MODEL_ONLY or (names is not None and name not in names):
            continue
        params = inspect.signature(fn).parameters.values()
        sigs[name] = tuple(ARRAY if p.annotation in ("Words", Words) else p.name for p in params)
    return sigs


def boundary_number(src: Source, bpl: int, limit: int) -> int:
    """A bit number or count near word boundaries and near ``limit`` (the array's bits)."""
    kind = src.below(16)
    if kind < 6:
        base = src.below(max(1, limit // bpl) + 2) * bpl
        return max(0, base + src.choice((-1, 0, 0, 1)))
    if kind < 9:
        return max(0, limit + src.choice((-bpl, -1, 0, 0, 1)))
    if kind < 14:
        return src.below(limit + 2)
    if kind == 14:
        return src.choice((0, 1, 2, bpl - 1, bpl, bpl + 1, 2 * bpl))
    return src.choice((-1, 1 << (bpl - 1), (1 << bpl) - 1, limit * 2))  # mostly out of domain


def initial_word(src: Source, bpl: int) -> int:
    full = (1 << bpl) - 1
    kind = src.below(8)
    if kind == 0:
        return full
    if kind == 1:
        return 1 << src.below(bpl)
    if kind == 2:
        return full ^ (1 << src.below(bpl))
    if kind == 3:
        return full << src.below(bpl) & full  # high bits: dirty tail
    return src.uint(bpl // 8)


def decode_arrays(src: Source, layout: Layout, max_words: int) -> list[ArraySpec]:
    bpl = layout.bits_per_long
    nwords = 1 + src.below(min(max_words, 6) if src.below(4) else max_words)
    arrays = []
    for _ in range(3):
        n = nwords if src.below(4) else 1 + src.below(max_words)
        words = {i: initial_word(src, bpl) for i in range(n) if src.below(3)}
        arrays.append(ArraySpec(n, words))
    return arrays


def decode_op(
    src: Source,
    sigs: dict[str, tuple[str, ...]],
    names: Sequence[str],
    arrays: list[ArraySpec],
    bpl: int,
) -> Op:
    name = src.choice(names)
    refs: list[int] = []
    args: list[int | Ref] = []
    for param in sigs[name]:
        if param == ARRAY:
            k = src.below(len(arrays))
            if name in DISTINCT_ARRAYS and k in refs:
                k = next(i for i in range(len(arrays)) if i not in refs)
            refs.append(k)
            args.append(Ref(k))
        elif param == "align_mask":
            args.append((1 << src.below(bpl // 4)) - 1)
        else:
            limit = max(arrays[r].nwords for r in refs) * bpl if refs else bpl
            args.append(boundary_number(src, bpl, limit))
    return Op(name, tuple(args))


def decode_bitmap_program(
    data: bytes,
    layout: Layout,
    max_ops: int = 24,
    max_words: int = 64,
    names: Sequence[str] | None = None,
) -> tuple[Program, Callable[[], Op | None]]:
    """Arrays decoded now, and a function yielding the next operation (None when done)."""
    src = Source(data)
    sigs = bitmap_signatures(names)
    ordered = sorted(sigs)
    program = Program(layout, decode_arrays(src, layout, max_words))
    count = [0]

    def next_op() -> Op | None:
        if count[0] >= max_ops or (count[0] > 0 and src.exhausted()):
            return None
        count[0] += 1
        return decode_op(src, sigs, ordered, program.arrays, layout.bits_per_long)

    return program, next_op


def run_stream(
    program: Program, next_op: Callable[[], Op | None], session: Any
) -> tuple[Program, Any]:
    """Feed decoded operations to an engine Session; keep only those inside QEMU's domain."""
    from .engine import INVALID

    kept: list[Op] = []
    while (op := next_op()) is not None:
        result, divergence = session.step(len(kept), op)
        if isinstance(result, tuple) and result and result[0] == INVALID:
            continue
        kept.append(op)
        if divergence is not None:
            return program.with_ops(kept), divergence
    return program.with_ops(kept), None
