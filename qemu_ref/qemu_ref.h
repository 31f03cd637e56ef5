/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * recvmap C reference: QEMU's bitmap/bitops layer (include/qemu/bitops.h,
 * include/qemu/bitmap.h, util/bitops.c, util/bitmap.c), rewritten.
 *
 * The ABI
 * - Every exported function keeps QEMU's name, argument order and C
 *   signature, with `unsigned long` spelled qref_ulong and `long` spelled
 *   qref_long.  A native build makes them unsigned long / long; a build with
 *   -DQREF_BITS_PER_LONG=32 makes them uint32_t / int32_t, so a 64-bit host
 *   runs a 32-bit host's bitmap words.  `int` and `bool` results stay as in
 *   QEMU (bitmap_and returns int, bitmap_test_and_clear returns bool).
 * - Helpers that are `static inline` in QEMU's headers (set_bit, test_bit,
 *   find_first_bit, bitmap_zero ... bitmap_count_one_with_offset) are
 *   exported here as real functions with the same signature.
 * - Each exported function is declared on ONE line starting with
 *   `QREF_API `: the Python loader reads argument and return types from
 *   these lines, so this header is the only statement of the ABI.
 * - qref_bits_per_long() tells which word width a library was built for.
 * - Allocation: bitmap_new and bitmap_zero_extend return a new array of
 *   BITS_TO_LONGS(n) words, n being their LAST argument (NULL for 0 words,
 *   as glib's g_new0 / g_renew give).  bitmap_zero_extend reallocates its
 *   first argument, which is consumed.  Such arrays are released with
 *   qref_bitmap_free, which is ours (QEMU calls g_free); the loader relies
 *   on these three rules for every function returning `qref_ulong *`.
 * - Guard pages (ours): the maps this library allocates itself (bitmap_new,
 *   bitmap_zero_extend, the ram layer's receivedmap and bmap) come from
 *   calloc, or, after qref_set_guard(1: after, 2: before; alloc.h), from a
 *   mapping of their own that touches an inaccessible page right after their
 *   last word (or before their first): a read one word past such a map
 *   faults on every run, as it does past the arrays the caller hands in.
 *
 * Macros: the word width is QREF_BITS_PER_LONG (QEMU's BITS_PER_LONG under
 * a prefix, because system headers may define BITS_PER_LONG).  The other
 * macros use QEMU's names (BIT_WORD, BIT_MASK, BITS_TO_LONGS,
 * BITMAP_FIRST_WORD_MASK, BITMAP_LAST_WORD_MASK, small_nbits); a clashing
 * definition elsewhere fails the -Werror build instead of being replaced.
 * They compute in qref_ulong, so they match QEMU for the emulated width.
 *
 * Domain: callers must stay inside QEMU's domain; nothing here checks it,
 * exactly as QEMU does not.  In particular:
 * - the inline whole-bitmap helpers need nbits > 0 (QEMU touches word 0,
 *   and bitmap_fill(dst, 0) writes the word before dst); bitmap_count_one
 *   and bitmap_count_one_with_offset accept nbits == 0;
 * - no bit index or word past the allocation of any array argument, and no
 *   negative bit number (QEMU's BIT_WORD divides as unsigned);
 * - start >= 0 and nr >= 0 in bitmap_set, bitmap_set_atomic, bitmap_clear,
 *   bitmap_test_and_clear and bitmap_test_and_clear_atomic: these keep
 *   QEMU's assert and abort otherwise (asserts are never compiled out);
 * - bitmap_find_next_zero_area needs align_mask + 1 to be a power of two;
 * - array arguments are either the same array or disjoint.
 */
#ifndef QREF_QEMU_REF_H
#define QREF_QEMU_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef QREF_BITS_PER_LONG
# if defined(__SIZEOF_LONG__) && __SIZEOF_LONG__ == 4
#  define QREF_BITS_PER_LONG 32
# else
#  define QREF_BITS_PER_LONG 64
# endif
#endif

#if QREF_BITS_PER_LONG != 32 && QREF_BITS_PER_LONG != 64
# error "QREF_BITS_PER_LONG must be 32 or 64"
#elif defined(__SIZEOF_LONG__) && QREF_BITS_PER_LONG == __SIZEOF_LONG__ * 8
typedef unsigned long qref_ulong;
typedef long qref_long;
#elif QREF_BITS_PER_LONG == 32
/* Another host's unsigned long, emulated with a fixed-width type. */
typedef uint32_t qref_ulong;
typedef int32_t qref_long;
#else
typedef uint64_t qref_ulong;
typedef int64_t qref_long;
#endif

#define QREF_API __attribute__((visibility("default")))

#define QREF_ULONG_MAX ((qref_ulong)~(qref_ulong)0)

/* include/qemu/bitops.h */
#define BIT_MASK(nr)            ((qref_ulong)1 << ((nr) % QREF_BITS_PER_LONG))
#define BIT_WORD(nr)            ((nr) / QREF_BITS_PER_LONG)
/* QEMU's BITS_PER_LONG is a sizeof expression: these compare and divide as unsigned. */
#define BITS_TO_LONGS(nr)       (((qref_ulong)(nr) + QREF_BITS_PER_LONG - 1) / QREF_BITS_PER_LONG)

/* include/qemu/bitmap.h */
#define BITMAP_FIRST_WORD_MASK(start) \
    (QREF_ULONG_MAX << ((start) & (QREF_BITS_PER_LONG - 1)))
#define BITMAP_LAST_WORD_MASK(nbits) \
    (QREF_ULONG_MAX >> (-(nbits) & (QREF_BITS_PER_LONG - 1)))
#define small_nbits(nbits)      ((qref_ulong)(nbits) <= QREF_BITS_PER_LONG)

/* Identity of the library: the word width it was built for. */
QREF_API int qref_bits_per_long(void);

/* include/qemu/bitops.h */
QREF_API void set_bit(qref_long nr, qref_ulong *addr);
QREF_API void set_bit_atomic(qref_long nr, qref_ulong *addr);
QREF_API void clear_bit(qref_long nr, qref_ulong *addr);
QREF_API void clear_bit_atomic(qref_long nr, qref_ulong *addr);
QREF_API void change_bit(qref_long nr, qref_ulong *addr);
QREF_API int test_and_set_bit(qref_long nr, qref_ulong *addr);
QREF_API int test_and_clear_bit(qref_long nr, qref_ulong *addr);
QREF_API int test_and_change_bit(qref_long nr, qref_ulong *addr);
QREF_API int test_bit(qref_long nr, const qref_ulong *addr);
QREF_API qref_ulong find_first_bit(const qref_ulong *addr, qref_ulong size);
QREF_API qref_ulong find_first_zero_bit(const qref_ulong *addr, qref_ulong size);

/* util/bitops.c */
QREF_API qref_ulong find_next_bit(const qref_ulong *addr, qref_ulong size, qref_ulong offset);
QREF_API qref_ulong find_next_zero_bit(const qref_ulong *addr, qref_ulong size, qref_ulong offset);
QREF_API qref_ulong find_last_bit(const qref_ulong *addr, qref_ulong size);

/* include/qemu/bitmap.h */
QREF_API qref_ulong *bitmap_new(qref_long nbits);
QREF_API qref_ulong *bitmap_zero_extend(qref_ulong *old, qref_long old_nbits, qref_long new_nbits);
/* Ours, not QEMU's: releases an array of bitmap_new / bitmap_zero_extend (QEMU: g_free). */
QREF_API void qref_bitmap_free(qref_ulong *map);
/* Ours: where the maps allocated from now on sit (QREF_GUARD_* of alloc.h: 0 calloc,
 * 1 after, 2 before); the previous side. */
QREF_API int qref_set_guard(int side);
QREF_API void bitmap_zero(qref_ulong *dst, qref_long nbits);
QREF_API void bitmap_fill(qref_ulong *dst, qref_long nbits);
QREF_API void bitmap_copy(qref_ulong *dst, const qref_ulong *src, qref_long nbits);
QREF_API int bitmap_and(qref_ulong *dst, const qref_ulong *src1, const qref_ulong *src2, qref_long nbits);
QREF_API void bitmap_or(qref_ulong *dst, const qref_ulong *src1, const qref_ulong *src2, qref_long nbits);
QREF_API void bitmap_xor(qref_ulong *dst, const qref_ulong *src1, const qref_ulong *src2, qref_long nbits);
QREF_API int bitmap_andnot(qref_ulong *dst, const qref_ulong *src1, const qref_ulong *src2, qref_long nbits);
QREF_API void bitmap_complement(qref_ulong *dst, const qref_ulong *src, qref_long nbits);
QREF_API int bitmap_equal(const qref_ulong *src1, const qref_ulong *src2, qref_long nbits);
QREF_API int bitmap_empty(const qref_ulong *src, qref_long nbits);
QREF_API int bitmap_full(const qref_ulong *src, qref_long nbits);
QREF_API int bitmap_intersects(const qref_ulong *src1, const qref_ulong *src2, qref_long nbits);
QREF_API qref_long bitmap_count_one(const qref_ulong *bitmap, qref_long nbits);
QREF_API qref_long bitmap_count_one_with_offset(const qref_ulong *bitmap, qref_long offset, qref_long nbits);

/* util/bitmap.c */
QREF_API void bitmap_set(qref_ulong *map, qref_long start, qref_long nr);
QREF_API void bitmap_set_atomic(qref_ulong *map, qref_long start, qref_long nr);
QREF_API void bitmap_clear(qref_ulong *map, qref_long start, qref_long nr);
QREF_API bool bitmap_test_and_clear(qref_ulong *map, qref_long start, qref_long nr);
QREF_API bool bitmap_test_and_clear_atomic(qref_ulong *map, qref_long start, qref_long nr);
QREF_API void bitmap_copy_and_clear_atomic(qref_ulong *dst, qref_ulong *src, qref_long nr);
QREF_API qref_ulong bitmap_find_next_zero_area(qref_ulong *map, qref_ulong size, qref_ulong start, qref_ulong nr, qref_ulong align_mask);
QREF_API void bitmap_to_le(qref_ulong *dst, const qref_ulong *src, qref_long nbits);
QREF_API void bitmap_from_le(qref_ulong *dst, const qref_ulong *src, qref_long nbits);
QREF_API void bitmap_copy_with_src_offset(qref_ulong *dst, const qref_ulong *src, qref_ulong offset, qref_ulong nbits);
QREF_API void bitmap_copy_with_dst_offset(qref_ulong *dst, const qref_ulong *src, qref_ulong shift, qref_ulong nbits);

#endif /* QREF_QEMU_REF_H */
