/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Single-bit operations and bit searches of QEMU's include/qemu/bitops.h
 * and util/bitops.c, on words of QREF_BITS_PER_LONG bits.
 */

#include "qemu_ref.h"

/* ctzl/clzl of QEMU's host-utils.h; callers never pass 0. */
static inline int word_ctz(qref_ulong w)
{
#if QREF_BITS_PER_LONG == 32
    return __builtin_ctz((uint32_t)w);
#else
    return __builtin_ctzll((uint64_t)w);
#endif
}

static inline int word_clz(qref_ulong w)
{
#if QREF_BITS_PER_LONG == 32
    return __builtin_clz((uint32_t)w);
#else
    return __builtin_clzll((uint64_t)w);
#endif
}

int qref_bits_per_long(void)
{
    return QREF_BITS_PER_LONG;
}

/* set_bit: plain read-modify-write of the bit's word. */
void set_bit(qref_long nr, qref_ulong *addr)
{
    addr[BIT_WORD(nr)] |= BIT_MASK(nr);
}

/* set_bit_atomic: qatomic_or, i.e. a sequentially consistent fetch-or. */
void set_bit_atomic(qref_long nr, qref_ulong *addr)
{
    __atomic_fetch_or(&addr[BIT_WORD(nr)], BIT_MASK(nr), __ATOMIC_SEQ_CST);
}

void clear_bit(qref_long nr, qref_ulong *addr)
{
    addr[BIT_WORD(nr)] &= ~BIT_MASK(nr);
}

/* clear_bit_atomic: qatomic_and with the inverted mask. */
void clear_bit_atomic(qref_long nr, qref_ulong *addr)
{
    __atomic_fetch_and(&addr[BIT_WORD(nr)], ~BIT_MASK(nr), __ATOMIC_SEQ_CST);
}

void change_bit(qref_long nr, qref_ulong *addr)
{
    addr[BIT_WORD(nr)] ^= BIT_MASK(nr);
}

/* The test_and_* helpers are not atomic in QEMU: read, store, old bit. */
int test_and_set_bit(qref_long nr, qref_ulong *addr)
{
    qref_ulong *word = addr + BIT_WORD(nr);
    qref_ulong old = *word;

    *word = old | BIT_MASK(nr);
    return (old & BIT_MASK(nr)) != 0;
}

int test_and_clear_bit(qref_long nr, qref_ulong *addr)
{
    qref_ulong *word = addr + BIT_WORD(nr);
    qref_ulong old = *word;

    *word = old & ~BIT_MASK(nr);
    return (old & BIT_MASK(nr)) != 0;
}

int test_and_change_bit(qref_long nr, qref_ulong *addr)
{
    qref_ulong *word = addr + BIT_WORD(nr);
    qref_ulong old = *word;

    *word = old ^ BIT_MASK(nr);
    return (old & BIT_MASK(nr)) != 0;
}

int test_bit(qref_long nr, const qref_ulong *addr)
{
    return (int)((addr[BIT_WORD(nr)] >> (nr & (QREF_BITS_PER_LONG - 1))) & 1);
}

/*
 * find_first_bit: reads whole words from word 0 while their first bit is
 * below size; a hit past size (in the last word's tail) answers size.
 */
qref_ulong find_first_bit(const qref_ulong *addr, qref_ulong size)
{
    qref_ulong base;

    for (base = 0; base < size; base += QREF_BITS_PER_LONG) {
        qref_ulong w = addr[BIT_WORD(base)];

        if (w) {
            base += word_ctz(w);
            return base < size ? base : size;
        }
    }
    return size;
}

qref_ulong find_first_zero_bit(const qref_ulong *addr, qref_ulong size)
{
    return find_next_zero_bit(addr, size, 0);
}

/*
 * find_next_bit / find_next_zero_bit: first set (clear) bit in
 * [offset, size), else size; offset >= size answers size without a read.
 * Only the words holding bits of [offset, size) are read; bits below offset
 * and from size on are masked out, so tail bits never matter.
 */
static qref_ulong find_next(const qref_ulong *addr, qref_ulong size,
                            qref_ulong offset, qref_ulong invert)
{
    qref_ulong base = offset - offset % QREF_BITS_PER_LONG;
    qref_ulong w;

    if (offset >= size) {
        return size;
    }
    /* first word: drop the bits below offset */
    w = (addr[BIT_WORD(offset)] ^ invert) & BITMAP_FIRST_WORD_MASK(offset);
    for (;;) {
        if (size - base < QREF_BITS_PER_LONG) {
            /* partial last word: drop the bits from size on */
            w &= BITMAP_LAST_WORD_MASK(size);
        }
        if (w) {
            return base + word_ctz(w);
        }
        if (size - base <= QREF_BITS_PER_LONG) {
            return size;
        }
        base += QREF_BITS_PER_LONG;
        w = addr[BIT_WORD(base)] ^ invert;
    }
}

qref_ulong find_next_bit(const qref_ulong *addr, qref_ulong size,
                         qref_ulong offset)
{
    return find_next(addr, size, offset, 0);
}

qref_ulong find_next_zero_bit(const qref_ulong *addr, qref_ulong size,
                              qref_ulong offset)
{
    return find_next(addr, size, offset, QREF_ULONG_MAX);
}

/* find_last_bit: highest set bit below size, else size; tail masked. */
qref_ulong find_last_bit(const qref_ulong *addr, qref_ulong size)
{
    qref_ulong words = BIT_WORD(size);
    qref_ulong w;

    if (size % QREF_BITS_PER_LONG) {
        w = addr[words] & BITMAP_LAST_WORD_MASK(size);
        if (w) {
            return words * QREF_BITS_PER_LONG
                   + (QREF_BITS_PER_LONG - 1 - word_clz(w));
        }
    }
    while (words) {
        w = addr[--words];
        if (w) {
            return words * QREF_BITS_PER_LONG
                   + (QREF_BITS_PER_LONG - 1 - word_clz(w));
        }
    }
    return size;
}
