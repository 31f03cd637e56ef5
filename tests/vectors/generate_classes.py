#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write the vectors of the boundary classes (classes.py): one class, one operation, by hand.

Three files, kept apart from generate.py's and generate_teeth.py's so that no generator
rewrites another's:

- ``bitmap-classes.json``: for each function of qemu_ref.h, one vector per group of its
  classes (the ranges of bitmap_set, the searches of find_next_bit ...). Each operation
  runs on arrays of its own, so its expected words read alone.
- ``ram-classes.json``: the received-page bitmap at every target page bits value of the
  arch table, bitmap_set_atomic through ramblock_recv_bitmap_set_range, discards,
  placement, the source's maps.
- ``release-deltas.json``: both sides of the release deltas no other file holds
  (72821d93e0, dcdc460767, 898ba906cc, ...): one vector per release, each with its own
  hand values, in a group of its own range.

Every expectation is computed here by hand, with Python integers on the words (a bitmap
is one integer, bit n of word k is bit k * BPL + n), from the rule of QEMU's named at each
function (include/qemu/bitops.h, include/qemu/bitmap.h, util/bitmap.c, util/bitops.c,
migration/ram.c at v10.1.0 unless a release is named), never from the model:
``generate.case`` runs the model and stops on any difference. Every vector is then
replayed on each shared QEMU tree's own code (tests/test_qemu_tree_vectors.py).

All four word layouts get every vector (64- and 32-bit, little- and big-endian): the
words are the same values in each byte order, except where a function's result depends
on it (bitmap_to_le).

    python tests/vectors/generate_classes.py [DIR]     (default: this folder)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generate import ENDMARK, HOST32, HOST64, block, case, ram_program, recovery_program

from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.program.format import Alloc
from recvmap.fuzz.vectors.files import vector_file, write_vector_file
from recvmap.pymodel import arch
from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout

HERE = Path(__file__).resolve().parent
LAYOUTS = (LP64_LE, ILP32_LE, LP64_BE, ILP32_BE)


# --- a bitmap as one integer ------------------------------------------------------------


def span(lo: int, hi: int) -> int:
    """Bits lo..hi-1 set."""
    return ((1 << (hi - lo)) - 1) << lo if hi > lo else 0


@dataclass
class Bits:
    """QEMU's word macros for one word width, on integers."""

    bpl: int

    @property
    def full(self) -> int:
        return (1 << self.bpl) - 1

    def word(self, m: int, k: int) -> int:
        return m >> (k * self.bpl) & self.full

    def words(self, m: int, nwords: int) -> dict[int, int]:
        """The nonzero words of m (what a vector's memory states)."""
        return {k: w for k in range(nwords) if (w := self.word(m, k))}

    def join(self, words: dict[int, int]) -> int:
        return sum(w << (k * self.bpl) for k, w in words.items())

    def last_mask(self, nbits: int) -> int:
        """BITMAP_LAST_WORD_MASK(nbits): the low nbits % BPL bits, all ones when 0."""
        return self.full >> (-nbits % self.bpl)

    def longs(self, nbits: int) -> int:
        """BITS_TO_LONGS(nbits) for nbits >= 0."""
        return -(-nbits // self.bpl)

    def small(self, nbits: int) -> bool:
        """small_nbits: nbits <= BITS_PER_LONG, compared as unsigned."""
        return 0 <= nbits <= self.bpl


@dataclass
class Item:
    """One operation on arrays of its own: their (nwords, words), the call (``Ref(k)`` is
    the item's own array k), and why it is there."""

    arrays: list[tuple[int, dict[int, int]]]
    name: str
    args: tuple[Any, ...]
    note: str
    result: Any = None  # filled in by hand() below
    final: list[int] = field(default_factory=list)


def bitmap_vector(
    layout: Layout, comment: str, items: Sequence[Item], hand: Callable[[Bits, Item], None],
    flags: Sequence[str] = ("HandDerived",), release: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One vector of ``items`` (arrays renumbered in order), its expectations by ``hand``."""
    b = Bits(layout.bits_per_long)
    arrays: list[ArraySpec] = []
    ops, results, memory, notes = [], [], {}, []
    for i, it in enumerate(items):
        first = len(arrays)
        arrays += [ArraySpec(n, dict(w)) for n, w in it.arrays]
        args = tuple(Ref(first + a.index) if isinstance(a, Ref) else a for a in it.args)
        ops.append(Op(it.name, args))
        hand(b, it)
        results.append(it.result)
        for k, (n, _) in enumerate(it.arrays):
            memory[f"@{first + k}"] = (n, b.words(it.final[k], n))
        notes.append(f"op {i}: {it.note}")
    program = Program(layout, arrays, ops)
    text = comment + ". " + "; ".join(notes)
    return case(program, text, list(flags), results, memory, release=release)


# --- the rules of QEMU's bitmap functions, by hand --------------------------------------


def _ints(b: Bits, it: Item) -> list[int]:
    return [b.join(w) for _, w in it.arrays]


def hand_range(b: Bits, it: Item) -> None:
    """util/bitmap.c bitmap_set, bitmap_set_atomic, bitmap_clear: every bit of
    [start, start + nr) set (cleared), nothing else; bitmap_test_and_clear_atomic also
    answers whether one was set. bitmap_test_and_clear (non-atomic) keeps
    BITMAP_FIRST_WORD_MASK(start) as its mask after the first word, so when start is not
    word aligned, the range leaves its first word and ends inside a later one, the bits of
    that last word below start % BPL are neither tested nor cleared."""
    (m,) = _ints(b, it)
    start, nr = int(it.args[1]), int(it.args[2])
    end = start + nr
    bits = span(start, end)
    if it.name == "bitmap_test_and_clear":
        head, tail = start % b.bpl, end % b.bpl
        if head and end > start - head + b.bpl and tail:
            bits &= ~span(end - tail, end - tail + head)
    if it.name in ("bitmap_set", "bitmap_set_atomic"):
        it.final = [m | bits]
    else:
        it.final = [m & ~bits]
    if it.name.startswith("bitmap_test_and_clear"):
        it.result = m & bits != 0


def hand_bit(b: Bits, it: Item) -> None:
    """include/qemu/bitops.h: BIT_WORD(nr) and BIT_MASK(nr) pick one bit; the test_and_
    functions answer its old value (0 or 1), test_bit its value."""
    (m,) = _ints(b, it)
    nr = int(it.args[0])
    old = m >> nr & 1
    one = 1 << nr
    new = {
        "set_bit": m | one, "set_bit_atomic": m | one, "test_and_set_bit": m | one,
        "clear_bit": m & ~one, "clear_bit_atomic": m & ~one, "test_and_clear_bit": m & ~one,
        "change_bit": m ^ one, "test_and_change_bit": m ^ one, "test_bit": m,
    }[it.name]  # fmt: skip
    it.final = [new]
    if it.name.startswith("test_"):
        it.result = old


def hand_find(b: Bits, it: Item) -> None:
    """util/bitops.c find_next_bit / find_next_zero_bit: offset >= size answers size;
    else the first set (clear) bit in [offset, size), else size. bitops.h
    find_first_bit / find_first_zero_bit: the same from 0; find_last_bit: the last set
    bit below size, else size. Bits from size on never count."""
    (m,) = _ints(b, it)
    size = int(it.args[1])
    offset = int(it.args[2]) if it.name.startswith("find_next") else 0
    want = 0 if "zero" in it.name else 1
    hits = [n for n in range(offset, size) if m >> n & 1 == want]
    if it.name == "find_last_bit":
        it.result = hits[-1] if hits else size
    else:
        it.result = hits[0] if hits and offset < size else size
    it.final = [m]


def hand_whole(b: Bits, it: Item) -> None:
    """include/qemu/bitmap.h and util/bitmap.c's slow_ functions. With small_nbits(nbits)
    one word is handled whole, else BITS_TO_LONGS(nbits) words (copy, and, or, xor,
    andnot: whole words, tail bits included); zero clears those whole words; fill sets
    the bits below nbits and clears the rest of the last word (BITMAP_LAST_WORD_MASK);
    complement complements whole words and masks the last; and/andnot answer whether a
    whole word of the result is nonzero; equal, empty, full, intersects and count_one
    look at the bits below nbits only."""
    arrays = _ints(b, it)
    n = int(it.args[-1])
    nl = b.longs(n) if n >= 0 else 0
    words_mask = span(0, nl * b.bpl)
    below = span(0, n) if n > 0 else 0
    name = it.name
    if name in ("bitmap_zero", "bitmap_fill"):
        dst = arrays[0]
        kept = dst & ~words_mask
        arrays[0] = kept if name == "bitmap_zero" else kept | below
    elif name in ("bitmap_copy", "bitmap_complement"):
        src = arrays[1]
        got = src & words_mask if name == "bitmap_copy" else ~src & below
        arrays[0] = arrays[0] & ~words_mask | got
    elif name in ("bitmap_and", "bitmap_or", "bitmap_xor", "bitmap_andnot"):
        s1, s2 = arrays[1], arrays[2]
        got = {
            "bitmap_and": s1 & s2, "bitmap_or": s1 | s2,
            "bitmap_xor": s1 ^ s2, "bitmap_andnot": s1 & ~s2,
        }[name] & words_mask  # fmt: skip
        arrays[0] = arrays[0] & ~words_mask | got
        if name in ("bitmap_and", "bitmap_andnot"):
            it.result = int(got != 0)
    elif name == "bitmap_equal":
        it.result = int((arrays[0] ^ arrays[1]) & below == 0)
    elif name == "bitmap_intersects":
        it.result = int(arrays[0] & arrays[1] & below != 0)
    elif name == "bitmap_empty":
        it.result = int(arrays[0] & below == 0)
    elif name == "bitmap_full":
        it.result = int(~arrays[0] & below == 0)
    elif name == "bitmap_count_one":
        it.result = bin(arrays[0] & below).count("1")
    it.final = arrays


def hand_count_offset(b: Bits, it: Item) -> None:
    """bitmap.h bitmap_count_one_with_offset: the set bits of [offset, offset + nbits)."""
    (m,) = _ints(b, it)
    offset, nbits = int(it.args[1]), int(it.args[2])
    it.result = bin(m & span(offset, offset + nbits)).count("1")
    it.final = [m]


def hand_copy_and_clear(b: Bits, it: Item) -> None:
    """util/bitmap.c bitmap_copy_and_clear_atomic: while nr > 0, dst word =
    atomic_xchg(src word, 0) and nr -= BPL: whole words, the tail moves too."""
    dst, src = _ints(b, it)
    nr = int(it.args[2])
    moved = span(0, b.longs(nr) * b.bpl) if nr > 0 else 0
    it.final = [dst & ~moved | src & moved, src & ~moved]


def hand_area(b: Bits, it: Item) -> None:
    """util/bitmap.c bitmap_find_next_zero_area: index = find_next_zero_bit(map, size,
    start), rounded up to a multiple of align_mask + 1; when index + nr > size that is
    the answer (greater than size); a set bit i in [index, index + nr) restarts the
    search at i + 1; else index."""
    (m,) = _ints(b, it)
    size, start, nr, mask = (int(x) for x in it.args[1:5])
    while True:
        index = next((n for n in range(start, size) if not m >> n & 1), size)
        index = (index + mask) & ~mask
        end = index + nr
        if end > size:
            it.result = end
            break
        busy = [n for n in range(index, end) if m >> n & 1]
        if not busy:
            it.result = index
            break
        start = busy[0] + 1
    it.final = [m]


def hand_le(big_endian: bool) -> Callable[[Bits, Item], None]:
    """util/bitmap.c bitmap_to_le / bitmap_from_le: BITS_TO_LONGS(nbits) whole words;
    copied on a little-endian host, each byte-swapped (bswap64 / bswap32) on a big-endian
    one, so the array holds the little-endian bytes in either order."""

    def hand(b: Bits, it: Item) -> None:
        dst, src = _ints(b, it)
        n = int(it.args[2])
        nl = b.longs(n)
        out = dst & ~span(0, nl * b.bpl)
        for k in range(nl):
            w = b.word(src, k)
            if big_endian:
                w = int.from_bytes(w.to_bytes(b.bpl // 8, "little"), "big")
            out |= w << (k * b.bpl)
        it.final = [out, src]

    return hand


def hand_src_offset(b: Bits, it: Item) -> None:
    """util/bitmap.c bitmap_copy_with_src_offset: dst gets bits offset .. offset + nbits
    of src at 0. With offset % BPL == 0 that is bitmap_copy of BITS_TO_LONGS(nbits) whole
    words from word offset / BPL; else each destination word is built whole: words below
    nbits // BPL get BPL bits, and the last partial word gets the nbits % BPL bits and
    zeros above them (the store is a plain = of the masked value)."""
    dst, src = _ints(b, it)
    offset, nbits = int(it.args[2]), int(it.args[3])
    got = src >> offset
    written = span(0, b.longs(nbits) * b.bpl)
    if offset % b.bpl:
        got &= span(0, nbits)  # the last partial word is stored masked: zeros past nbits
    it.final = [dst & ~written | got & written, src]


def hand_dst_offset(b: Bits, it: Item) -> None:
    """util/bitmap.c bitmap_copy_with_dst_offset: bits 0 .. nbits of src go to shift ..
    shift + nbits of dst. With shift % BPL == 0 it is bitmap_copy (whole words); else the
    bits of dst's first word below shift % BPL are kept, the rest of the words written
    are built from src: the word loop stores dst[1] whole (zeros above the copied bits),
    the short tail ORs into the last word."""
    dst, src = _ints(b, it)
    shift, nbits = int(it.args[2]), int(it.args[3])
    base = shift - shift % b.bpl
    if shift % b.bpl == 0:
        written = span(base, base + b.longs(nbits) * b.bpl)
        it.final = [dst & ~written | (src << base) & written, src]
        return
    head = shift % b.bpl
    # the first word loses its bits from shift on (*dst &= ...); each loop step and the
    # long tail store the next word whole (dst[1] = ...), the short tail ORs into the last
    last = base // b.bpl + nbits // b.bpl + (1 if nbits % b.bpl > b.bpl - head else 0)
    cleared = span(shift, (last + 1) * b.bpl)
    got = (src & span(0, nbits)) << shift
    it.final = [dst & ~cleared | got, src]


# --- the bitmap vectors -----------------------------------------------------------------


def ranges(bpl: int) -> list[tuple[int, int, str]]:
    """(start, nr, class) of every range class (classes._range_classes)."""
    return [
        (5, 0, "nr == 0"),
        (3, 5, "one word, unaligned start, unaligned end"),
        (bpl - 4, 4, "one word, unaligned start, end on the word boundary"),
        (bpl, 7, "one word, aligned start, unaligned end"),
        (bpl, bpl, "one whole word"),
        (bpl - 3, 6, "spanning, unaligned start, unaligned end"),
        (bpl - 5, bpl + 5, "spanning, unaligned start, end on a word boundary"),
        (0, bpl + 3, "spanning, aligned start, unaligned end"),
        (0, 2 * bpl, "whole words only, two or more"),
        (5, 2 * bpl, "a whole word between two partial ones"),
    ]


def range_vectors(layout: Layout) -> list[dict[str, Any]]:
    bpl = layout.bits_per_long
    b = Bits(bpl)
    full3 = {k: b.full for k in range(3)}
    out = []
    for name, initial, what in (
        ("bitmap_set", {}, "sets"),
        ("bitmap_set_atomic", {}, "sets"),
        ("bitmap_clear", full3, "clears"),
        ("bitmap_test_and_clear_atomic", full3, "tests and clears"),
        ("bitmap_test_and_clear", full3, "tests and clears"),
    ):
        items = [
            Item([(3, initial)], name, (Ref(0), s, n), f"{name}(map, {s}, {n}): {cls}")
            for s, n, cls in ranges(bpl)
        ]
        if name.startswith("bitmap_test_and_clear"):
            items += [
                Item([(3, {})], name, (Ref(0), bpl + 2, 5), "nothing set: false"),
                Item([(3, {1: 1 << 5})], name, (Ref(0), 3, bpl + 5),
                     "only bit BPL+5 (of the last word) set: true"),
                Item([(3, {1: 0b10})], name, (Ref(0), 3, bpl + 5),
                     "only bit BPL+1 set, below start % BPL in the last word"),
            ]  # fmt: skip
        out.append(
            bitmap_vector(
                layout,
                f"{name} {what} exactly [start, start + nr) for each class of range "
                "(util/bitmap.c: a first word masked by BITMAP_FIRST_WORD_MASK(start), whole "
                "words, a last word masked by BITMAP_LAST_WORD_MASK(start + nr); "
                "bitmap_test_and_clear keeps the first-word mask for its last word)",
                items,
                hand_range,
            )
        )
    return out


def bit_vectors(layout: Layout) -> list[dict[str, Any]]:
    bpl = layout.bits_per_long
    b = Bits(bpl)
    out = []
    for names in (
        ("set_bit", "set_bit_atomic", "clear_bit", "change_bit"),
        ("clear_bit_atomic",),
        ("test_and_set_bit", "test_and_clear_bit", "test_and_change_bit", "test_bit"),
    ):
        items = []
        for name in names:
            for nr, words, cls in (
                (3, {0: 0b1000_0001}, "bit 3 of word 0, clear; its neighbours set"),
                (bpl + 4, {1: b.full}, "bit 4 of word 1, set; the whole word set"),
                (bpl - 1, {0: 1}, "the top bit of word 0, clear"),
                (2 * bpl - 1, {1: 1 << (bpl - 1)}, "the top bit of word 1, set alone"),
            ):
                items.append(Item([(2, words)], name, (nr, Ref(0)), f"{name}({nr}): {cls}"))
        out.append(
            bitmap_vector(
                layout,
                "single bits: BIT_WORD(nr) picks the word, BIT_MASK(nr) the bit; only that "
                "bit changes; test_and_* answer its old value, test_bit its value "
                "(include/qemu/bitops.h)",
                items,
                hand_bit,
            )
        )
    return out


def find_vectors(layout: Layout) -> list[dict[str, Any]]:
    bpl = layout.bits_per_long
    b = Bits(bpl)
    out = []
    for name, zero in (("find_next_bit", False), ("find_next_zero_bit", True)):

        def w(words: dict[int, int], n: int = 2, zero: bool = zero) -> dict[int, int]:
            """The words as given for find_next_bit; complemented for the zero search."""
            return {k: b.full & ~words.get(k, 0) for k in range(n)} if zero else words

        n6 = 6 * bpl
        items = [
            Item([(2, w({0: 1, 1: 1}))], name, (Ref(0), bpl, bpl),
                 "offset == size == BPL on a word boundary; a target bit at BPL past size"),
            Item([(2, w({0: 1 << 9}))], name, (Ref(0), 9, 9),
                 "offset == size == 9 inside word 0; bit 9 is a target but past size"),
            Item([(2, w({0: 1}))], name, (Ref(0), 9, 20), "offset 20 > size 9: answers 9"),
            Item([(2, w({1: 1 << 7}))], name, (Ref(0), 9, bpl + 6),
                 "offset BPL+6 > size 9, in word 1 (a target at BPL+7): answers 9"),
            Item([(2, w({0: 1 << 6}))], name, (Ref(0), 2 * bpl, 0), "offset 0, found at 6"),
            Item([(2, w({0: 0b1001 << 4}))], name, (Ref(0), 2 * bpl, 5),
                 "unaligned offset 5: bit 4 below it skipped, bit 7 found"),
            Item([(2, w({0: 1 << 2, 1: 1 << 3}))], name, (Ref(0), 2 * bpl, 5),
                 "unaligned offset 5: bit 2 below it skipped, bit BPL+3 found"),
            Item([(2, w({1: 1 << (bpl - 1)}))], name, (Ref(0), 2 * bpl, 1),
                 "found at size - 1 = 2*BPL - 1"),
            Item([(2, w({}))], name, (Ref(0), 2 * bpl, 3), "nothing up to size 2*BPL"),
            Item([(2, w({1: b.full & ~0x3F}))], name, (Ref(0), bpl + 6, 1),
                 "size BPL+6: only the tail bits past size are targets"),
            Item([(8, w({6: 1 << 2}, 8))], name, (Ref(0), 8 * bpl, 0),
                 "six whole empty words, then bit 6*BPL+2"),
            Item([(8, w({}, 8))], name, (Ref(0), n6 + 7, 1), "nothing in 6*BPL+7 bits"),
        ]  # fmt: skip
        out.append(
            bitmap_vector(
                layout,
                f"{name}: the first {'clear' if zero else 'set'} bit in [offset, size), else "
                "size; offset >= size answers size before any read (util/bitops.c)",
                items,
                hand_find,
            )
        )
    items = []
    for name, zero in (("find_first_bit", False), ("find_first_zero_bit", True)):

        def z(words: dict[int, int], n: int = 3, zero: bool = zero) -> dict[int, int]:
            return {k: b.full & ~words.get(k, 0) for k in range(n)} if zero else words

        items += [
            Item([(1, z({0: 1}, 1))], name, (Ref(0), 0), f"{name}: size 0 answers 0"),
            Item([(3, z({0: 1 << 5}))], name, (Ref(0), 3 * bpl), f"{name}: found at 5"),
            Item([(3, z({2: 1 << 1}))], name, (Ref(0), 3 * bpl),
                 f"{name}: found at 2*BPL+1"),
            Item([(3, z({}))], name, (Ref(0), 2 * bpl), f"{name}: none below size 2*BPL"),
            Item([(3, z({1: 1 << 40 % bpl | 1 << (bpl - 1)}))], name, (Ref(0), bpl + 3),
                 f"{name}: size BPL+3, targets only past size"),
        ]  # fmt: skip
    name = "find_last_bit"
    items += [
        Item([(1, {0: 1})], name, (Ref(0), 0), "find_last_bit: size 0 answers 0"),
        Item([(2, {0: 1, 1: 0b101})], name, (Ref(0), bpl + 6),
             "find_last_bit: found at BPL+2 in the partial last word"),
        Item([(2, {0: 1 << 7, 1: b.full & ~0x3F})], name, (Ref(0), bpl + 6),
             "find_last_bit: only tail bits set in the last word: found at 7"),
        Item([(3, {0: 1 << 3})], name, (Ref(0), 3 * bpl), "find_last_bit: found at 3"),
        Item([(3, {})], name, (Ref(0), 2 * bpl + 1), "find_last_bit: none: answers size"),
    ]  # fmt: skip
    out.append(
        bitmap_vector(
            layout,
            "find_first_bit, find_first_zero_bit, find_last_bit: bits from size on never "
            "count; nothing found answers size (include/qemu/bitops.h, util/bitops.c)",
            items,
            hand_find,
        )
    )
    return out


def whole_vectors(layout: Layout) -> list[dict[str, Any]]:
    bpl = layout.bits_per_long
    b = Bits(bpl)
    full = b.full
    top = 1 << (bpl - 1)
    sizes = [
        (9, "one word, partial"),
        (bpl, "exactly one word"),
        (bpl + 6, "several words, partial last"),
        (2 * bpl, "several whole words"),
    ]
    out = []
    # zero, fill: the destination full (tail bits set) on entry
    items = [
        Item([(3, {0: full, 1: full, 2: full})], name, (Ref(0), n), f"{name}(dst, {n}): {cls}")
        for name in ("bitmap_zero", "bitmap_fill")
        for n, cls in sizes
    ]
    items.append(Item([(1, {0: 0x0F})], "bitmap_zero", (Ref(0), -1), "nbits -1: nothing"))
    out.append(
        bitmap_vector(
            layout,
            "bitmap_zero clears BITS_TO_LONGS(nbits) whole words; bitmap_fill sets the bits "
            "below nbits and clears the tail of the last word; words past them are kept",
            items,
            hand_whole,
        )
    )
    # copy and complement: a source with tail bits set
    src = {0: 0x1234_5678 | top, 1: full, 2: 0x5A}
    items = [
        Item([(3, {0: full, 1: full, 2: 0x80}), (3, dict(src))], name, (Ref(0), Ref(1), n),
             f"{name}(dst, src, {n}): {cls}; tail bits set in both")
        for name in ("bitmap_copy", "bitmap_complement")
        for n, cls in sizes
    ]  # fmt: skip
    items.append(Item([(1, {0: 0x0F}), (1, {0: full})], "bitmap_copy", (Ref(0), Ref(1), -1),
                      "nbits -1: nothing copied"))  # fmt: skip
    out.append(
        bitmap_vector(
            layout,
            "bitmap_copy copies whole words (tail bits too); bitmap_complement complements "
            "and masks the last word (its tail cleared), also on the one-word path",
            items,
            hand_whole,
        )
    )
    # and, or, xor, andnot: tails set in a source; the result 0 or 1
    s1 = {0: 0xF0F0 | top, 1: full}
    s2 = {0: 0xFF00, 1: top | 0x30}
    items = [
        Item([(2, {1: 0x1}), (2, dict(s1)), (2, dict(s2))], name, (Ref(0), Ref(1), Ref(2), n),
             f"{name}(dst, s1, s2, {n}): {cls}")
        for name in ("bitmap_and", "bitmap_or", "bitmap_xor", "bitmap_andnot")
        for n, cls in sizes
    ]  # fmt: skip
    items += [
        Item([(1, {}), (1, {0: 0xF0}), (1, {0: 0x0F})], "bitmap_and", (Ref(0), Ref(1), Ref(2), 8),
             "bitmap_and: nothing in common: 0"),
        Item([(1, {}), (1, {0: 0xF0}), (1, {0: 0xF0})], "bitmap_andnot",
             (Ref(0), Ref(1), Ref(2), 8), "bitmap_andnot: nothing left: 0"),
    ]  # fmt: skip
    out.append(
        bitmap_vector(
            layout,
            "bitmap_and, bitmap_or, bitmap_xor, bitmap_andnot store whole words "
            "(BITS_TO_LONGS(nbits), tail bits included); and / andnot answer whether any "
            "stored word is nonzero",
            items,
            hand_whole,
        )
    )
    # equal, intersects, empty, full, count_one
    items = []
    for n, cls in sizes:
        t = n % bpl
        k = n // bpl
        tail_only = {k: full & ~b.last_mask(n)} if t else {}
        items += [
            Item([(3, {0: 5, **tail_only}), (3, {0: 5})], "bitmap_equal", (Ref(0), Ref(1), n),
                 f"bitmap_equal, {cls}: differing only past nbits"),
            Item([(3, {0: 5}), (3, {0: 4})], "bitmap_equal", (Ref(0), Ref(1), n),
                 f"bitmap_equal, {cls}: bit 0 differs"),
            Item([(3, dict(tail_only)), (3, dict(tail_only))], "bitmap_intersects",
                 (Ref(0), Ref(1), n), f"bitmap_intersects, {cls}: in common past nbits only"),
            Item([(3, {0: 6}), (3, {0: 3})], "bitmap_intersects", (Ref(0), Ref(1), n),
                 f"bitmap_intersects, {cls}: bit 1 in common"),
            Item([(3, dict(tail_only))], "bitmap_empty", (Ref(0), n),
                 f"bitmap_empty, {cls}: only bits past nbits set"),
            Item([(3, {(n - 1) // bpl: 1 << ((n - 1) % bpl)})], "bitmap_empty", (Ref(0), n),
                 f"bitmap_empty, {cls}: bit nbits-1 set"),
            Item([(3, {i: full for i in range(k)} | ({k: b.last_mask(n)} if t else {}))],
                 "bitmap_full", (Ref(0), n), f"bitmap_full, {cls}: the bits below nbits set"),
            Item([(3, {i: full for i in range(3)} | {0: full & ~1})], "bitmap_full",
                 (Ref(0), n), f"bitmap_full, {cls}: bit 0 clear"),
            Item([(3, {0: 0b1011, 1: full, 2: full})], "bitmap_count_one", (Ref(0), n),
                 f"bitmap_count_one, {cls}: tail bits set, not counted"),
        ]  # fmt: skip
    items.append(Item([(1, {0: 0b111})], "bitmap_count_one", (Ref(0), 0),
                      "bitmap_count_one(map, 0): 0 (v4.0.0 on)"))  # fmt: skip
    # where the answer is decided: the last partial word (n = BPL+6), the word after
    # whole words (n = 2*BPL, nothing may look there), one word below and past nbits
    n, nn = bpl + 6, 2 * bpl
    items += [
        Item([(3, {0: 5, 1: 0b100}), (3, {0: 5})], "bitmap_equal", (Ref(0), Ref(1), n),
             "bitmap_equal: only bit BPL+2 (the last partial word) differs: 0"),
        Item([(3, {0: 5, 2: 1}), (3, {0: 5})], "bitmap_equal", (Ref(0), Ref(1), nn),
             "bitmap_equal: only word 2, after 2*BPL bits, differs: 1"),
        Item([(3, {0: 1 | 1 << 20}), (3, {})], "bitmap_equal", (Ref(0), Ref(1), 9),
             "bitmap_equal, 9 bits: bits 0 and 20 differ: 0"),
        Item([(3, {1: 0b100}), (3, {1: 0b100})], "bitmap_intersects", (Ref(0), Ref(1), n),
             "bitmap_intersects: only bit BPL+2 in common: 1"),
        Item([(3, {0: 4, 2: 1}), (3, {0: 1, 2: 1})], "bitmap_intersects",
             (Ref(0), Ref(1), nn), "bitmap_intersects: in common only in word 2: 0"),
        Item([(3, {0: 4 | 1 << 20}), (3, {0: 4 | 1 << 20})], "bitmap_intersects",
             (Ref(0), Ref(1), 9), "bitmap_intersects, 9 bits: bits 2 and 20 in common: 1"),
        Item([(1, {0: 0b0101}), (1, {0: 0b1010})], "bitmap_intersects", (Ref(0), Ref(1), 9),
             "bitmap_intersects, 9 bits: bits in both, none in common: 0"),
        Item([(3, {0: 0b0101}), (3, {0: 0b1010})], "bitmap_intersects", (Ref(0), Ref(1), n),
             f"bitmap_intersects, {n} bits: bits in both, none in common: 0"),
        Item([(3, {1: 0b100})], "bitmap_empty", (Ref(0), n),
             "bitmap_empty: only bit BPL+2 (the last partial word) set: 0"),
        Item([(3, {2: 1})], "bitmap_empty", (Ref(0), nn),
             "bitmap_empty: only word 2, after 2*BPL bits, set: 1"),
        Item([(3, {0: 1 << 3 | 1 << 20})], "bitmap_empty", (Ref(0), 9),
             "bitmap_empty, 9 bits: bits 3 and 20 set: 0"),
        Item([(3, {0: full, 1: full & ~0b10, 2: full})], "bitmap_full", (Ref(0), n),
             "bitmap_full: only bit BPL+1 (the last partial word) clear: 0"),
        Item([(3, {0: full, 1: full, 2: full & ~1})], "bitmap_full", (Ref(0), nn),
             "bitmap_full: only word 2, after 2*BPL bits, has a clear bit: 1"),
        Item([(3, {0: full & ~(1 << 4 | 1 << 20)})], "bitmap_full", (Ref(0), 9),
             "bitmap_full, 9 bits: bits 4 and 20 clear: 0"),
    ]  # fmt: skip
    out.append(
        bitmap_vector(
            layout,
            "bitmap_equal, bitmap_intersects, bitmap_empty, bitmap_full and "
            "bitmap_count_one look at the bits below nbits only (the last word is masked "
            "with BITMAP_LAST_WORD_MASK(nbits), on both paths)",
            items,
            hand_whole,
        )
    )
    return out


def misc_vectors(layout: Layout) -> list[dict[str, Any]]:
    bpl = layout.bits_per_long
    b = Bits(bpl)
    full = b.full
    out = []
    m = {0: 0b1011_0110 | 1 << (bpl - 2), 1: 0b111 | 1 << (bpl - 1), 2: 0xFF}
    items = [
        Item([(3, dict(m))], "bitmap_count_one_with_offset", (Ref(0), o, n), note)
        for o, n, note in (
            (bpl, bpl + 4, f"offset BPL (aligned), {bpl + 4} bits"),
            (2, 5, "offset 2, 5 bits inside word 0"),
            (bpl - 3, 6, "offset BPL-3, 6 bits across the word boundary"),
            (
                bpl + 1,
                bpl,
                "offset BPL+1 in word 1 (its bit BPL is not counted; word 0's low "
                "bits are not word 1's)",
            ),
        )  # fmt: skip
    ]
    out.append(
        bitmap_vector(
            layout,
            "bitmap_count_one_with_offset counts the set bits of [offset, offset + nbits) "
            "only (include/qemu/bitmap.h: two counts from the aligned word below offset)",
            items,
            hand_count_offset,
        )
    )
    items = [
        Item([(3, {2: 0x40}), (3, {0: full, 1: 0xF0F0 | 1 << (bpl - 1), 2: 0x3})],
             "bitmap_copy_and_clear_atomic", (Ref(0), Ref(1), n), note)
        for n, note in ((9, "nr 9: the whole word 0 moves, its tail too"),
                        (bpl + 6, "nr BPL+6: two whole words move, the tail too"),
                        (2 * bpl, "nr 2*BPL: two whole words"))
    ]  # fmt: skip
    out.append(
        bitmap_vector(
            layout,
            "bitmap_copy_and_clear_atomic moves whole words (atomic_xchg with 0) while nr > 0",
            items,
            hand_copy_and_clear,
        )
    )
    area = {0: 0b1111_0000_0010, 1: 1 << 3}
    items = [
        Item([(2, dict(area))], "bitmap_find_next_zero_area", (Ref(0), 2 * bpl, s, n, mk), note)
        for s, n, mk, note in (
            (0, 1, 0, "start 0, one bit: found at 0"),
            (0, 4, 0, "four bits: bit 1 is busy, the search restarts at 2: 2..5"),
            (1, 2, 7, "start 1, align_mask 7: 2 rounds up to 8, bits 8-9 busy, then 16"),
            (bpl + 4, bpl - 4, 0, "an exact fit ending at size 2*BPL"),
            (bpl + 2, bpl, 0, "no fit: answers index + nr, past size"),
        )
    ]
    out.append(
        bitmap_vector(
            layout,
            "bitmap_find_next_zero_area: the first aligned run of nr clear bits from start "
            "that ends at or before size; else index + nr (> size)",
            items,
            hand_area,
        )
    )
    swap = {0: 0x0807060504030201 & full, 1: 0x1122334455667788 & full, 2: 0xAB}
    items = [
        Item([(3, {2: 0xCD}), (3, dict(swap))], name, (Ref(0), Ref(1), n), f"{name}, {cls}")
        for name in ("bitmap_to_le", "bitmap_from_le")
        for n, cls in ((9, "one word, partial"), (bpl, "exactly one word"),
                       (bpl + 6, "two words, partial last"), (2 * bpl, "two whole words"))
    ]  # fmt: skip
    out.append(
        bitmap_vector(
            layout,
            "bitmap_to_le / bitmap_from_le: BITS_TO_LONGS(nbits) whole words, byte-swapped "
            "on a big-endian host, copied on a little-endian one (util/bitmap.c "
            "bitmap_to_from_le); the word after them is kept",
            items,
            hand_le(layout.big_endian),
        )
    )
    src = {0: 0x0123_4567_89AB_CDEF & full, 1: 0xFEDC_BA98_7654_3210 & full, 2: 0x5A5A_A5A5,
           3: 0xC3 | 1 << (bpl - 1)}  # fmt: skip
    dst = {0: full, 1: full, 2: full}
    items = [
        Item(
            [(3, dict(dst)), (4, dict(src))],
            "bitmap_copy_with_src_offset",
            (Ref(0), Ref(1), o, n),
            note,
        )
        for o, n, note in (
            (bpl, bpl + 6, "offset BPL (aligned): whole words from word 1"),
            (4, 7, "offset 4, 7 bits: inside the first source word"),
            (4, bpl - 4, "offset 4, nbits BPL-4: exactly to the source word's end"),
            (bpl + 4, bpl - 2, "offset BPL+4, nbits BPL-2: two source words, one dst word"),
            (4, 2 * bpl, "offset 4, nbits 2*BPL: the word loop only"),
            (bpl + 5, bpl + 9, "offset BPL+5, nbits BPL+9: the loop, then a tail"),
        )
    ]
    out.append(
        bitmap_vector(
            layout,
            "bitmap_copy_with_src_offset: dst gets src's bits offset .. offset + nbits; the "
            "destination words it writes are written whole (zeros past nbits)",
            items,
            hand_src_offset,
        )
    )
    items = [
        Item([(4, {0: full, 1: full, 2: full, 3: full}), (4, dict(src))],
             "bitmap_copy_with_dst_offset", (Ref(0), Ref(1), s, n), note)
        for s, n, note in (
            (bpl, bpl + 6, "shift BPL (aligned): bitmap_copy to word 1"),
            (5, 7, "shift 5, 7 bits: one destination word, its low 5 bits kept"),
            (5, bpl + 9, "shift 5, BPL+9 bits: across destination words"),
            (bpl + 3, bpl - 3, "shift BPL+3, BPL-3 bits: to the end of word 1"),
            (5, bpl - 2, "shift 5, BPL-2 bits: the long tail, into word 1"),
            (5, 2 * bpl - 2, "shift 5, 2*BPL-2 bits: the word loop, then the long tail"),
        )
    ]  # fmt: skip
    out.append(
        bitmap_vector(
            layout,
            "bitmap_copy_with_dst_offset: src's bits 0 .. nbits go to shift .. shift + nbits "
            "of dst; dst's bits below shift in its first word are kept",
            items,
            hand_dst_offset,
        )
    )
    return out


def alloc_vectors(layout: Layout) -> list[dict[str, Any]]:
    """Arrays the implementation allocates (include/qemu/bitmap.h): bitmap_new(nbits) is
    BITS_TO_LONGS(nbits) zeroed words (g_new0); bitmap_zero_extend(old, old_nbits,
    new_nbits) keeps the old words (g_renew) and clears bits old_nbits .. new_nbits only.
    (The words g_renew adds are uninitialized past new_nbits, so every extension that adds
    words ends on a word boundary.) One bitmap_set then shows the array is usable."""
    bpl = layout.bits_per_long
    b = Bits(bpl)
    full = b.full
    out = []
    for alloc, old, note in (
        (Alloc(bpl + 9), {}, f"bitmap_new({bpl + 9}): two zeroed words, a partial last"),
        (Alloc(2 * bpl), {}, f"bitmap_new({2 * bpl}): two whole zeroed words"),
        (
            Alloc(20, 5, {0: full}),
            {0: full & ~span(5, 20)},
            "bitmap_zero_extend(old of 5 bits, all ones, 5, 20): inside the old word, bits "
            "5..19 cleared, the old tail above 20 kept",
        ),
        (
            Alloc(3 * bpl, 7, {0: full}),
            {0: 0x7F},
            f"bitmap_zero_extend(old of 7 bits, all ones, 7, {3 * bpl}): the old tail bits "
            "cleared, two zeroed words added",
        ),
        (Alloc(2 * bpl, 0), {}, f"bitmap_zero_extend(NULL, 0, {2 * bpl}): a new zeroed map"),
    ):
        nwords = b.longs(alloc.nbits)
        program = Program(
            layout, [ArraySpec(nwords, dict(old), alloc)], [Op("bitmap_set", (Ref(0), 3, 2))]
        )
        final = b.words(b.join(old) | span(3, 5), nwords)
        out.append(
            case(
                program,
                f"{note}; then bitmap_set(map, 3, 2)",
                ["HandDerived", "Allocation"],
                [None],
                {"@0": (nwords, final)},
            )
        )
    return out


def bitmap_class_cases(layout: Layout) -> list[dict[str, Any]]:
    return [
        *(alloc_vectors(layout) if layout == LP64_LE else []),  # classes.ALLOCATION_LAYOUTS
        *range_vectors(layout),
        *bit_vectors(layout),
        *find_vectors(layout),
        *whole_vectors(layout),
        *misc_vectors(layout),
    ]


# --- the received-page bitmap -------------------------------------------------------------


def base_of(layout: Layout) -> int:
    return HOST64 if layout.bits_per_long == 64 else HOST32


def page_targets() -> dict[int, str]:
    """A target of the arch table for each target page bits value it has (its default
    page size where one has it, else a board or historical value)."""
    out: dict[int, str] = {}
    for t in arch.TARGETS:
        out.setdefault(t.page_bits, t.name)
    for t in arch.TARGETS:
        for bits in t.page_bits_choices():
            out.setdefault(bits, t.name)
    return dict(sorted(out.items()))


def ram_vector(
    layout: Layout, comment: str, blocks: list[dict[str, Any]], ops: list[Op],
    results: list[Any], memory: dict[str, Any], errors: dict[int, str] | None = None,
    *, side: str = "destination", target: str = "x86_64", bits: int = 12,
    release: str | None = None, invalid: bool = False, flags: Sequence[str] = ("HandDerived",),
) -> dict[str, Any]:  # fmt: skip
    program = ram_program(layout, blocks, ops, side=side, target=target, bits=bits)
    return case(program, comment, list(flags), results, memory, invalid, release, errors or {})


def none_maps(blocks: list[dict[str, Any]], side: str = "destination") -> dict[str, Any]:
    """Every map of every block: None (the hand memory of what a program leaves out)."""
    return {f"{side}:{b['idstr']}.{m}": None for b in blocks for m in ("receivedmap", "bmap")}


def page_bits_vectors(layout: Layout) -> list[dict[str, Any]]:
    """include/exec/ram_addr.h: ramblock_recv_bitmap_offset(host_addr, rb) is
    (host_addr - rb->host) >> qemu_target_page_bits(); _test, _set and (migration/ram.c)
    _test_byte_offset and _set_offset use that bit (the byte offset >> the same bits).
    The pages are target pages at every value of the arch table, never host pages."""
    bpl = layout.bits_per_long
    base = base_of(layout)
    out = []
    for bits, target in page_targets().items():
        page = 1 << bits
        per4k = max(1, 4096 >> bits)  # a block is a whole number of 4K host pages
        n = -(-(bpl + 8) // per4k) * per4k  # pages: at least two words of map
        nwords = -(-n // bpl)
        blocks = [block("pc.ram", base, n * page)]
        a = bpl + 2  # a page of word 1
        ops = [
            Op("ramblock_recv_map_init", ()),
            Op("ramblock_recv_bitmap_set", (Ref(0), base + a * page + 5)),
            Op("ramblock_recv_bitmap_test", (Ref(0), base + a * page + page - 1)),
            Op("ramblock_recv_bitmap_test", (Ref(0), base + (a + 1) * page + 1)),
            Op("ramblock_recv_bitmap_test_byte_offset", (Ref(0), a * page + 9)),
            Op("ramblock_recv_bitmap_test_byte_offset", (Ref(0), page + 3)),
            Op("ramblock_recv_bitmap_offset", (base + 5 * page + 11, Ref(0))),
        ]
        key = "destination:pc.ram"
        out.append(
            ram_vector(
                layout,
                f"{target}, target pages of {bits} bits ({page} bytes) on a 4K host: byte 5 "
                f"of page {a} sets bit {a} (word 1, bit 2); the last byte of that page tests "
                f"1, byte 1 of page {a + 1} tests 0; byte offset {a * page + 9} is received, "
                f"{page + 3} (page 1) is not; host + {5 * page + 11} is page 5",
                blocks,
                ops,
                [None, None, 1, 0, True, False, 5],
                {f"{key}.receivedmap": (nwords, {1: 1 << 2}), f"{key}.bmap": None},
                target=target,
                bits=bits,
            )
        )
        ops = [
            Op("ramblock_recv_map_init", ()),
            Op("ramblock_recv_bitmap_set_offset", (Ref(0), (bpl + 1) * page + 7)),
            Op("ramblock_recv_bitmap_test_byte_offset", (Ref(0), (bpl + 1) * page)),
        ]
        out.append(
            ram_vector(
                layout,
                f"{target}, {bits}-bit target pages: ramblock_recv_bitmap_set_offset(rb, "
                f"{(bpl + 1) * page + 7}) sets bit {bpl + 1} (migration/ram.c: byte offset "
                ">> qemu_target_page_bits())",
                blocks,
                ops,
                [None, None, True],
                {f"{key}.receivedmap": (nwords, {1: 1 << 1}), f"{key}.bmap": None},
                target=target,
                bits=bits,
            )
        )
    return out


def set_range_vectors(layout: Layout) -> list[dict[str, Any]]:
    """migration/ram.c ramblock_recv_bitmap_set_range(rb, host_addr, nr) is
    bitmap_set_atomic(receivedmap, ramblock_recv_bitmap_offset(host_addr, rb), nr): nr
    target pages from the address's page, at 13 target page bits (alpha)."""
    bpl = layout.bits_per_long
    base = base_of(layout)
    page = 1 << 13
    blocks = [block("pc.ram", base, (2 * bpl + 8) * page)]
    ops = [
        Op("ramblock_recv_map_init", ()),
        Op("ramblock_recv_bitmap_set_range", (Ref(0), base + 3 * page, 4)),
        Op("ramblock_recv_bitmap_set_range", (Ref(0), base + (bpl - 5) * page, 5)),
        Op("ramblock_recv_bitmap_set_range", (Ref(0), base + (bpl + 3) * page, bpl)),
    ]
    b = Bits(bpl)
    m = span(3, 7) | span(bpl - 5, bpl) | span(bpl + 3, 2 * bpl + 3)
    return [
        ram_vector(
            layout,
            "ramblock_recv_bitmap_set_range at 13-bit target pages: pages 3..6 (one word, "
            f"unaligned start), {bpl - 5}..{bpl - 1} (an unaligned start ending exactly on "
            f"the word boundary: bitmap_set_atomic's loop ends the range), {bpl + 3}.."
            f"{2 * bpl + 2} (across words 1 and 2)",
            blocks,
            ops,
            [None, None, None, None],
            {"destination:pc.ram.receivedmap": (3, b.words(m, 3)),
             "destination:pc.ram.bmap": None},
            target="alpha",
            bits=13,
        )
    ]  # fmt: skip


def discard_vectors(layout: Layout) -> list[dict[str, Any]]:
    """system/physmem.c ram_block_discard_range: host + start aligned to rb->page_size
    ("Unaligned start address: %p"), start + length within max_length ("Overrun block
    '%s' (%" PRIu64 "/%zx/" RAM_ADDR_FMT ")"), length a multiple of rb->page_size; 0 or -1.
    migration/ram.c ram_discard_range finds the block by name ("Failed to find block"),
    clears bits start >> bits .. + length >> bits of its receivedmap FIRST, then runs
    those checks. Blocks whose used_length is their max_length, so the messages hold at
    every release (the deltas are in release-deltas.json)."""
    base = base_of(layout)
    p4, m2 = 4096, 2 << 20
    blocks = [block("pc.ram", base, 8 * p4), block("huge", base + (1 << 24), 2 * m2, page_size=m2)]
    fill = Op("ramblock_recv_bitmap_set_range", (Ref(0), base, 8))
    ops = [
        Op("ramblock_recv_map_init", ()),
        fill,
        Op("ram_block_discard_range", (Ref(0), 0, 2 * p4)),
        Op("ram_block_discard_range", (Ref(0), 2 * p4 + 100, p4)),
        Op("ram_block_discard_range", (Ref(0), 6 * p4, 3 * p4)),
        Op("ram_block_discard_range", (Ref(1), m2, m2)),
        Op("ram_block_discard_range", (Ref(0), 7 * p4, p4 + 100)),
        Op("ram_discard_range", ("pc.ram", 0, 2 * p4)),
        Op("ram_discard_range", ("pc.ram", 2 * p4 + 100, p4)),
        Op("ram_discard_range", ("pc.ram", 6 * p4, 3 * p4)),
        Op("ram_discard_range", ("huge", m2, m2)),
        Op("ram_discard_range", ("pc.ram", 7 * p4, p4 + 100)),
    ]
    fn = "ram_block_discard_range"
    errors = {
        3: f"{fn}: Unaligned start address: 0x{base + 2 * p4 + 100:x}",
        4: f"{fn}: Overrun block 'pc.ram' ({6 * p4}/{3 * p4:x}/{8 * p4:x})",
        6: f"{fn}: Overrun block 'pc.ram' ({7 * p4}/{p4 + 100:x}/{8 * p4:x})",
        8: f"{fn}: Unaligned start address: 0x{base + 2 * p4 + 100:x}",
        9: f"{fn}: Overrun block 'pc.ram' ({6 * p4}/{3 * p4:x}/{8 * p4:x})",
        11: f"{fn}: Overrun block 'pc.ram' ({7 * p4}/{p4 + 100:x}/{8 * p4:x})",
    }
    # ram_block_discard_range clears nothing: the map stays 0xff until ram_discard_range
    # clears bits 0-1, 2 (then refuses) and 6-8 (bit 8 past the map's 8 bits, in its word;
    # then refuses): 0xff & ~0b1_1100_0111 = 0x38; the hugepage block's 1024 bits clear.
    nhuge = 2 * m2 // p4 // layout.bits_per_long
    return [
        ram_vector(
            layout,
            "discards on an 8-page block (4K pages) and a 2M-hugepage block: aligned (0), "
            "unaligned start (-1), past max_length (-1), a whole hugepage (0), past "
            "max_length with an unaligned length (-1, the Overrun check comes first); "
            "ram_block_discard_range only checks, ram_discard_range clears the received "
            "bits first (also when the checks then fail)",
            blocks,
            ops,
            [None, None, 0, -1, -1, 0, -1, 0, -1, -1, 0, -1],
            {
                "destination:pc.ram.receivedmap": (1, {0: 0x38}),
                "destination:pc.ram.bmap": None,
                "destination:huge.receivedmap": (nhuge, {}),
                "destination:huge.bmap": None,
            },
            errors,
        ),
        ram_vector(
            layout,
            "on the source no block has a receivedmap: ram_discard_range clears nothing and "
            "ram_block_discard_range checks (0); the dirty bitmap stays all ones",
            blocks[:1],
            [
                Op("ram_list_init_bitmaps", ()),
                Op("ram_block_discard_range", (Ref(0), 0, p4)),
                Op("ram_discard_range", ("pc.ram", p4, p4)),
                Op("ram_save_cleanup", ()),
                Op("ram_list_init_bitmaps", ()),
            ],
            [None, 0, 0, None, None],
            {"source:pc.ram.receivedmap": None, "source:pc.ram.bmap": (1, {0: 0xFF})},
            side="source",
            flags=("HandDerived", "Discard"),
        ),
    ]


def placement_vectors(layout: Layout) -> list[dict[str, Any]]:
    """migration/postcopy-ram.c: postcopy_ram_supported_by_host compares the target page
    with the host page (getpagesize()); placing a host page sets page_size / target page
    size bits (ramblock_recv_bitmap_set_range). ram_save_cleanup frees the source's maps."""
    base = base_of(layout)
    blocks = [block("pc.ram", base, 4 * 4096)]
    out = [
        ram_vector(
            layout,
            "4K target pages on a 4K host: postcopy is supported; placing host page 2 sets "
            "one bit (bit 2)",
            blocks,
            [
                Op("ramblock_recv_map_init", ()),
                Op("postcopy_ram_supported_by_host", ()),
                Op("postcopy_place_page", (base + 2 * 4096, Ref(0))),
            ],
            [None, True, 0],
            {"destination:pc.ram.receivedmap": (1, {0: 0b100}), "destination:pc.ram.bmap": None},
        ),
        ram_vector(
            layout,
            "ram_save_cleanup frees the source's dirty bitmap (bmap NULL) after "
            "ram_list_init_bitmaps set its 4 bits",
            blocks,
            [Op("ram_list_init_bitmaps", ()), Op("ram_save_cleanup", ())],
            [None, None],
            {"source:pc.ram.receivedmap": None, "source:pc.ram.bmap": None},
            side="source",
        ),
    ]
    return out


def ram_class_cases(layout: Layout) -> list[dict[str, Any]]:
    return [
        *page_bits_vectors(layout),
        *set_range_vectors(layout),
        *discard_vectors(layout),
        *placement_vectors(layout),
    ]


# --- both sides of release deltas ---------------------------------------------------------

NEWEST, OLDEST = None, "v2.12.0"


def delta_vectors(layout: Layout) -> list[dict[str, Any]]:
    """Release deltas of the ram layer (pymodel/releases.py), each side a vector of its own
    release with its own hand values, so a replay at the wrong release (or an export for
    a backport without the change) fails one of them."""
    base = base_of(layout)
    p4 = 4096
    fn = "ram_block_discard_range"
    out = []
    # 72821d93e0 (v5.0.0): the length is checked, not the end address (same verdict).
    blocks = [block("pc.ram", base, 8 * p4)]
    ops = [
        Op("ramblock_recv_map_init", ()),
        Op("ramblock_recv_bitmap_set_range", (Ref(0), base, 8)),
        Op("ram_discard_range", ("pc.ram", 3 * p4, p4 + 512)),
        Op("ram_block_discard_range", (Ref(0), 5 * p4, 2 * p4 + 1)),
    ]
    for release, text in (
        (NEWEST, "from v5.0.0 (72821d93e0) an unaligned length is reported as such: "
                 "\"Unaligned length: %zx\""),
        ("v4.2.0", "before v5.0.0 (72821d93e0) the end address host + start + length was "
                   "checked: \"Unaligned end address: %p\""),
    ):  # fmt: skip
        if release is None:
            errors = {
                2: f"{fn}: Unaligned length: {p4 + 512:x}",
                3: f"{fn}: Unaligned length: {2 * p4 + 1:x}",
            }
        else:
            errors = {
                2: f"{fn}: Unaligned end address: 0x{base + 3 * p4 + p4 + 512:x}",
                3: f"{fn}: Unaligned end address: 0x{base + 5 * p4 + 2 * p4 + 1:x}",
            }
        out.append(
            ram_vector(
                layout,
                f"a discard from an aligned start with an unaligned length fails (-1) after "
                f"ram_discard_range cleared bit 3 ((4096 + 512) >> 12 = 1 bit); {text}",
                blocks,
                ops,
                [None, None, -1, -1],
                {"destination:pc.ram.receivedmap": (1, {0: 0xF7}), "destination:pc.ram.bmap": None},
                errors,
                release=release,
                flags=("HandDerived", "Release", "Discard"),
            )
        )  # fmt: skip
    # dcdc460767 (v6.1.0): start + length may reach max_length; the message prints it.
    blocks = [block("pc.ram", base, 8 * p4, 16 * p4)]
    ops = [
        Op("ramblock_recv_map_init", ()),
        Op("ramblock_recv_bitmap_set_range", (Ref(0), base, 16)),
        Op("ram_discard_range", ("pc.ram", 6 * p4, 4 * p4)),
        Op("ram_block_discard_range", (Ref(0), 10 * p4, 2 * p4)),
        Op("ram_discard_range", ("pc.ram", 12 * p4, 8 * p4)),
    ]
    for release, limit, ok in ((NEWEST, 16, 0), ("v6.0.0", 8, -1)):
        over = f"{fn}: Overrun block 'pc.ram' ("
        errors = {4: f"{over}{12 * p4}/{8 * p4:x}/{limit * p4:x})"}
        if ok:
            errors[2] = f"{over}{6 * p4}/{4 * p4:x}/{limit * p4:x})"
            errors[3] = f"{over}{10 * p4}/{2 * p4:x}/{limit * p4:x})"
        when = ("from v6.1.0 (dcdc460767) the bound is max_length" if release is None
                else "before v6.1.0 the bound was used_length")  # fmt: skip
        out.append(
            ram_vector(
                layout,
                "a block of used_length 8 pages, max_length 16: discards of pages 6..9 and "
                f"10..11 pass used_length; 12..19 passes max_length; {when} (ok: {ok}), and "
                "the Overrun message prints it; ram_discard_range clears pages 6..9 and "
                "12..19 (bits 16..19 past the map, inside its word) first",
                blocks,
                ops,
                [None, None, ok, ok, -1],
                {"destination:pc.ram.receivedmap": (1, {0: 0x0C3F}),
                 "destination:pc.ram.bmap": None},
                errors,
                release=release,
                flags=("HandDerived", "Release", "Discard"),
            )
        )  # fmt: skip
    # fbd162e629 (v4.0.0): an ignored (shared) block gets no receivedmap.
    blocks = [block("pc.ram", base, 4 * p4), {**block("shared", base + (1 << 24), 4 * p4),
                                              "ignored": True}]  # fmt: skip
    ops = [Op("ramblock_recv_map_init", ()), Op("ramblock_recv_bitmap_set", (Ref(0), base + p4))]
    for release, shared in ((NEWEST, None), ("v3.1.0", (1, {}))):
        out.append(
            ram_vector(
                layout,
                "ramblock_recv_map_init walks RAMBLOCK_FOREACH_NOT_IGNORED from v4.0.0 "
                "(fbd162e629): the ignored block 'shared' gets no map; before, every "
                "migratable block got one" + (" (here: an empty word)" if shared else ""),
                blocks,
                ops,
                [None, None],
                {
                    "destination:pc.ram.receivedmap": (1, {0: 0b10}),
                    "destination:pc.ram.bmap": None,
                    "destination:shared.receivedmap": shared,
                    "destination:shared.bmap": None,
                },
                release=release,
                flags=("HandDerived", "Release"),
            )
        )
    # 814bb08f177a (v3.0.0): before it, a discard on the source dereferenced NULL.
    out.append(
        ram_vector(
            layout,
            "before v3.0.0 (814bb08f177a) ram_discard_range cleared the received bits "
            "unconditionally: on the source (no receivedmap) QEMU dereferences NULL, outside "
            "the domain",
            [block("pc.ram", base, 4 * p4)],
            [Op("ram_list_init_bitmaps", ()), Op("ram_discard_range", ("pc.ram", 0, p4))],
            [None],
            {},
            side="source",
            release=OLDEST,
            invalid=True,
            flags=("HandDerived", "Release", "Domain"),
        )
    )
    return out


def send_delta_vectors(layout: Layout) -> list[dict[str, Any]]:
    """898ba906cc (v6.1.0, migration/ram.c ramblock_recv_bitmap_send): nbits of the sent
    map is postcopy_length >> bits (used_length >> bits before). A block of used_length 80
    pages resized to 10 during postcopy, pages 3 and 70 received: the stream's map is
    DIV_ROUND_UP(nbits, 8) bytes rounded up to 8, of bitmap_to_le of BITS_TO_LONGS(nbits)
    words. The source's reload (nbits = used_length >> bits, 80: 16 bytes expected) then
    refuses the short stream, or complements the 80 bits."""
    base = base_of(layout)
    p4 = 4096
    blocks = [block("pc.ram", base, 80 * p4, postcopy=10 * p4)]
    ops = [
        Op("ramblock_recv_map_init", ()),
        Op("ram_list_init_bitmaps", ()),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 3 * p4)),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 70 * p4)),
        Op("ramblock_recv_bitmap_send", ("pc.ram",)),
        Op("ram_dirty_bitmap_reload", (Ref(0),)),
    ]
    bpl = layout.bits_per_long
    b = Bits(bpl)
    n = -(-80 // bpl)
    out = []
    end = bytes.fromhex(ENDMARK)
    new = (8).to_bytes(8, "big") + bytes([0x08]) + bytes(7) + end
    old = (16).to_bytes(8, "big") + bytes([0x08]) + bytes(7) + bytes([0x40]) + bytes(7) + end
    mismatch = "ramblock 'pc.ram' bitmap size mismatch (0x8 != 0x10)"
    for release, stream, reload, bmap in (
        (NEWEST, new, ("RecoveryError", -1, mismatch), b.words(span(0, 80), n)),
        # v6.1.0 to v8.1.x: the same refusal as an int and an error_report line
        ("v8.1.0", new, ("RecoveryError", -22, f"ram_dirty_bitmap_reload: {mismatch}"),
         b.words(span(0, 80), n)),
        ("v5.2.0", old, 0, b.words(span(0, 80) & ~(1 << 3 | 1 << 70), n)),
    ):  # fmt: skip
        out.append(
            case(
                recovery_program(layout, layout, blocks, ops),
                "a block resized from 80 pages to a postcopy_length of 10, pages 3 and 70 "
                + ("received: from v6.1.0 (898ba906cc) nbits is postcopy_length >> 12 = 10: "
                   "8 bytes of map (page 70 not sent); the source expects used_length's 80 "
                   "bits (16 bytes) and refuses it, its bitmap untouched"
                   if release != "v5.2.0" else
                   "received: before v6.1.0 nbits was used_length >> 12 = 80: 16 bytes of map; "
                   "the source reloads it: dirty = the 78 pages not received"),
                ["HandDerived", "Release", "RecoveryStream"],
                [None, None, None, None, (stream, len(stream) - 8), reload],
                {"source:pc.ram.bmap": (n, bmap)},
                release=release,
            )
        )  # fmt: skip
    return out


def between_vectors(layout: Layout, sender_too: bool) -> list[dict[str, Any]]:
    """States of QEMU's history between releases, as rule sets (pymodel/releases.py):
    each holds a side of a change that no release shows. ``recvmap history`` and
    ``recvmap replay --release RULES`` replay them; no release range holds them."""
    base = base_of(layout)
    p4 = 4096
    out = []
    # 03158519384f left the source's bitmap blank; 40c4d4a83545 set it again, both before
    # v4.1.0: between them ram_list_init_bitmaps allocates max_length >> bits clear bits.
    out.append(
        ram_vector(
            layout,
            "between 03158519384f and 40c4d4a83545 (both in v4.1.0) ram_list_init_bitmaps "
            "left each bmap blank: 4 pages, no dirty bit (every release sets them all)",
            [block("pc.ram", base, 4 * p4)],
            [Op("ram_list_init_bitmaps", ())],
            [None],
            {"source:pc.ram.receivedmap": None, "source:pc.ram.bmap": (1, {})},
            side="source",
            release="v4.1.0-bmap_dirty_again",
            flags=("HandDerived", "Release"),
        )
    )
    if not sender_too:
        return out
    end = bytes.fromhex(ENDMARK)
    # a335debb35 sent nbits / 8 bytes rounded up to 8 until a725ef9fe364 (both v3.0.0):
    # 7 pages made 0 / 8 = 0 bytes of map, and the reload expected the same 0.
    blocks = [block("pc.ram", base, 7 * p4)]
    ops = [
        Op("ramblock_recv_map_init", ()),
        Op("ram_list_init_bitmaps", ()),
        Op("ramblock_recv_bitmap_set", (Ref(0), base)),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 6 * p4)),
        Op("ramblock_recv_bitmap_send", ("pc.ram",)),
        Op("ram_dirty_bitmap_reload", (Ref(0),)),
    ]
    stream = bytes(8) + end
    out.append(
        case(
            recovery_program(layout, layout, blocks, ops),
            "between a335debb35 and a725ef9fe364 (both in v3.0.0) the map was nbits / 8 "
            "bytes rounded DOWN, then up to 8: 7 pages send 0 bytes (pages 0 and 6 lost), "
            "and the reload, sized the same way, accepts it: all 7 pages dirty",
            ["HandDerived", "Release", "RecoveryStream"],
            [None, None, None, None, (stream, 8), 0],
            {"source:pc.ram.bmap": (1, {0: 0x7F})},
            release="v3.0.0-recv_bitmap_size_div_round_up",
        )
    )
    # 7aa6070d09 (an Error, no function prefix) one commit before 88577f3242 (bool).
    blocks = [block("pc.ram", base, 9 * p4, 16 * p4)]
    ops = [
        Op("ramblock_recv_map_init", ()),
        Op("ram_list_init_bitmaps", ()),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 3 * p4)),
        Op("ramblock_recv_bitmap_send", ("pc.ram",)),
        Op("stream_set_size", (16,)),
        Op("ram_dirty_bitmap_reload", (Ref(0),)),
    ]
    good = (8).to_bytes(8, "big") + bytes([0x08]) + bytes(7) + end
    error = ("RecoveryError", -22, "ramblock 'pc.ram' bitmap size mismatch (0x10 != 0x8)")
    out.append(
        case(
            recovery_program(layout, layout, blocks, ops),
            "between 7aa6070d09 and 88577f3242 (both in v8.2.0) the reload reported into an "
            "Error (no 'ram_dirty_bitmap_reload: ' prefix) but still returned -EINVAL: a "
            "size field of 16 is refused, the bitmap untouched",
            ["HandDerived", "Release", "MalformedStream"],
            [None, None, None, (good, 16), None, error],
            {"source:pc.ram.bmap": (1, {0: 0xFFFF})},
            release="v8.2.0-reload_bool_error",
        )
    )
    return out


def main(argv: list[str]) -> int:
    dest = Path(argv[1]) if len(argv) > 1 else HERE
    files = {
        "bitmap-classes.json": [t for lay in LAYOUTS for t in bitmap_class_cases(lay)],
        "ram-classes.json": [t for lay in LAYOUTS for t in ram_class_cases(lay)],
        "release-deltas.json": [
            *(t for lay in LAYOUTS for t in delta_vectors(lay)),
            *(t for lay in (LP64_LE, ILP32_LE) for t in send_delta_vectors(lay)),
            *(t for lay in LAYOUTS for t in between_vectors(lay, lay in (LP64_LE, ILP32_LE))),
        ],
    }
    for name, tests in files.items():
        path = write_vector_file(dest / name, vector_file(tests))
        print(f"{path}: {len(tests)} tests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
