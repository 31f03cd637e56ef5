# SPDX-License-Identifier: GPL-2.0-or-later
"""Whole bitmaps and bit ranges: QEMU's include/qemu/bitmap.h and util/bitmap.c.

Every function states QEMU's rule for both the result and the memory image, tail bits
(the bits past nbits in the last word) included. Word counts follow C arithmetic: QEMU's
BITS_PER_LONG is a size_t, so a negative ``long`` count is first made unsigned (see the
macros in ``words``). The inline helpers of bitmap.h take a one-word fast path when
small_nbits(nbits); it touches the same words and bits as their slow path, so one rule
covers both. nbits == 0 is outside their domain (except bitmap_count_one).

Release rules (``pymodel.releases``; these functions are the newest release):
bitmap_count_one(map, 0) counted word 0 before v4.0.0 (``bitmap_count_one_before_v4``,
e7c91368d246); bitmap_count_one_with_offset exists from v4.0.0,
bitmap_copy_with_src_offset / _dst_offset from v4.1.0, bitmap_test_and_clear from v7.2.0;
bitmap_new(0) aborted before v9.1.0 (``bitmap_new_before_v9_1``, 5e9efe31f1).
No other rule of these functions changed from v2.12.0 to v10.1.x.
"""

from __future__ import annotations

import operator

from .errors import PreconditionError, check_long, check_ulong, check_words, checked
from .words import (
    BIT_WORD,
    BITS_TO_LONGS,
    LP64_LE,
    Layout,
    Words,
    apply,
    copy_bits,
    small_nbits,
    swap_words,
    test,
)

__all__ = [
    "bitmap_and",
    "bitmap_andnot",
    "bitmap_clear",
    "bitmap_complement",
    "bitmap_copy",
    "bitmap_copy_and_clear_atomic",
    "bitmap_copy_with_dst_offset",
    "bitmap_copy_with_src_offset",
    "bitmap_count_one",
    "bitmap_count_one_with_offset",
    "bitmap_empty",
    "bitmap_equal",
    "bitmap_fill",
    "bitmap_find_next_zero_area",
    "bitmap_from_le",
    "bitmap_full",
    "bitmap_intersects",
    "bitmap_new",
    "bitmap_or",
    "bitmap_set",
    "bitmap_set_atomic",
    "bitmap_test_and_clear",
    "bitmap_test_and_clear_atomic",
    "bitmap_to_le",
    "bitmap_xor",
    "bitmap_zero",
    "bitmap_zero_extend",
]


def _roundup(bit: int, bpl: int) -> int:
    """The end of the word holding bit - 1 (bit itself when word aligned)."""
    return -(-bit // bpl) * bpl


def _andnot(a: int, b: int) -> int:
    return a & ~b


# --- domains ------------------------------------------------------------------------------


def _nonzero_nbits(function: str, nbits: int, maps: dict[str, Words]) -> Layout:
    """The maps' layout, once ``nbits`` is a long other than 0.

    nbits == 0 is outside the domain: the fast path still touches word 0 (bitmap.h).
    """
    layout = next(iter(maps.values())).layout
    check_long(function, layout, "nbits", nbits)
    if nbits == 0:
        raise PreconditionError(
            function,
            "nbits",
            "nbits != 0 (include/qemu/bitmap.h: small_nbits(0) still uses word 0)",
        )
    return layout


def _inline(function: str, nbits: int, **maps: Words) -> int:
    """Words an inline helper touches: 1 when small_nbits(nbits), else BITS_TO_LONGS(nbits).

    nbits != 0 (``_nonzero_nbits``).
    """
    bpl = _nonzero_nbits(function, nbits, maps).bits_per_long
    nwords = 1 if small_nbits(nbits, bpl) else BITS_TO_LONGS(nbits, bpl)
    for name, words in maps.items():
        check_words(function, name, words, 0, nwords)
    return nwords


def _lim(function: str, nbits: int, **maps: Words) -> int:
    """Bits a slow_bitmap_* loop covers (nbits / BITS_PER_LONG words and the partial last
    word, nbits taken as unsigned); the fast path covers the same. nbits != 0."""
    layout = _nonzero_nbits(function, nbits, maps)
    bits = nbits & layout.ulong_max
    for name, words in maps.items():
        check_words(function, name, words, 0, -(-bits // layout.bits_per_long))
    return bits


def _range(function: str, map: Words, start: int, nr: int) -> int:
    """Domain of the util/bitmap.c range functions; returns start + nr."""
    layout = map.layout
    lo, hi = layout.long_min, layout.long_max
    if not (lo <= start <= hi and lo <= nr <= hi):
        check_long(function, layout, "start", start)
        check_long(function, layout, "nr", nr)
    if start < 0 or nr < 0:
        raise PreconditionError(
            function,
            "start" if start < 0 else "nr",
            f"start >= 0 && nr >= 0 (assert in util/bitmap.c {function})",
        )
    end = start + nr
    if end > hi:
        raise PreconditionError(
            function, "nr", "start + nr <= LONG_MAX (util/bitmap.c: const long size = start + nr)"
        )
    if nr and end > len(map.data) << 3:
        bpl = layout.bits_per_long
        check_words(function, "map", map, start // bpl, -(-end // bpl))
    return end


# --- allocation ---------------------------------------------------------------------------


@checked
def bitmap_new(nbits: int, layout: Layout = LP64_LE) -> Words:
    """BITS_TO_LONGS(nbits) zeroed words (bitmap.h bitmap_new: g_new0; 0 words for 0 bits).

    nbits < 0 is outside the domain (the unsigned BITS_TO_LONGS of a negative long is 0
    or about ULONG_MAX / BITS_PER_LONG words, which g_new0 cannot allocate).
    """
    check_long("bitmap_new", layout, "nbits", nbits)
    if nbits < 0:
        raise PreconditionError(
            "bitmap_new",
            "nbits",
            "nbits >= 0 (bitmap.h bitmap_new: g_new0 of BITS_TO_LONGS(nbits))",
        )
    return Words(layout, BITS_TO_LONGS(nbits, layout.bits_per_long))


@checked
def bitmap_new_before_v9_1(nbits: int, layout: Layout = LP64_LE) -> Words:
    """bitmap_new before QEMU v9.1.0 (commit 5e9efe31f1 moved bitmap.h to g_new0).

    It took g_try_malloc0(BITS_TO_LONGS(nbits) * sizeof(long)) and aborted on NULL, and
    g_try_malloc0(0) is NULL: bitmap_new(0) aborted. Any other nbits is as today.
    """
    if nbits == 0:  # every other argument is checked by bitmap_new
        raise PreconditionError(
            "bitmap_new",
            "nbits",
            "nbits != 0 before v9.1.0 (bitmap.h bitmap_new aborts when g_try_malloc0 of "
            "0 bytes returns NULL)",
        )
    return bitmap_new(nbits, layout)


@checked
def bitmap_zero_extend(old: Words, old_nbits: int, new_nbits: int) -> Words:
    """Resize to BITS_TO_LONGS(new_nbits) words, then bitmap_clear(old_nbits, new - old).

    bitmap.h bitmap_zero_extend: g_renew keeps the old words; the bits from old_nbits to
    new_nbits are cleared. Words that g_renew adds are uninitialized in QEMU outside that
    range; the model zeroes them. Returns ``old``, resized in place (model only).
    """
    function = "bitmap_zero_extend"
    layout = old.layout
    check_long(function, layout, "old_nbits", old_nbits)
    check_long(function, layout, "new_nbits", new_nbits)
    if new_nbits < 0:
        raise PreconditionError(
            function, "new_nbits", "new_nbits >= 0 (g_renew of BITS_TO_LONGS(new_nbits))"
        )
    if old_nbits < 0 or new_nbits < old_nbits:
        raise PreconditionError(
            function,
            "old_nbits" if old_nbits < 0 else "new_nbits",
            "start >= 0 && nr >= 0 (assert in util/bitmap.c bitmap_clear, "
            "start = old_nbits, nr = new_nbits - old_nbits)",
        )
    old.resize(BITS_TO_LONGS(new_nbits, layout.bits_per_long))
    old.clear_range(old_nbits, new_nbits)
    return old


# --- inline whole-bitmap helpers (include/qemu/bitmap.h) ---------------------------------


@checked
def bitmap_zero(dst: Words, nbits: int) -> None:
    """Zero the words covering nbits: whole words, tail included (memset / *dst = 0)."""
    nwords = _inline("bitmap_zero", nbits, dst=dst)
    dst.clear_range(0, nwords * dst.layout.bits_per_long)


@checked
def bitmap_fill(dst: Words, nbits: int) -> None:
    """Set bits [0, nbits) and CLEAR the tail: whole words of ones, then the last word =
    BITMAP_LAST_WORD_MASK(nbits) (bitmap.h bitmap_fill; Linux sets the tail instead).

    The last word is dst[BITS_TO_LONGS(nbits) - 1]; for -BITS_PER_LONG < nbits < 0 that
    is the word before dst, outside the domain.
    """
    nwords = _inline("bitmap_fill", nbits, dst=dst)
    if nwords == 0:
        raise PreconditionError(
            "bitmap_fill", "nbits", "BITS_TO_LONGS(nbits) >= 1 (bitmap_fill writes dst[nlongs - 1])"
        )
    bits = nbits & dst.layout.ulong_max
    dst.set_range(0, bits)
    dst.clear_range(bits, nwords * dst.layout.bits_per_long)


@checked
def bitmap_copy(dst: Words, src: Words, nbits: int) -> None:
    """Copy the words covering nbits, tail bits included (memcpy / *dst = *src)."""
    nwords = _inline("bitmap_copy", nbits, dst=dst, src=src)
    copy_bits(dst, 0, src, 0, nwords * dst.layout.bits_per_long)


@checked
def bitmap_and(dst: Words, src1: Words, src2: Words, nbits: int) -> int:
    """dst = src1 & src2 on whole words; returns 1 if any result bit is set, tail bits
    included (slow_bitmap_and ORs whole words; the fast path tests the whole word)."""
    nwords = _inline("bitmap_and", nbits, dst=dst, src1=src1, src2=src2)
    return int(apply(operator.and_, dst, (src1, src2), 0, nwords * dst.layout.bits_per_long))


@checked
def bitmap_or(dst: Words, src1: Words, src2: Words, nbits: int) -> None:
    """dst = src1 | src2 on whole words: tail bits propagate (slow_bitmap_or)."""
    nwords = _inline("bitmap_or", nbits, dst=dst, src1=src1, src2=src2)
    apply(operator.or_, dst, (src1, src2), 0, nwords * dst.layout.bits_per_long)


@checked
def bitmap_xor(dst: Words, src1: Words, src2: Words, nbits: int) -> None:
    """dst = src1 ^ src2 on whole words: tail bits propagate (slow_bitmap_xor)."""
    nwords = _inline("bitmap_xor", nbits, dst=dst, src1=src1, src2=src2)
    apply(operator.xor, dst, (src1, src2), 0, nwords * dst.layout.bits_per_long)


@checked
def bitmap_andnot(dst: Words, src1: Words, src2: Words, nbits: int) -> int:
    """dst = src1 & ~src2 on whole words; returns 1 if any result bit is set, tail bits
    included (slow_bitmap_andnot)."""
    nwords = _inline("bitmap_andnot", nbits, dst=dst, src1=src1, src2=src2)
    return int(apply(_andnot, dst, (src1, src2), 0, nwords * dst.layout.bits_per_long))


@checked
def bitmap_complement(dst: Words, src: Words, nbits: int) -> None:
    """dst bits [0, nbits) = ~src; the tail of a partial last word is CLEARED
    (slow_bitmap_complement masks it with BITMAP_LAST_WORD_MASK)."""
    bits = _lim("bitmap_complement", nbits, dst=dst, src=src)
    apply(operator.invert, dst, (src,), 0, bits)
    dst.clear_range(bits, _roundup(bits, dst.layout.bits_per_long))


@checked
def bitmap_equal(src1: Words, src2: Words, nbits: int) -> int:
    """1 if bits [0, nbits) are equal; tail bits are masked off (slow_bitmap_equal)."""
    bits = _lim("bitmap_equal", nbits, src1=src1, src2=src2)
    return int(not test(operator.xor, (src1, src2), 0, bits))


@checked
def bitmap_empty(src: Words, nbits: int) -> int:
    """1 if no bit in [0, nbits) is set; tail masked (slow_bitmap_empty)."""
    bits = _lim("bitmap_empty", nbits, src=src)
    return int(not src.any_set(0, bits))


@checked
def bitmap_full(src: Words, nbits: int) -> int:
    """1 if every bit in [0, nbits) is set; tail masked (slow_bitmap_full)."""
    bits = _lim("bitmap_full", nbits, src=src)
    return int(src.find_clear(0, bits) == bits)


@checked
def bitmap_intersects(src1: Words, src2: Words, nbits: int) -> int:
    """1 if src1 & src2 has a set bit in [0, nbits); tail masked (slow_bitmap_intersects)."""
    bits = _lim("bitmap_intersects", nbits, src1=src1, src2=src2)
    return int(test(operator.and_, (src1, src2), 0, bits))


def _count_one(function: str, bitmap: Words, word: int, nbits: int) -> int:
    """bitmap_count_one(bitmap + word, nbits): 0 for nbits == 0 (no read), else the set
    bits among the first nbits (taken as unsigned); the long result must not overflow."""
    if nbits == 0:
        return 0
    layout = bitmap.layout
    bpl = layout.bits_per_long
    bits = nbits & layout.ulong_max
    check_words(function, "bitmap", bitmap, word, word + -(-bits // bpl))
    count = bitmap.count(word * bpl, word * bpl + bits)
    if count > layout.long_max:
        raise PreconditionError(
            function, "nbits", "the count fits a long (long result in slow_bitmap_count_one)"
        )
    return count


@checked
def bitmap_count_one(bitmap: Words, nbits: int) -> int:
    """Number of set bits in [0, nbits); 0 for nbits == 0 without reading (bitmap.h)."""
    check_long("bitmap_count_one", bitmap.layout, "nbits", nbits)
    return _count_one("bitmap_count_one", bitmap, 0, nbits)


@checked
def bitmap_count_one_before_v4(bitmap: Words, nbits: int) -> int:
    """bitmap_count_one before QEMU v4.0.0 (commit e7c91368d246 added the nbits == 0 guard).

    Without the guard, nbits == 0 takes the one-word path (small_nbits(0)) with
    BITMAP_LAST_WORD_MASK(0) = all ones: the result is the number of set bits of word 0
    (which must exist). Any other nbits counts as today.
    """
    function = "bitmap_count_one"
    check_long(function, bitmap.layout, "nbits", nbits)
    if nbits == 0:
        check_words(function, "bitmap", bitmap, 0, 1)
        bpl = bitmap.layout.bits_per_long
        return bitmap.count(0, bpl)
    return _count_one(function, bitmap, 0, nbits)


@checked
def bitmap_count_one_with_offset(bitmap: Words, offset: int, nbits: int) -> int:
    """Set bits in [offset, offset + nbits), computed as QEMU does (bitmap.h): from the word
    of offset, bitmap_count_one(nbits + offset % BPL) - bitmap_count_one(offset % BPL).

    So nbits == 0 gives 0, and a negative nbits above -(offset % BPL) gives minus the
    count of bits [offset + nbits, offset). QEMU_ALIGN_DOWN and the word index use
    unsigned arithmetic: a negative offset indexes far past the map.
    """
    function = "bitmap_count_one_with_offset"
    layout = bitmap.layout
    check_long(function, layout, "offset", offset)
    check_long(function, layout, "nbits", nbits)
    bpl = layout.bits_per_long
    redundant = offset % bpl
    if nbits + redundant > layout.long_max:
        raise PreconditionError(
            function, "nbits", "nbits + offset % BITS_PER_LONG <= LONG_MAX (long bits_to_count)"
        )
    word = BIT_WORD(offset - redundant, bpl)
    return _count_one(function, bitmap, word, nbits + redundant) - _count_one(
        function, bitmap, word, redundant
    )


# --- ranges (util/bitmap.c) ---------------------------------------------------------------


@checked
def bitmap_set(map: Words, start: int, nr: int) -> None:
    """Set bits [start, start + nr); nr == 0 touches nothing (util/bitmap.c bitmap_set).

    Asserts start >= 0 && nr >= 0; start + nr must not overflow a long.
    """
    end = _range("bitmap_set", map, start, nr)
    map.set_range(start, end)


@checked
def bitmap_set_atomic(map: Words, start: int, nr: int) -> None:
    """Set bits [start, start + nr) (util/bitmap.c bitmap_set_atomic): atomic OR on the
    partial first and last words, plain stores and smp_mb() on full words; the memory
    image is that of bitmap_set, and concurrent callers never lose bits."""
    end = _range("bitmap_set_atomic", map, start, nr)
    map.set_range(start, end)


@checked
def bitmap_clear(map: Words, start: int, nr: int) -> None:
    """Clear bits [start, start + nr); nr == 0 touches nothing (util/bitmap.c bitmap_clear)."""
    end = _range("bitmap_clear", map, start, nr)
    map.clear_range(start, end)


@checked
def bitmap_test_and_clear_atomic(map: Words, start: int, nr: int) -> bool:
    """Clear bits [start, start + nr); True if any of them was set
    (util/bitmap.c bitmap_test_and_clear_atomic)."""
    end = _range("bitmap_test_and_clear_atomic", map, start, nr)
    dirty = map.any_set(start, end)
    map.clear_range(start, end)
    return dirty


@checked
def bitmap_test_and_clear(map: Words, start: int, nr: int) -> bool:
    """Clear bits [start, start + nr) and say if any was set, with QEMU's quirk
    (util/bitmap.c bitmap_test_and_clear): its first-word step does not reset
    mask_to_clear to ~0UL, so when start is not word aligned and the range runs past the
    first word into a partial last word, that last word is masked with
    BITMAP_FIRST_WORD_MASK(start) & BITMAP_LAST_WORD_MASK(start + nr): its bits below
    start % BITS_PER_LONG are neither tested nor cleared. (The _atomic variant resets it.)
    """
    end = _range("bitmap_test_and_clear", map, start, nr)
    bpl = map.layout.bits_per_long
    head, tail = start % bpl, end % bpl
    last = hole_end = end  # bits [last, hole_end) of the last word are left alone
    if head and nr > bpl - head and tail:
        last = end - tail
        hole_end = min(end, last + head)
    dirty = map.any_set(start, last) or map.any_set(hole_end, end)
    map.clear_range(start, last)
    map.clear_range(hole_end, end)
    return dirty


@checked
def bitmap_copy_and_clear_atomic(dst: Words, src: Words, nr: int) -> None:
    """Move whole words while nr > 0: dst word = atomic_xchg(src word, 0), nr -= BPL
    (util/bitmap.c). So bits past nr in the last source word are cleared (and copied)
    too; nr <= 0 does nothing; with dst == src the words keep their values."""
    function = "bitmap_copy_and_clear_atomic"
    layout = dst.layout
    check_long(function, layout, "nr", nr)
    bpl = layout.bits_per_long
    nwords = -(-nr // bpl) if nr > 0 else 0
    check_words(function, "dst", dst, 0, nwords)
    check_words(function, "src", src, 0, nwords)
    if dst is not src:
        copy_bits(dst, 0, src, 0, nwords * bpl)
        src.clear_range(0, nwords * bpl)


@checked
def bitmap_find_next_zero_area(map: Words, size: int, start: int, nr: int, align_mask: int) -> int:
    """First index >= start, a multiple of align_mask + 1, of nr clear bits ending at or
    before size (util/bitmap.c bitmap_find_next_zero_area). On failure it returns
    index + nr, a value GREATER than size (not size).

    Unsigned long arithmetic: ALIGN_MASK(index, align_mask) and index + nr wrap modulo
    2**BPL, as in QEMU. When ALIGN_MASK wraps QEMU may search forever (it restarts from a
    lower bit); a call that would is outside the domain.
    """
    function = "bitmap_find_next_zero_area"
    layout = map.layout
    for name, value in (("size", size), ("start", start), ("nr", nr), ("align_mask", align_mask)):
        check_ulong(function, layout, name, value)
    full, bpl = layout.ulong_max, layout.bits_per_long
    restarts_after_wrap: set[int] = set()
    while True:
        if start < size:  # find_next_zero_bit(map, size, start)
            check_words(function, "map", map, start // bpl, -(-size // bpl))
            index = map.find_clear(start, size)
        else:
            index = size
        aligned = (index + align_mask) & ~align_mask & full
        end = (aligned + nr) & full
        if end > size:
            return end
        if aligned >= end:  # find_next_bit(map, end, aligned) returns end at once
            return aligned
        check_words(function, "map", map, aligned // bpl, -(-end // bpl))
        busy = map.find_set(aligned, end)
        if busy >= end:
            return aligned
        start = busy + 1
        if aligned < index:  # ALIGN_MASK wrapped: the search restarted lower
            if start in restarts_after_wrap:
                raise PreconditionError(
                    function,
                    "align_mask",
                    "ALIGN_MASK(index, align_mask) wraps and QEMU's search never returns",
                )
            restarts_after_wrap.add(start)


def _to_from_le(function: str, dst: Words, src: Words, nbits: int) -> None:
    """BITS_TO_LONGS(nbits) words: memcpy on little-endian hosts, bswap of each word on
    big-endian hosts (util/bitmap.c bitmap_to_from_le). A negative nbits above
    -BITS_PER_LONG makes BITS_TO_LONGS 0: nothing happens."""
    layout = dst.layout
    check_long(function, layout, "nbits", nbits)
    nwords = BITS_TO_LONGS(nbits, layout.bits_per_long)
    check_words(function, "dst", dst, 0, nwords)
    check_words(function, "src", src, 0, nwords)
    if layout.big_endian:
        swap_words(dst, src, nwords)
    else:
        copy_bits(dst, 0, src, 0, nwords * layout.bits_per_long)


@checked
def bitmap_to_le(dst: Words, src: Words, nbits: int) -> None:
    """dst = src as little-endian words, whole words (util/bitmap.c bitmap_to_le)."""
    _to_from_le("bitmap_to_le", dst, src, nbits)


@checked
def bitmap_from_le(dst: Words, src: Words, nbits: int) -> None:
    """dst = src read as little-endian words, whole words (util/bitmap.c bitmap_from_le)."""
    _to_from_le("bitmap_from_le", dst, src, nbits)


def _copy_words(
    function: str, dst: Words, dst_word: int, src: Words, src_word: int, nbits: int
) -> None:
    """bitmap_copy(dst + dst_word, src + src_word, nbits), as the offset copies call it:
    one word when small_nbits(nbits) -- so nbits == 0 copies one word -- else
    BITS_TO_LONGS(nbits) whole words by memcpy, whose overlapping ranges are undefined."""
    bpl = dst.layout.bits_per_long
    nwords = 1 if small_nbits(nbits, bpl) else BITS_TO_LONGS(nbits, bpl)
    check_words(function, "dst", dst, dst_word, dst_word + nwords)
    check_words(function, "src", src, src_word, src_word + nwords)
    if dst is src and nwords > 1 and 0 < abs(dst_word - src_word) < nwords:
        raise PreconditionError(
            function, "dst", "memcpy ranges must not overlap (bitmap_copy within one map)"
        )
    copy_bits(dst, dst_word * bpl, src, src_word * bpl, nwords * bpl)


def _copy_offset(
    function: str, layout: Layout, argument: str, offset: int, nbits: int
) -> tuple[int, int, int]:
    """The unsigned long arguments of a bitmap_copy_with_*_offset, checked; then
    BITS_PER_LONG and the word and bit of ``offset``."""
    check_ulong(function, layout, argument, offset)
    check_ulong(function, layout, "nbits", nbits)
    bpl = layout.bits_per_long
    return (bpl, *divmod(offset, bpl))


@checked
def bitmap_copy_with_src_offset(dst: Words, src: Words, offset: int, nbits: int) -> None:
    """dst bits [0, nbits) = src bits [offset, offset + nbits) (util/bitmap.c).

    Word-aligned offset: bitmap_copy(dst, src + offset / BPL, nbits) -- whole words, tail
    bits copied, and nbits == 0 still copies one word. Otherwise the tail of dst's last
    word is CLEARED, and nbits == 0 touches nothing.
    """
    function = "bitmap_copy_with_src_offset"
    bpl, word, shift = _copy_offset(function, dst.layout, "offset", offset, nbits)
    if shift == 0:
        _copy_words(function, dst, 0, src, word, nbits)
        return
    if nbits == 0:
        return
    check_words(function, "dst", dst, 0, -(-nbits // bpl))
    check_words(function, "src", src, word, (offset + nbits - 1) // bpl + 1)
    copy_bits(dst, 0, src, offset, nbits)
    dst.clear_range(nbits, _roundup(nbits, bpl))


@checked
def bitmap_copy_with_dst_offset(dst: Words, src: Words, shift: int, nbits: int) -> None:
    """dst bits [shift, shift + nbits) = src bits [0, nbits) (util/bitmap.c).

    Word-aligned shift: bitmap_copy(dst + shift / BPL, src, nbits) -- whole words, tail
    bits copied, nbits == 0 copies one word. Otherwise dst keeps its bits below shift, and
    the rest of the word holding bit shift + nbits - 1 is CLEARED (with nbits == 0: the
    bits of shift's word from shift up). With dst == src QEMU's word order shows through.
    """
    function = "bitmap_copy_with_dst_offset"
    bpl, word, bit = _copy_offset(function, dst.layout, "shift", shift, nbits)
    if bit == 0:
        _copy_words(function, dst, word, src, 0, nbits)
        return
    end = shift + nbits
    check_words(function, "dst", dst, word, -(-end // bpl))
    check_words(function, "src", src, 0, -(-nbits // bpl))
    if dst is src:
        _copy_with_dst_offset_in_place(dst, shift, nbits)
        return
    copy_bits(dst, shift, src, 0, nbits)
    dst.clear_range(end, _roundup(end, bpl))


def _copy_with_dst_offset_in_place(map: Words, shift: int, nbits: int) -> None:
    """The unaligned bitmap_copy_with_dst_offset on one map, statement by statement: each
    step reads source word j after the writes of the steps before it."""
    bpl, full = map.layout.bits_per_long, map.layout.ulong_max
    base, bit = divmod(shift, bpl)
    low = (1 << (bpl - bit)) - 1  # source bits that land in the same destination word
    map.set_word(base, map.word(base) & ((1 << bit) - 1))
    j = 0
    while nbits >= bpl:
        map.set_word(base + j, map.word(base + j) | ((map.word(j) & low) << bit))
        map.set_word(base + j + 1, (map.word(j) & ~low & full) >> (bpl - bit))
        nbits -= bpl
        j += 1
    if nbits > bpl - bit:
        map.set_word(base + j, map.word(base + j) | ((map.word(j) & low) << bit))
        rest = nbits - (bpl - bit)
        map.set_word(base + j + 1, (map.word(j) >> (bpl - bit)) & ((1 << rest) - 1))
    elif nbits:
        map.set_word(base + j, map.word(base + j) | ((map.word(j) & ((1 << nbits) - 1)) << bit))
