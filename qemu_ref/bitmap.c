/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Whole-bitmap and range operations of QEMU's include/qemu/bitmap.h
 * (inline helpers, exported here) and util/bitmap.c, on words of
 * QREF_BITS_PER_LONG bits.  What each function does to the tail bits
 * past nbits in the last word is QEMU's, bit for bit.
 */

#undef NDEBUG   /* QEMU's asserts are part of the behaviour: keep them */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "qemu_ref.h"

#define WORD_BYTES sizeof(qref_ulong)

/* ctpopl of QEMU's host-utils.h */
static inline qref_long word_ctpop(qref_ulong w)
{
#if QREF_BITS_PER_LONG == 32
    return __builtin_popcount((uint32_t)w);
#else
    return __builtin_popcountll((uint64_t)w);
#endif
}

/* Number of whole words below nbits, and whether a partial word follows. */
#define FULL_WORDS(nbits)       ((nbits) / QREF_BITS_PER_LONG)
#define HAS_PARTIAL(nbits)      ((nbits) % QREF_BITS_PER_LONG != 0)

/*
 * The slow_bitmap_* helpers of util/bitmap.c, taken when nbits > BPL.
 * Predicates and complement stop at the last word and mask it; and, or,
 * xor and andnot process BITS_TO_LONGS(nbits) whole words.
 */
static int slow_bitmap_empty(const qref_ulong *map, qref_long nbits)
{
    qref_long k, lim = FULL_WORDS(nbits);

    for (k = 0; k < lim; k++) {
        if (map[k]) {
            return 0;
        }
    }
    if (HAS_PARTIAL(nbits) && (map[k] & BITMAP_LAST_WORD_MASK(nbits))) {
        return 0;
    }
    return 1;
}

static int slow_bitmap_full(const qref_ulong *map, qref_long nbits)
{
    qref_long k, lim = FULL_WORDS(nbits);

    for (k = 0; k < lim; k++) {
        if (~map[k]) {
            return 0;
        }
    }
    if (HAS_PARTIAL(nbits) && (~map[k] & BITMAP_LAST_WORD_MASK(nbits))) {
        return 0;
    }
    return 1;
}

static int slow_bitmap_equal(const qref_ulong *a, const qref_ulong *b,
                             qref_long nbits)
{
    qref_long k, lim = FULL_WORDS(nbits);

    for (k = 0; k < lim; k++) {
        if (a[k] != b[k]) {
            return 0;
        }
    }
    if (HAS_PARTIAL(nbits) && ((a[k] ^ b[k]) & BITMAP_LAST_WORD_MASK(nbits))) {
        return 0;
    }
    return 1;
}

static int slow_bitmap_intersects(const qref_ulong *a, const qref_ulong *b,
                                  qref_long nbits)
{
    qref_long k, lim = FULL_WORDS(nbits);

    for (k = 0; k < lim; k++) {
        if (a[k] & b[k]) {
            return 1;
        }
    }
    if (HAS_PARTIAL(nbits) && (a[k] & b[k] & BITMAP_LAST_WORD_MASK(nbits))) {
        return 1;
    }
    return 0;
}

/* complement: the partial last word is written masked, its tail cleared. */
static void slow_bitmap_complement(qref_ulong *dst, const qref_ulong *src,
                                   qref_long nbits)
{
    qref_long k, lim = FULL_WORDS(nbits);

    for (k = 0; k < lim; k++) {
        dst[k] = ~src[k];
    }
    if (HAS_PARTIAL(nbits)) {
        dst[k] = ~src[k] & BITMAP_LAST_WORD_MASK(nbits);
    }
}

/* and/andnot: "any bit set" is taken over whole words, tails included. */
static int slow_bitmap_and(qref_ulong *dst, const qref_ulong *a,
                           const qref_ulong *b, qref_long nbits)
{
    qref_long k, n = BITS_TO_LONGS(nbits);
    qref_ulong any = 0;

    for (k = 0; k < n; k++) {
        qref_ulong w = a[k] & b[k];

        dst[k] = w;
        any |= w;
    }
    return any != 0;
}

static int slow_bitmap_andnot(qref_ulong *dst, const qref_ulong *a,
                              const qref_ulong *b, qref_long nbits)
{
    qref_long k, n = BITS_TO_LONGS(nbits);
    qref_ulong any = 0;

    for (k = 0; k < n; k++) {
        qref_ulong w = a[k] & ~b[k];

        dst[k] = w;
        any |= w;
    }
    return any != 0;
}

static void slow_bitmap_or(qref_ulong *dst, const qref_ulong *a,
                           const qref_ulong *b, qref_long nbits)
{
    qref_long k, n = BITS_TO_LONGS(nbits);

    for (k = 0; k < n; k++) {
        dst[k] = a[k] | b[k];
    }
}

static void slow_bitmap_xor(qref_ulong *dst, const qref_ulong *a,
                            const qref_ulong *b, qref_long nbits)
{
    qref_long k, n = BITS_TO_LONGS(nbits);

    for (k = 0; k < n; k++) {
        dst[k] = a[k] ^ b[k];
    }
}

static qref_long slow_bitmap_count_one(const qref_ulong *map, qref_long nbits)
{
    qref_long k, lim = FULL_WORDS(nbits), count = 0;

    for (k = 0; k < lim; k++) {
        count += word_ctpop(map[k]);
    }
    if (HAS_PARTIAL(nbits)) {
        count += word_ctpop(map[k] & BITMAP_LAST_WORD_MASK(nbits));
    }
    return count;
}

/*
 * include/qemu/bitmap.h inline helpers.  Each takes a one-word path when
 * small_nbits(nbits), i.e. nbits <= BPL, with no nbits > 0 guard.
 */

/* zero: one word, or BITS_TO_LONGS whole words (tail cleared). */
/*
 * Allocation (bitmap.h bitmap_new, bitmap_zero_extend).  glib gives NULL for
 * zero elements and aborts when memory runs out; so do these.  Words that
 * the reallocation adds are zeroed here, where glib leaves them
 * uninitialized: only bits past new_nbits in the last word can show it, and
 * the model zeroes them too.
 */
qref_ulong *bitmap_new(qref_long nbits)
{
    qref_ulong nelem = BITS_TO_LONGS(nbits);
    qref_ulong *map;

    if (nelem == 0) {
        return NULL;
    }
    map = qref_map_new(nelem);
    return map;
}

qref_ulong *bitmap_zero_extend(qref_ulong *old, qref_long old_nbits, qref_long new_nbits)
{
    qref_ulong old_nelem = old ? BITS_TO_LONGS(old_nbits) : 0;
    qref_ulong new_nelem = BITS_TO_LONGS(new_nbits);
    qref_ulong *map = NULL;

    if (new_nelem == 0) {
        qref_map_free(old);
    } else {
        map = qref_map_resize(old, old_nelem, new_nelem);
        if (new_nelem > old_nelem) {
            memset(map + old_nelem, 0, (new_nelem - old_nelem) * WORD_BYTES);
        }
    }
    bitmap_clear(map, old_nbits, new_nbits - old_nbits);
    return map;
}

void qref_bitmap_free(qref_ulong *map)
{
    qref_map_free(map);
}

void bitmap_zero(qref_ulong *dst, qref_long nbits)
{
    if (small_nbits(nbits)) {
        *dst = 0;
    } else {
        memset(dst, 0, BITS_TO_LONGS(nbits) * WORD_BYTES);
    }
}

/* fill: ones up to nbits; the last word is exactly its mask (tail clear). */
void bitmap_fill(qref_ulong *dst, qref_long nbits)
{
    size_t nlongs = BITS_TO_LONGS(nbits);

    if (!small_nbits(nbits)) {
        memset(dst, 0xff, (nlongs - 1) * WORD_BYTES);
    }
    dst[nlongs - 1] = BITMAP_LAST_WORD_MASK(nbits);
}

/* copy: whole words, tail bits travel (memmove: dst may be src). */
static void copy_words(qref_ulong *dst, const qref_ulong *src, qref_long nbits)
{
    if (small_nbits(nbits)) {
        *dst = *src;
    } else {
        memmove(dst, src, BITS_TO_LONGS(nbits) * WORD_BYTES);
    }
}

void bitmap_copy(qref_ulong *dst, const qref_ulong *src, qref_long nbits)
{
    copy_words(dst, src, nbits);
}

int bitmap_and(qref_ulong *dst, const qref_ulong *src1,
               const qref_ulong *src2, qref_long nbits)
{
    if (small_nbits(nbits)) {
        qref_ulong w = *src1 & *src2;

        *dst = w;
        return w != 0;
    }
    return slow_bitmap_and(dst, src1, src2, nbits);
}

void bitmap_or(qref_ulong *dst, const qref_ulong *src1,
               const qref_ulong *src2, qref_long nbits)
{
    if (small_nbits(nbits)) {
        *dst = *src1 | *src2;
    } else {
        slow_bitmap_or(dst, src1, src2, nbits);
    }
}

void bitmap_xor(qref_ulong *dst, const qref_ulong *src1,
                const qref_ulong *src2, qref_long nbits)
{
    if (small_nbits(nbits)) {
        *dst = *src1 ^ *src2;
    } else {
        slow_bitmap_xor(dst, src1, src2, nbits);
    }
}

int bitmap_andnot(qref_ulong *dst, const qref_ulong *src1,
                  const qref_ulong *src2, qref_long nbits)
{
    if (small_nbits(nbits)) {
        qref_ulong w = *src1 & ~*src2;

        *dst = w;
        return w != 0;
    }
    return slow_bitmap_andnot(dst, src1, src2, nbits);
}

void bitmap_complement(qref_ulong *dst, const qref_ulong *src,
                       qref_long nbits)
{
    if (small_nbits(nbits)) {
        *dst = ~*src & BITMAP_LAST_WORD_MASK(nbits);
    } else {
        slow_bitmap_complement(dst, src, nbits);
    }
}

int bitmap_equal(const qref_ulong *src1, const qref_ulong *src2,
                 qref_long nbits)
{
    if (small_nbits(nbits)) {
        return !((*src1 ^ *src2) & BITMAP_LAST_WORD_MASK(nbits));
    }
    return slow_bitmap_equal(src1, src2, nbits);
}

int bitmap_empty(const qref_ulong *src, qref_long nbits)
{
    if (small_nbits(nbits)) {
        return !(*src & BITMAP_LAST_WORD_MASK(nbits));
    }
    return slow_bitmap_empty(src, nbits);
}

int bitmap_full(const qref_ulong *src, qref_long nbits)
{
    if (small_nbits(nbits)) {
        return !(~*src & BITMAP_LAST_WORD_MASK(nbits));
    }
    return slow_bitmap_full(src, nbits);
}

int bitmap_intersects(const qref_ulong *src1, const qref_ulong *src2,
                      qref_long nbits)
{
    if (small_nbits(nbits)) {
        return (*src1 & *src2 & BITMAP_LAST_WORD_MASK(nbits)) != 0;
    }
    return slow_bitmap_intersects(src1, src2, nbits);
}

/* count_one: 0 for nbits == 0 (no read), else set bits below nbits. */
static qref_long count_one(const qref_ulong *map, qref_long nbits)
{
    if (nbits == 0) {
        return 0;
    }
    if (small_nbits(nbits)) {
        return word_ctpop(*map & BITMAP_LAST_WORD_MASK(nbits));
    }
    return slow_bitmap_count_one(map, nbits);
}

qref_long bitmap_count_one(const qref_ulong *bitmap, qref_long nbits)
{
    return count_one(bitmap, nbits);
}

/*
 * count_one_with_offset: counts from the word holding offset over
 * offset % BPL + nbits bits, minus the count of the offset % BPL bits
 * below offset in that word.
 */
qref_long bitmap_count_one_with_offset(const qref_ulong *bitmap,
                                       qref_long offset, qref_long nbits)
{
    qref_long aligned = offset / QREF_BITS_PER_LONG * QREF_BITS_PER_LONG;
    qref_long below = offset - aligned;
    const qref_ulong *first = bitmap + aligned / QREF_BITS_PER_LONG;

    return count_one(first, nbits + below) - count_one(first, below);
}

/*
 * util/bitmap.c range operations.  They walk from the word holding start:
 * a first word masked from start, whole words, then a last word masked
 * below start + nr.  nr == 0 touches no word.
 */

/* set/clear: the loop takes every word the range reaches to its end. */
void bitmap_set(qref_ulong *map, qref_long start, qref_long nr)
{
    qref_ulong *p;
    qref_long end;
    int room;
    qref_ulong mask;

    assert(start >= 0 && nr >= 0);
    p = map + BIT_WORD(start);
    end = start + nr;
    room = QREF_BITS_PER_LONG - (int)(start % QREF_BITS_PER_LONG);
    mask = BITMAP_FIRST_WORD_MASK(start);

    while (nr - room >= 0) {
        *p++ |= mask;
        nr -= room;
        room = QREF_BITS_PER_LONG;
        mask = QREF_ULONG_MAX;
    }
    if (nr) {
        *p |= mask & BITMAP_LAST_WORD_MASK(end);
    }
}

void bitmap_clear(qref_ulong *map, qref_long start, qref_long nr)
{
    qref_ulong *p;
    qref_long end;
    int room;
    qref_ulong mask;

    assert(start >= 0 && nr >= 0);
    p = map + BIT_WORD(start);
    end = start + nr;
    room = QREF_BITS_PER_LONG - (int)(start % QREF_BITS_PER_LONG);
    mask = BITMAP_FIRST_WORD_MASK(start);

    while (nr - room >= 0) {
        *p++ &= ~mask;
        nr -= room;
        room = QREF_BITS_PER_LONG;
        mask = QREF_ULONG_MAX;
    }
    if (nr) {
        *p &= ~(mask & BITMAP_LAST_WORD_MASK(end));
    }
}

/*
 * set_atomic: the first word (only if the range goes past it) and the
 * last partial word take a seq-cst atomic OR; whole middle words are plain
 * stores of all ones (relaxed atomic stores here, the same instruction
 * without a C11 data race), followed by a full barrier when no atomic OR
 * came last.
 */
void bitmap_set_atomic(qref_ulong *map, qref_long start, qref_long nr)
{
    qref_ulong *p;
    qref_long end;
    int room;
    qref_ulong mask;

    assert(start >= 0 && nr >= 0);
    p = map + BIT_WORD(start);
    end = start + nr;
    room = QREF_BITS_PER_LONG - (int)(start % QREF_BITS_PER_LONG);
    mask = BITMAP_FIRST_WORD_MASK(start);

    if (nr - room > 0) {
        __atomic_fetch_or(p++, mask, __ATOMIC_SEQ_CST);
        nr -= room;
        room = QREF_BITS_PER_LONG;
        mask = QREF_ULONG_MAX;
    }
    if (room == QREF_BITS_PER_LONG) {
        for (; nr >= QREF_BITS_PER_LONG; nr -= QREF_BITS_PER_LONG) {
            __atomic_store_n(p++, QREF_ULONG_MAX, __ATOMIC_RELAXED);
        }
    }
    if (nr) {
        __atomic_fetch_or(p, mask & BITMAP_LAST_WORD_MASK(end),
                          __ATOMIC_SEQ_CST);
    } else {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
}

/*
 * test_and_clear (the non-atomic one): clears the range, true if any
 * bit of it was set.  As in QEMU, taking the first-word step does NOT
 * reset the mask to all ones, so when start % BPL != 0 and the range ends
 * inside a later word, that last word is masked with first-word-mask &
 * last-word-mask: bits of the last partial word are neither cleared nor
 * reported (e.g. BPL 64, start 60, nr 10 leaves bits 64..69 alone).
 */
bool bitmap_test_and_clear(qref_ulong *map, qref_long start, qref_long nr)
{
    qref_ulong *p;
    qref_long end;
    int room;
    qref_ulong mask;
    bool dirty = false;

    assert(start >= 0 && nr >= 0);
    p = map + BIT_WORD(start);
    end = start + nr;
    room = QREF_BITS_PER_LONG - (int)(start % QREF_BITS_PER_LONG);
    mask = BITMAP_FIRST_WORD_MASK(start);

    if (nr - room > 0) {
        dirty |= (*p & mask) != 0;
        *p++ &= ~mask;
        nr -= room;
        room = QREF_BITS_PER_LONG;
        /* mask deliberately kept: QEMU does not reset it here */
    }
    if (room == QREF_BITS_PER_LONG) {
        for (; nr >= QREF_BITS_PER_LONG; nr -= QREF_BITS_PER_LONG, p++) {
            if (*p) {
                dirty = true;
                *p = 0;
            }
        }
    }
    if (nr) {
        mask &= BITMAP_LAST_WORD_MASK(end);
        dirty |= (*p & mask) != 0;
        *p &= ~mask;
    }
    return dirty;
}

/*
 * test_and_clear_atomic: same walk as set_atomic; first and last partial
 * words use a seq-cst fetch-and, whole words are exchanged with 0 only when
 * a (relaxed) read sees them non-zero; a full barrier ends a walk that
 * ended on a whole word and found nothing.
 */
bool bitmap_test_and_clear_atomic(qref_ulong *map, qref_long start,
                                  qref_long nr)
{
    qref_ulong *p;
    qref_long end;
    int room;
    qref_ulong mask;
    qref_ulong dirty = 0;

    assert(start >= 0 && nr >= 0);
    p = map + BIT_WORD(start);
    end = start + nr;
    room = QREF_BITS_PER_LONG - (int)(start % QREF_BITS_PER_LONG);
    mask = BITMAP_FIRST_WORD_MASK(start);

    if (nr - room > 0) {
        dirty |= __atomic_fetch_and(p++, ~mask, __ATOMIC_SEQ_CST) & mask;
        nr -= room;
        room = QREF_BITS_PER_LONG;
        mask = QREF_ULONG_MAX;
    }
    if (room == QREF_BITS_PER_LONG) {
        for (; nr >= QREF_BITS_PER_LONG; nr -= QREF_BITS_PER_LONG, p++) {
            if (__atomic_load_n(p, __ATOMIC_RELAXED)) {
                dirty |= __atomic_exchange_n(p, 0, __ATOMIC_SEQ_CST);
            }
        }
    }
    if (nr) {
        mask &= BITMAP_LAST_WORD_MASK(end);
        dirty |= __atomic_fetch_and(p, ~mask, __ATOMIC_SEQ_CST) & mask;
    } else if (!dirty) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
    return dirty != 0;
}

/*
 * copy_and_clear_atomic: exchanges whole source words with 0 while nr > 0,
 * so the bits after nr in the last source word are cleared (and copied).
 */
void bitmap_copy_and_clear_atomic(qref_ulong *dst, qref_ulong *src,
                                  qref_long nr)
{
    for (; nr > 0; nr -= QREF_BITS_PER_LONG) {
        *dst++ = __atomic_exchange_n(src++, 0, __ATOMIC_SEQ_CST);
    }
}

/*
 * find_next_zero_area: first zero bit from start, rounded up to the
 * alignment; if the nr bits from there pass size, returns index + nr (more
 * than size) as the failure value; a set bit inside restarts after it.
 */
qref_ulong bitmap_find_next_zero_area(qref_ulong *map, qref_ulong size,
                                      qref_ulong start, qref_ulong nr,
                                      qref_ulong align_mask)
{
    for (;;) {
        qref_ulong index = find_next_zero_bit(map, size, start);
        qref_ulong end, hit;

        index = (index + align_mask) & ~align_mask;
        end = index + nr;
        if (end > size) {
            return end;
        }
        hit = find_next_bit(map, end, index);
        if (hit >= end) {
            return index;
        }
        start = hit + 1;
    }
}

/*
 * to_le/from_le: BITS_TO_LONGS(nbits) whole words; a plain copy on a
 * little-endian host, each word byte-swapped on a big-endian one.
 */
static void bitmap_to_from_le(qref_ulong *dst, const qref_ulong *src,
                              qref_long nbits)
{
    qref_long len = BITS_TO_LONGS(nbits);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    qref_long k;

    for (k = 0; k < len; k++) {
# if QREF_BITS_PER_LONG == 32
        dst[k] = __builtin_bswap32(src[k]);
# else
        dst[k] = __builtin_bswap64(src[k]);
# endif
    }
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memmove(dst, src, (size_t)len * WORD_BYTES);
#else
# error "unknown host byte order"
#endif
}

void bitmap_to_le(qref_ulong *dst, const qref_ulong *src, qref_long nbits)
{
    bitmap_to_from_le(dst, src, nbits);
}

void bitmap_from_le(qref_ulong *dst, const qref_ulong *src, qref_long nbits)
{
    bitmap_to_from_le(dst, src, nbits);
}

/*
 * copy_with_src_offset: dst bits [0, nbits) = src bits [offset, offset +
 * nbits).  offset % BPL == 0 is bitmap_copy(dst, src + offset / BPL, nbits)
 * (whole words, tails travel; nbits == 0 still copies one word).  Otherwise
 * every dst word written is written whole: the last one gets zeros past
 * nbits.  A whole dst word reads two src words.
 */
void bitmap_copy_with_src_offset(qref_ulong *dst, const qref_ulong *src,
                                 qref_ulong offset, qref_ulong nbits)
{
    qref_ulong shift, low, high, last;

    src += BIT_WORD(offset);
    shift = offset % QREF_BITS_PER_LONG;
    if (!shift) {
        copy_words(dst, src, (qref_long)nbits);
        return;
    }
    low = ((qref_ulong)1 << shift) - 1;
    high = ~low;

    for (; nbits >= QREF_BITS_PER_LONG; nbits -= QREF_BITS_PER_LONG) {
        *dst = (*src & high) >> shift;
        *dst |= (src[1] & low) << (QREF_BITS_PER_LONG - shift);
        dst++;
        src++;
    }
    if (nbits > QREF_BITS_PER_LONG - shift) {
        *dst = (*src & high) >> shift;
        nbits -= QREF_BITS_PER_LONG - shift;
        last = ((qref_ulong)1 << nbits) - 1;
        *dst |= (src[1] & last) << (QREF_BITS_PER_LONG - shift);
    } else if (nbits) {
        last = ((qref_ulong)1 << nbits) - 1;
        *dst = (*src >> shift) & last;
    }
}

/*
 * copy_with_dst_offset: dst bits [shift, shift + nbits) = src bits
 * [0, nbits).  shift % BPL == 0 is bitmap_copy(dst + shift / BPL, src,
 * nbits).  Otherwise the first dst word keeps only its bits below
 * shift % BPL (even when nbits == 0 or the range ends inside it), and each
 * following dst word reached is overwritten whole, zeros past the range.
 */
void bitmap_copy_with_dst_offset(qref_ulong *dst, const qref_ulong *src,
                                 qref_ulong shift, qref_ulong nbits)
{
    qref_ulong low, high, last;

    dst += BIT_WORD(shift);
    shift %= QREF_BITS_PER_LONG;
    if (!shift) {
        copy_words(dst, src, (qref_long)nbits);
        return;
    }
    low = ((qref_ulong)1 << (QREF_BITS_PER_LONG - shift)) - 1;
    high = ~low;

    *dst &= ((qref_ulong)1 << shift) - 1;
    for (; nbits >= QREF_BITS_PER_LONG; nbits -= QREF_BITS_PER_LONG) {
        *dst |= (*src & low) << shift;
        dst[1] = (*src & high) >> (QREF_BITS_PER_LONG - shift);
        dst++;
        src++;
    }
    if (nbits > QREF_BITS_PER_LONG - shift) {
        *dst |= (*src & low) << shift;
        nbits -= QREF_BITS_PER_LONG - shift;
        last = (((qref_ulong)1 << nbits) - 1) << (QREF_BITS_PER_LONG - shift);
        dst[1] = (*src & last) >> (QREF_BITS_PER_LONG - shift);
    } else if (nbits) {
        last = ((qref_ulong)1 << nbits) - 1;
        *dst |= (*src & last) << shift;
    }
}
