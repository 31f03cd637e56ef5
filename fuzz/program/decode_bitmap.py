# SPDX-License-Identifier: GPL-2.0-or-later
"""Decode fuzzer bytes into programs, biased to word and page boundaries.

Any byte string decodes to a program (running out of bytes reads zeros), so atheris,
Hypothesis (``st.binary()``) and ``random.randbytes`` all drive the same decoder. The decoder
knows argument *kinds* from the model's parameter names; which values are inside QEMU's
domain is decided by the model alone, when the engine runs the operation.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import TypeVar

from recvmap.pymodel.releases import at_release
from recvmap.pymodel.words import Layout, Words

from .format import ArraySpec, Op, Program, Ref

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
# Allocating functions: never an operation (the engine's arrays have a fixed size); an array
# is sometimes made by them before the first one instead (decode_alloc, engine/alloc.py).
MODEL_ONLY = {"bitmap_new", "bitmap_zero_extend"}


class Source:
    """A stream of choices read from bytes; zeros once the bytes run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.pos = 0

    def exhausted(self) -> bool:
        return self.pos >= len(self.data)

    def uint(self, nbytes: int) -> int:
        """The next ``nbytes`` bytes, little-endian (a short tail reads as zero-padded)."""
        pos = self.pos
        self.pos = pos + nbytes
        return int.from_bytes(self.data[pos : pos + nbytes], "little")

    def below(self, n: int) -> int:
        """An integer in [0, n), from as many bytes as n needs."""
        if n <= 1:
            return 0
        pos = self.pos
        if n < 256:  # one byte: the common case, without slicing
            self.pos = pos + 1
            return self.data[pos] % n if pos < self.size else 0
        nbytes = (n.bit_length() + 7) >> 3
        self.pos = pos + nbytes
        return int.from_bytes(self.data[pos : pos + nbytes], "little") % n

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]


ARRAY = "@array"  # parameter kind: a word array (annotated ``Words`` in the model)


def bitmap_signatures(names: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Parameter kinds of each model function of the bitmap layer (the model's own table,
    ``pymodel.releases``): ARRAY or the QEMU name."""
    sigs = {}
    for name, fn in at_release().functions().items():
        if name in MODEL_ONLY or (names is not None and name not in names):
            continue
        params = inspect.signature(fn).parameters.values()
        sigs[name] = tuple(ARRAY if p.annotation in ("Words", Words) else p.name for p in params)
    return sigs


def boundary_number(src: Source, bpl: int, limit: int, top: int | None = None) -> int:
    """A bit number or count near word boundaries and near ``limit`` (the arrays' bits).

    ``top`` is the largest value the argument can take inside QEMU's domain (``limit`` for a
    count or a start, ``limit - 1`` for a bit number; ``limit`` when not given). 31 kinds
    in 32 give a value in [0, top], so that most operations are inside the domain by
    construction and reach the implementation: a word boundary +-1 (12 in 32), near
    ``limit`` (6), uniform (11), a small constant (2); a value past ``top`` is folded back
    below it (top + 1 -> top, top + 2 -> top - 1: a boundary stays a boundary). The last
    kind is outside the domain on purpose (a negative number, a value not representable as
    a long, just past ``top``, far past the arrays), so that the model's preconditions stay
    exercised and the engine's handling of rejected operations too.
    """
    if top is None:
        top = limit
    kind = src.below(32)
    if kind == 31:
        return src.choice((-1, 1 << (bpl - 1), (1 << bpl) - 1, top + 1, 2 * limit + 1))
    if kind < 12:
        value = src.below(limit // bpl + 1) * bpl + src.choice(_NEAR)
    elif kind < 18:
        value = limit + src.choice((-bpl, -1, 0, 0, 1))
    elif kind < 29:
        return src.below(top + 1)
    else:
        value = src.choice((0, 1, 2, bpl - 1, bpl, bpl + 1, 2 * bpl))
    return fold(value, top)


_NEAR = (-1, 0, 0, 1)


def fold(value: int, top: int) -> int:
    """``value`` brought into [0, top] by reflection at both ends: -1 -> 1 (so that 0 and
    its neighbour -1 give 0 and 1, not mostly 0), top + 1 -> top, top + 2 -> top - 1, ...
    Unchanged when top < 0 (nothing is inside the domain)."""
    if value < 0:
        value = -value
    if value > top >= 0:
        return top - (value - top - 1) % (top + 1)
    return value


def _boundary(src: Source, bpl: int, limit: int, top: int) -> int:
    """boundary_number() with the one-byte reads inlined: the same bytes give the same
    number (tests/test_decode_fast.py holds the two together); decoding is a third of an
    operation's cost in the engine loop, and this is most of decoding."""
    data, size, pos = src.data, src.size, src.pos
    kind = data[pos] & 31 if pos < size else 0  # below(32)
    pos += 1
    if kind < 12:
        src.pos = pos
        value = src.below(limit // bpl + 1) * bpl
        pos = src.pos
        src.pos = pos + 1
        value += _NEAR[data[pos] & 3] if pos < size else -1
    elif kind < 18:
        src.pos = pos + 1
        value = limit + (-bpl, -1, 0, 0, 1)[data[pos] % 5 if pos < size else 0]
    elif kind < 29:
        src.pos = pos
        return src.below(top + 1)
    elif kind < 31:
        src.pos = pos + 1
        value = (0, 1, 2, bpl - 1, bpl, bpl + 1, 2 * bpl)[data[pos] % 7 if pos < size else 0]
    else:
        src.pos = pos + 1
        return (-1, 1 << (bpl - 1), (1 << bpl) - 1, top + 1, 2 * limit + 1)[
            data[pos] % 5 if pos < size else 0
        ]
    if value < 0:
        value = -value
    if value > top >= 0:
        return top - (value - top - 1) % (top + 1)
    return value


_WORD_TYPECODE = {array(c).itemsize * 8: c for c in "QLI"}  # word bits -> array typecode


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


def decode_words(src: Source, bpl: int, n: int) -> dict[int, int]:
    """Initial words of an ``n``-word array from a few bytes, whatever ``n``: empty, full
    (tail bits set), a pseudo-random fill, a run of ones across word boundaries, or a few
    explicit words (first, last, anywhere) -- so large arrays leave bytes for operations."""
    full = (1 << bpl) - 1
    kind = src.below(8)
    if kind == 0:
        return {}
    if kind == 1:
        return dict.fromkeys(range(n), full)
    if kind == 2:  # n pseudo-random words from a 4-byte seed (SHAKE-128: seeding a
        # Mersenne Twister costs 10 us, more than the rest of a program's arrays)
        fill = hashlib.shake_128(src.uint(4).to_bytes(4, "little")).digest(n * bpl // 8)
        words = array(_WORD_TYPECODE[bpl], fill)  # little-endian, whatever the host's order
        if sys.byteorder == "big":
            words.byteswap()
        return dict(enumerate(words))
    if kind == 3:
        lo = src.below(n * bpl)
        hi = lo + 1 + src.below(n * bpl - lo)
        run = ((1 << (hi - lo)) - 1) << lo
        return {i: run >> (i * bpl) & full for i in range(lo // bpl, -(-hi // bpl))}
    words = {}
    for _ in range(1 + src.below(min(n, 8))):
        where = src.below(4)
        i = 0 if where == 0 else n - 1 if where == 1 else src.below(n)
        words[i] = initial_word(src, bpl)
    return words


def decode_arrays(src: Source, layout: Layout, max_words: int) -> list[ArraySpec]:
    bpl = layout.bits_per_long
    nwords = 1 + src.below(min(max_words, 6) if src.below(4) else max_words)
    arrays = []
    for _ in range(3):
        n = nwords if src.below(4) else 1 + src.below(max_words)
        arrays.append(ArraySpec(n, decode_words(src, bpl, n)))
    return arrays


REFS = tuple(Ref(k) for k in range(8))
STARTS = frozenset({"start", "offset", "shift"})
COUNTS = frozenset({"nr", "nbits"})


_PLANS: dict[str, tuple[tuple[str, ...], tuple[tuple[int, ...], bool]]] = {}
_ARRAY, _ALIGN, _COUNT, _START, _NUMBER, _INDEX = range(6)


def _plan(name: str, params: tuple[str, ...]) -> tuple[tuple[int, ...], bool]:
    """The argument kinds of ``name`` as small ints, and whether its arrays must differ.

    A ``nr`` before any array is a bit number (bitops.h: ``set_bit(nr, addr)``), inside
    the domain up to the arrays' bits - 1; a count (``nr`` or ``nbits`` after the arrays)
    and every other number up to the arrays' bits."""
    cached = _PLANS.get(name)
    if cached is not None and (cached[0] is params or cached[0] == params):
        return cached[1]
    kinds = []
    for i, p in enumerate(params):
        if p == ARRAY:
            kinds.append(_ARRAY)
        elif p == "align_mask":
            kinds.append(_ALIGN)
        elif p == "nr" and ARRAY not in params[:i]:
            kinds.append(_INDEX)
        elif p in COUNTS:
            kinds.append(_COUNT)
        elif p in STARTS:
            kinds.append(_START)
        else:
            kinds.append(_NUMBER)
    plan = (tuple(kinds), name in DISTINCT_ARRAYS)
    _PLANS[name] = (params, plan)
    return plan


def decode_op(
    src: Source,
    sigs: dict[str, tuple[str, ...]],
    names: Sequence[str],
    arrays: list[ArraySpec],
    bpl: int,
) -> Op:
    """One operation: its arrays are chosen first, so that every bit number and count
    (``set_bit``'s ``nr`` comes before its array) is biased to those arrays' size (the
    smallest of them: what every array of the call holds); a count after a start, offset or
    shift is biased to fit in what is left of the array. Most values are inside QEMU's
    domain by construction, a few outside it (``boundary_number``)."""
    data, size, pos = src.data, src.size, src.pos
    count = len(names)
    if 1 < count < 256:  # src.below(count), inlined as in _boundary
        name = names[data[pos] % count if pos < size else 0]
        src.pos = pos = pos + 1
    else:
        name = names[src.below(count)]
        pos = src.pos
    params = sigs[name]
    cached = _PLANS.get(name)  # _plan's cache, looked up here: a call less per operation
    kinds, distinct = cached[1] if cached and cached[0] is params else _plan(name, params)
    narrays = len(arrays)
    refs: list[int] = []
    limit = -1
    for kind in kinds:
        if kind == _ARRAY:
            if 1 < narrays < 256:
                k = data[pos] % narrays if pos < size else 0
                src.pos = pos = pos + 1
            else:
                k = src.below(narrays)
                pos = src.pos
            if distinct and k in refs:
                k = next(i for i in range(narrays) if i not in refs)
            refs.append(k)
            n = arrays[k].nwords
            if n < limit or limit < 0:
                limit = n
    limit = limit * bpl if refs else bpl
    args: list[int | Ref | str] = []
    r = 0
    base = 0
    for kind in kinds:
        if kind == _ARRAY:
            k = refs[r]
            r += 1
            args.append(REFS[k] if k < 8 else Ref(k))
        elif kind == _ALIGN:
            args.append((1 << src.below(bpl // 4)) - 1)
        elif kind == _COUNT and 0 < base <= limit:
            rest = limit - base
            args.append(_boundary(src, bpl, rest, rest))
        elif kind == _INDEX:
            args.append(_boundary(src, bpl, limit, limit - 1))
            base = 0
        else:
            value = _boundary(src, bpl, limit, limit)
            base = value if kind == _START else 0
            args.append(value)
    return Op(name, tuple(args))


_SIGNATURES: dict[tuple[str, ...] | None, tuple[dict[str, tuple[str, ...]], list[str]]] = {}


def _signatures(names: Sequence[str] | None) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """bitmap_signatures(names) and their sorted names, computed once per name set."""
    key = None if names is None else tuple(names)
    if key not in _SIGNATURES:
        sigs = bitmap_signatures(names)
        _SIGNATURES[key] = (sigs, sorted(sigs))
    return _SIGNATURES[key]


def decode_bitmap_program(
    data: bytes,
    layout: Layout,
    max_ops: int = 24,
    max_words: int = 64,
    names: Sequence[str] | None = None,
) -> tuple[Program, Callable[[], Op | None]]:
    """Arrays decoded now, and a function yielding the next operation (None when done)."""
    src = Source(data)
    sigs, ordered = _signatures(names)
    program = Program(layout, decode_arrays(src, layout, max_words))
    count = [0]

    def next_op() -> Op | None:
        if count[0] >= max_ops or (count[0] > 0 and src.exhausted()):
            return None
        count[0] += 1
        return decode_op(src, sigs, ordered, program.arrays, layout.bits_per_long)

    return program, next_op
