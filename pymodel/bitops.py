# SPDX-License-Identifier: GPL-2.0-or-later
"""Single bits and searches: QEMU's include/qemu/bitops.h and util/bitops.c.

Bit nr of a word array is bit nr % BITS_PER_LONG of word nr / BITS_PER_LONG. The bit
helpers take a C ``long`` nr; QEMU divides it as an unsigned long (BIT_WORD), so the bit
touched is nr mod 2**BITS_PER_LONG, and a negative nr lands far past any real map. The
search functions take ``unsigned long`` size and offset and return size when nothing is
found; they read the words of bits [0, size) at most.

Release rules (``pymodel.releases``): clear_bit_atomic exists from v9.0.0; no other rule
of these functions changed from v2.12.0 to v10.1.x.
"""

from __future__ import annotations

from .errors import PreconditionError, check_long, check_ulong, check_words, checked
from .words import Words

__all__ = [
    "change_bit",
    "clear_bit",
    "clear_bit_atomic",
    "find_first_bit",
    "find_first_zero_bit",
    "find_last_bit",
    "find_next_bit",
    "find_next_zero_bit",
    "set_bit",
    "set_bit_atomic",
    "test_and_change_bit",
    "test_and_clear_bit",
    "test_and_set_bit",
    "test_bit",
]


def _bit(function: str, nr: int, addr: Words) -> int:
    """The bit QEMU touches for bit number nr; its word BIT_WORD(nr) must be allocated."""
    layout = addr.layout
    check_long(function, layout, "nr", nr)
    bit = nr & layout.ulong_max
    if bit >= addr.nbits:
        word = bit // layout.bits_per_long
        check_words(function, "addr", addr, word, word + 1)
    return bit


@checked
def set_bit(nr: int, addr: Words) -> None:
    """Set bit nr (include/qemu/bitops.h set_bit: word |= BIT_MASK(nr))."""
    bit = _bit("set_bit", nr, addr)
    addr.set_range(bit, bit + 1)


@checked
def set_bit_atomic(nr: int, addr: Words) -> None:
    """Set bit nr with an atomic OR (bitops.h set_bit_atomic); same memory as set_bit."""
    bit = _bit("set_bit_atomic", nr, addr)
    addr.set_range(bit, bit + 1)


@checked
def clear_bit(nr: int, addr: Words) -> None:
    """Clear bit nr (bitops.h clear_bit: word &= ~BIT_MASK(nr))."""
    bit = _bit("clear_bit", nr, addr)
    addr.clear_range(bit, bit + 1)


@checked
def clear_bit_atomic(nr: int, addr: Words) -> None:
    """Clear bit nr with an atomic AND (bitops.h clear_bit_atomic); same memory as clear_bit."""
    bit = _bit("clear_bit_atomic", nr, addr)
    addr.clear_range(bit, bit + 1)


@checked
def change_bit(nr: int, addr: Words) -> None:
    """Toggle bit nr (bitops.h change_bit: word ^= BIT_MASK(nr))."""
    bit = _bit("change_bit", nr, addr)
    addr.insert(bit, bit + 1, addr.extract(bit, bit + 1) ^ 1)


@checked
def test_bit(nr: int, addr: Words) -> int:
    """Bit nr as 0 or 1 (bitops.h test_bit)."""
    bit = _bit("test_bit", nr, addr)
    return addr.extract(bit, bit + 1)


@checked
def test_and_set_bit(nr: int, addr: Words) -> int:
    """Set bit nr, return its old value 0/1 (bitops.h test_and_set_bit)."""
    bit = _bit("test_and_set_bit", nr, addr)
    old = addr.extract(bit, bit + 1)
    addr.set_range(bit, bit + 1)
    return old


@checked
def test_and_clear_bit(nr: int, addr: Words) -> int:
    """Clear bit nr, return its old value 0/1 (bitops.h test_and_clear_bit)."""
    bit = _bit("test_and_clear_bit", nr, addr)
    old = addr.extract(bit, bit + 1)
    addr.clear_range(bit, bit + 1)
    return old


@checked
def test_and_change_bit(nr: int, addr: Words) -> int:
    """Toggle bit nr, return its old value 0/1 (bitops.h test_and_change_bit)."""
    bit = _bit("test_and_change_bit", nr, addr)
    old = addr.extract(bit, bit + 1)
    addr.insert(bit, bit + 1, old ^ 1)
    return old


def _scan(function: str, addr: Words, size: int, offset: int = 0) -> None:
    """Domain of a search: unsigned long size and offset; when offset < size the scan
    may read every word from BIT_WORD(offset) up to the one holding bit size - 1."""
    layout = addr.layout
    check_ulong(function, layout, "size", size)
    check_ulong(function, layout, "offset", offset)
    if offset < size:
        bpl = layout.bits_per_long
        check_words(function, "addr", addr, offset // bpl, -(-size // bpl))


@checked
def find_next_bit(addr: Words, size: int, offset: int) -> int:
    """First set bit in [offset, size), else size (util/bitops.c find_next_bit).

    offset >= size returns size at once without reading memory.
    """
    _scan("find_next_bit", addr, size, offset)
    return size if offset >= size else addr.find_set(offset, size)


@checked
def find_next_zero_bit(addr: Words, size: int, offset: int) -> int:
    """First clear bit in [offset, size), else size (util/bitops.c find_next_zero_bit).

    offset >= size returns size at once without reading memory.
    """
    _scan("find_next_zero_bit", addr, size, offset)
    return size if offset >= size else addr.find_clear(offset, size)


@checked
def find_first_bit(addr: Words, size: int) -> int:
    """First set bit in [0, size), else size (bitops.h find_first_bit).

    A set bit past size in the last word also yields size (QEMU returns min(bit, size)).
    Its loop steps ``result += BITS_PER_LONG`` while result < size, which would wrap past
    ULONG_MAX for size > ULONG_MAX - BITS_PER_LONG + 1: that size is outside the domain.
    """
    _scan("find_first_bit", addr, size)
    layout = addr.layout
    if size > layout.ulong_max - layout.bits_per_long + 1:
        raise PreconditionError(
            "find_first_bit",
            "size",
            "size <= ULONG_MAX - BITS_PER_LONG + 1 (bitops.h find_first_bit: "
            "result += BITS_PER_LONG must not wrap)",
        )
    return addr.find_set(0, size)


@checked
def find_first_zero_bit(addr: Words, size: int) -> int:
    """First clear bit in [0, size), else size (bitops.h: find_next_zero_bit(addr, size, 0))."""
    _scan("find_first_zero_bit", addr, size)
    return addr.find_clear(0, size)


@checked
def find_last_bit(addr: Words, size: int) -> int:
    """Last set bit in [0, size), else size (util/bitops.c find_last_bit)."""
    _scan("find_last_bit", addr, size)
    last = addr.find_last_set(0, size)
    return size if last < 0 else last
