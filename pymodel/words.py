# SPDX-License-Identifier: GPL-2.0-or-later
"""The memory of a bitmap: an array of C ``unsigned long`` words.

``Words`` keeps the words in one ``bytearray`` in *little-endian bit order*: bit n of the
bitmap is bit n % 8 of byte n // 8. That is exactly the memory image of the word array on a
little-endian host of either word width; a big-endian host stores each word's bytes
reversed, which only ``image()``, ``load_image()`` and ``swap_words()`` need to know.

This module is the only place that knows the byte representation. It offers a few fast
primitives on bit ranges ``[lo, hi)`` (set, clear, find, count, extract/insert as an int,
copy, bitwise combine) that run at memcpy/memcmp speed on large maps: slice assignment
from preallocated 0x00/0xff chunks, chunk comparison with ``bytearray.__eq__`` (a memcmp),
``int.from_bytes`` only on the one chunk that differs. The primitives do not check
QEMU's preconditions; callers (bitops, bitmap) do.

QEMU's macros (include/qemu/bitops.h, include/qemu/bitmap.h) are functions here taking the
layout's BITS_PER_LONG. BITS_PER_LONG is a ``size_t`` in QEMU, so the macros compute in
unsigned long arithmetic; the functions reproduce that for negative ``long`` arguments.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .accel import ACTIVE as _ACCEL

try:
    from zlib import adler32 as _adler32
except ImportError:  # pragma: no cover - CPython built without zlib
    _adler32 = None  # type: ignore[assignment]

# The memory and QEMU's macros: recvmap.pymodel re-exports exactly these. The byte-level
# primitives (apply, copy_bits, swap_words, test) are imported by name where needed.
__all__ = [
    "BITMAP_FIRST_WORD_MASK",
    "BITMAP_LAST_WORD_MASK",
    "BITS_TO_LONGS",
    "BIT_MASK",
    "BIT_WORD",
    "ILP32_BE",
    "ILP32_LE",
    "LP64_BE",
    "LP64_LE",
    "Layout",
    "Words",
    "small_nbits",
]


@dataclass(frozen=True)
class Layout:
    """A host's ``unsigned long``: its width in bits and its byte order."""

    bits_per_long: int
    big_endian: bool
    bytes_per_long: int = field(init=False, repr=False, compare=False)
    long_min: int = field(init=False, repr=False, compare=False)
    long_max: int = field(init=False, repr=False, compare=False)
    ulong_max: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bpl = self.bits_per_long
        if bpl not in (32, 64):
            raise ValueError(f"bits_per_long must be 32 or 64, not {bpl}")
        object.__setattr__(self, "bytes_per_long", bpl // 8)
        object.__setattr__(self, "long_min", -(1 << (bpl - 1)))
        object.__setattr__(self, "long_max", (1 << (bpl - 1)) - 1)
        object.__setattr__(self, "ulong_max", (1 << bpl) - 1)

    @property
    def name(self) -> str:
        """LP64_LE, ILP32_BE, ..."""
        model = "LP64" if self.bits_per_long == 64 else "ILP32"
        return f"{model}_{'BE' if self.big_endian else 'LE'}"

    @property
    def text(self) -> str:
        """``64-bit little-endian``: the layout as messages name it."""
        return f"{self.bits_per_long}-bit {'big' if self.big_endian else 'little'}-endian"


LP64_LE = Layout(64, False)
ILP32_LE = Layout(32, False)
LP64_BE = Layout(64, True)
ILP32_BE = Layout(32, True)


# --- QEMU's macros, computed as C computes them (BITS_PER_LONG is unsigned) ---------------


def BITS_TO_LONGS(nr: int, bpl: int) -> int:
    """DIV_ROUND_UP(nr, BITS_PER_LONG) in unsigned long arithmetic (include/qemu/bitops.h).

    ceil(nr / bpl) for 0 <= nr <= ULONG_MAX - bpl + 1; a negative long wraps first, so
    -bpl < nr < 0 gives 0 and nr <= -bpl gives about ULONG_MAX / bpl.
    """
    return ((nr + bpl - 1) & ((1 << bpl) - 1)) // bpl


def BIT_WORD(nr: int, bpl: int) -> int:
    """Word holding bit nr: nr / BITS_PER_LONG, unsigned (include/qemu/bitops.h)."""
    return (nr & ((1 << bpl) - 1)) // bpl


def BIT_MASK(nr: int, bpl: int) -> int:
    """Mask of bit nr in its word: 1UL << (nr % BITS_PER_LONG) (include/qemu/bitops.h)."""
    return 1 << (nr & (bpl - 1))


def BITMAP_FIRST_WORD_MASK(start: int, bpl: int) -> int:
    """All ones shifted left by start % BITS_PER_LONG (include/qemu/bitmap.h)."""
    full = (1 << bpl) - 1
    return (full << (start & (bpl - 1))) & full


def BITMAP_LAST_WORD_MASK(nbits: int, bpl: int) -> int:
    """Low nbits % BITS_PER_LONG bits; all ones when that is 0 (include/qemu/bitmap.h)."""
    return ((1 << bpl) - 1) >> (-nbits & (bpl - 1))


def small_nbits(nbits: int, bpl: int) -> bool:
    """nbits <= BITS_PER_LONG, compared as unsigned: a negative long is never small."""
    return (nbits & ((1 << bpl) - 1)) <= bpl


# --- byte-level machinery -----------------------------------------------------------------

_CHUNK = 1 << 16  # bytes per chunk of the large-range loops
_CHUNK_BITS = _CHUNK * 8
# Ranges up to this many bits (1 KiB) are handled as one int: one from_bytes costs less
# than the chunk loops (built for 2^28-bit maps) below that; every fuzzed array is smaller.
_SMALL_BITS = 1 << 13
_ZEROS = [bytearray(1 << k) for k in range(17)]  # zero chunks of every power-of-two size
_ONES = [bytearray(b"\xff") * (1 << k) for k in range(17)]
_ZEROS_MV = memoryview(_ZEROS[12])  # 4 KiB patterns: _fill copies the rest from the range itself
_ONES_MV = memoryview(_ONES[12])
_FILL = 1 << 18  # largest copy of a whole-range store


def _typecode(itemsize: int) -> str:
    for code in ("I", "L", "Q"):
        if array(code).itemsize == itemsize:
            return code
    raise RuntimeError(f"no array typecode of {itemsize} bytes")  # pragma: no cover


_TYPECODE = {4: _typecode(4), 8: _typecode(8)}


def _lowbit(v: int) -> int:
    """Index of the least significant set bit of v > 0."""
    return (v & -v).bit_length() - 1


def _extract(data: bytearray, lo: int, hi: int) -> int:
    """Bits [lo, hi) of data as an int (bit lo becomes bit 0)."""
    if hi <= lo:
        return 0
    v = int.from_bytes(memoryview(data)[lo >> 3 : (hi + 7) >> 3], "little")
    if (lo | hi) & 7:
        return (v >> (lo & 7)) & ((1 << (hi - lo)) - 1)
    return v  # whole bytes: nothing to shift or mask


def _fit(value: int, n: int) -> int:
    """``value`` cut to its low ``n`` bits (no mask is built when it already fits)."""
    if value < 0 or value.bit_length() > n:
        return value & ((1 << n) - 1)
    return value


def _insert(data: bytearray, lo: int, hi: int, value: int) -> None:
    """Store the low hi - lo bits of value into bits [lo, hi) of data."""
    n = hi - lo
    if n <= 0:
        return
    value = _fit(value, n)
    b0, b1 = lo >> 3, (hi + 7) >> 3
    shift = lo & 7
    if shift or hi & 7:
        with memoryview(data) as mv:
            old = int.from_bytes(mv[b0:b1], "little")
        keep = ((1 << ((b1 - b0) * 8)) - 1) ^ (((1 << n) - 1) << shift)
        value = (old & keep) | (value << shift)
    data[b0:b1] = value.to_bytes(b1 - b0, "little")  # same length: an in-place copy


def _fill(data: bytearray, b0: int, b1: int, chunk: memoryview) -> None:
    """Bytes [b0, b1) of data = copies of the 4 KiB pattern chunk.

    The first 4 KiB come from the pattern; the rest is copied from the start of the range
    itself, doubling up to 256 KiB per memcpy. Source and destination of every copy then
    sit at the same offset in their pages: with a separate pattern buffer that offset was
    chance, and at some offsets a copy stalls on false store-to-load aliasing (clearing a
    2^28-bit map took 1.5 or 5 times C's memset depending on where malloc put the map).
    Assignment goes through a memoryview: a bytearray slice assignment from anything but
    a bytearray copies the source first.
    """
    n = b1 - b0
    first = min(n, len(chunk))
    with memoryview(data) as mv:
        mv[b0 : b0 + first] = chunk[:first]
        done = first
        while done < n:
            step = min(done, _FILL, n - done)
            mv[b0 + done : b0 + done + step] = mv[b0 : b0 + step]
            done += step


def _split(lo: int, hi: int) -> tuple[int, int]:
    """Whole bytes [b0, b1) inside a large bit range; head [lo, 8*b0), tail [8*b1, hi)."""
    return (lo + 7) >> 3, hi >> 3


def _first_diff(data: bytearray, lo: int, hi: int, ones: bool) -> int:
    """First bit in [lo, hi) that is not `ones`, else hi."""
    flip = -1 if ones else 0
    if hi - lo <= _SMALL_BITS:
        v = (_extract(data, lo, hi) ^ flip) & ((1 << (hi - lo)) - 1)
        return lo + _lowbit(v) if v else hi
    b0, b1 = _split(lo, hi)
    v = (_extract(data, lo, b0 << 3) ^ flip) & ((1 << ((b0 << 3) - lo)) - 1)
    if v:
        return lo + _lowbit(v)
    pats = _ONES if ones else _ZEROS
    step = 64
    with memoryview(data) as mv:
        b = b0
        while b < b1:
            n = min(step, 1 << ((b1 - b).bit_length() - 1))
            if pats[n.bit_length() - 1] == mv[b : b + n]:
                b += n
                step = min(step * 2, _CHUNK)
                continue
            while n > 64:  # halve the differing piece down to 64 bytes
                n >>= 1
                if pats[n.bit_length() - 1] == mv[b : b + n]:
                    b += n
            v = int.from_bytes(mv[b : b + n], "little") ^ flip
            return (b << 3) + _lowbit(v & ((1 << (n * 8)) - 1))
    v = (_extract(data, b1 << 3, hi) ^ flip) & ((1 << (hi - (b1 << 3))) - 1)
    return (b1 << 3) + _lowbit(v) if v else hi


def _last_set(data: bytearray, lo: int, hi: int) -> int:
    """Last set bit in [lo, hi), else -1."""
    if hi - lo <= _SMALL_BITS:
        v = _extract(data, lo, hi)
        return lo + v.bit_length() - 1 if v else -1
    b0, b1 = _split(lo, hi)
    v = _extract(data, b1 << 3, hi)
    if v:
        return (b1 << 3) + v.bit_length() - 1
    step = 64
    with memoryview(data) as mv:
        b = b1
        while b > b0:
            n = min(step, 1 << ((b - b0).bit_length() - 1))
            if _ZEROS[n.bit_length() - 1] == mv[b - n : b]:
                b -= n
                step = min(step * 2, _CHUNK)
                continue
            while n > 64:  # keep the upper half if it has a set bit
                n >>= 1
                if _ZEROS[n.bit_length() - 1] == mv[b - n : b]:
                    b -= n
            v = int.from_bytes(mv[b - n : b], "little")
            return ((b - n) << 3) + v.bit_length() - 1
    v = _extract(data, lo, b0 << 3)
    return lo + v.bit_length() - 1 if v else -1


_POPCOUNT = bytes(bin(b).count("1") for b in range(256))  # byte -> its number of set bits
# adler32's first sum is 1 + the sum of the bytes modulo 65521: exact for this many bytes of
# popcounts (8 * 8184 + 1 < 65521), so one adler32 call adds up 8184 translated bytes in C.
_SUM_SPAN = 8184


def _count_bytes(data: bytearray, b0: int, b1: int) -> int:
    """Set bits in bytes [b0, b1): translate each byte to its popcount, add them with adler32.

    Equal to ``int.from_bytes(data[b0:b1], "little").bit_count()`` (used on short ranges and
    when zlib is missing) and several times faster on large ones: the int conversion is a
    per-byte loop in Python's C, translate and adler32 are tight loops.
    """
    if _adler32 is None or b1 - b0 < _SUM_SPAN:  # short: the int is cheaper
        return int.from_bytes(data[b0:b1], "little").bit_count()
    counts = memoryview(data[b0:b1].translate(_POPCOUNT))
    total = 0
    for i in range(0, len(counts), _SUM_SPAN):
        total += (_adler32(counts[i : i + _SUM_SPAN]) & 0xFFFF) - 1
    return total


def _count(data: bytearray, lo: int, hi: int) -> int:
    """Number of set bits in [lo, hi)."""
    if hi - lo <= _SMALL_BITS:
        return _extract(data, lo, hi).bit_count()
    b0, b1 = _split(lo, hi)
    total = _extract(data, lo, b0 << 3).bit_count() + _extract(data, b1 << 3, hi).bit_count()
    if _ACCEL.popcount is not None:  # the same sum, by an installed package (pymodel/accel.py)
        return total + _ACCEL.popcount(data, b0, b1)
    zeros, ones = _ZEROS[16], _ONES[16]
    with memoryview(data) as mv:
        for b in range(b0, b1, _CHUNK):
            piece = mv[b : min(b + _CHUNK, b1)]
            if len(piece) == _CHUNK:
                if zeros == piece:
                    continue
                if ones == piece:
                    total += _CHUNK_BITS
                    continue
            total += _count_bytes(data, b, b + len(piece))
    return total


def _chunks(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) cut at multiples of the chunk size."""
    cuts = [lo, *range((lo // _CHUNK_BITS + 1) * _CHUNK_BITS, hi, _CHUNK_BITS), hi]
    return list(zip(cuts, cuts[1:], strict=False))


class Words:
    """An array of ``nwords`` C unsigned longs of ``layout``, all zero at first.

    ``data`` holds the words in little-endian bit order (see the module docstring).
    """

    __slots__ = ("data", "layout")

    def __init__(self, layout: Layout, nwords: int) -> None:
        if nwords < 0:
            raise ValueError(f"nwords must be >= 0, not {nwords}")
        self.layout = layout
        self.data = bytearray(nwords * layout.bytes_per_long)

    @property
    def nwords(self) -> int:
        return len(self.data) // self.layout.bytes_per_long

    @property
    def nbits(self) -> int:
        return len(self.data) << 3

    def __repr__(self) -> str:
        return f"Words({self.layout.name}, nwords={self.nwords})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Words):
            return NotImplemented
        return self.layout == other.layout and self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    # -- whole words and memory images --

    def image(self) -> bytes:
        """The memory image in the layout's byte order (big-endian: each word reversed)."""
        if not self.layout.big_endian:
            return bytes(self.data)
        words = array(_TYPECODE[self.layout.bytes_per_long], self.data)
        words.byteswap()
        return words.tobytes()

    def load_image(self, image: bytes | bytearray | memoryview) -> None:
        """Inverse of image(); the length must match."""
        if len(image) != len(self.data):
            raise ValueError(f"image of {len(image)} bytes for {len(self.data)} bytes of words")
        with memoryview(self.data) as mv:
            if not self.layout.big_endian:
                mv[:] = image
                return
            words = array(_TYPECODE[self.layout.bytes_per_long])
            words.frombytes(image)
            words.byteswap()
            mv[:] = memoryview(words).cast("B")

    def word(self, i: int) -> int:
        """Word i as an unsigned int."""
        if not 0 <= i < self.nwords:
            raise IndexError(f"word {i} of {self.nwords}")
        size = self.layout.bytes_per_long
        return int.from_bytes(self.data[i * size : (i + 1) * size], "little")

    def set_word(self, i: int, value: int) -> None:
        """Store value (0..ULONG_MAX) in word i."""
        if not 0 <= i < self.nwords:
            raise IndexError(f"word {i} of {self.nwords}")
        if not 0 <= value <= self.layout.ulong_max:
            raise ValueError(f"{value} is not an unsigned long of {self.layout.name}")
        size = self.layout.bytes_per_long
        self.data[i * size : (i + 1) * size] = value.to_bytes(size, "little")

    def resize(self, nwords: int) -> None:
        """Keep the first nwords words (new words are zero), like a zeroing realloc."""
        if nwords < 0:
            raise ValueError(f"nwords must be >= 0, not {nwords}")
        size = nwords * self.layout.bytes_per_long
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))

    # -- bit ranges [lo, hi) --

    def _range(self, lo: int, hi: int) -> bool:
        """True if [lo, hi) is non-empty; IndexError if it leaves the array."""
        if lo >= hi:
            return False
        if lo < 0 or hi > len(self.data) << 3:
            raise IndexError(f"bits [{lo}, {hi}) of {len(self.data) << 3}")
        return True

    def set_range(self, lo: int, hi: int) -> None:
        """Set bits [lo, hi)."""
        if self._range(lo, hi):
            self._store(lo, hi, True)

    def clear_range(self, lo: int, hi: int) -> None:
        """Clear bits [lo, hi)."""
        if self._range(lo, hi):
            self._store(lo, hi, False)

    def _store(self, lo: int, hi: int, ones: bool) -> None:
        """Bits [lo, hi) = ones: partial end bytes by mask, whole bytes by _fill."""
        data = self.data
        b0, b1 = lo >> 3, hi >> 3
        head = (0xFF << (lo & 7)) & 0xFF  # bits of byte b0 in the range
        tail = (1 << (hi & 7)) - 1  # bits of byte b1 in the range
        if b0 == b1:
            head &= tail
            data[b0] = data[b0] | head if ones else data[b0] & ~head
            return
        if head != 0xFF:
            data[b0] = data[b0] | head if ones else data[b0] & ~head
            b0 += 1
        if tail:
            data[b1] = data[b1] | tail if ones else data[b1] & ~tail
        _fill(data, b0, b1, _ONES_MV if ones else _ZEROS_MV)

    def any_set(self, lo: int, hi: int) -> bool:
        """Is any bit in [lo, hi) set?"""
        return self._range(lo, hi) and _first_diff(self.data, lo, hi, False) < hi

    def find_set(self, lo: int, hi: int) -> int:
        """First set bit in [lo, hi), else hi."""
        return _first_diff(self.data, lo, hi, False) if self._range(lo, hi) else hi

    def find_clear(self, lo: int, hi: int) -> int:
        """First clear bit in [lo, hi), else hi."""
        return _first_diff(self.data, lo, hi, True) if self._range(lo, hi) else hi

    def find_last_set(self, lo: int, hi: int) -> int:
        """Last set bit in [lo, hi), else -1."""
        return _last_set(self.data, lo, hi) if self._range(lo, hi) else -1

    def count(self, lo: int, hi: int) -> int:
        """Number of set bits in [lo, hi)."""
        return _count(self.data, lo, hi) if self._range(lo, hi) else 0

    def extract(self, lo: int, hi: int) -> int:
        """Bits [lo, hi) as an int, bit lo as its bit 0."""
        return _extract(self.data, lo, hi) if self._range(lo, hi) else 0

    def insert(self, lo: int, hi: int, value: int) -> None:
        """Bits [lo, hi) = the low hi - lo bits of value."""
        if self._range(lo, hi):
            _insert(self.data, lo, hi, value)


# --- operations on several arrays ----------------------------------------------------------


def copy_bits(dst: Words, dlo: int, src: Words, slo: int, n: int) -> None:
    """dst bits [dlo, dlo + n) = src bits [slo, slo + n), as if src were read first.

    Same-array overlapping copies behave like memmove.
    """
    if not (dst._range(dlo, dlo + n) and src._range(slo, slo + n)):
        return
    if (dlo | slo | n) & 7 == 0:
        with memoryview(dst.data) as dmv, memoryview(src.data) as smv:
            dmv[dlo >> 3 : (dlo + n) >> 3] = smv[slo >> 3 : (slo + n) >> 3]
        return
    if n <= _CHUNK_BITS:
        _insert(dst.data, dlo, dlo + n, _extract(src.data, slo, slo + n))
        return
    pieces = [(a - dlo, b - dlo) for a, b in _chunks(dlo, dlo + n)]
    if dst is src and dlo > slo:
        pieces.reverse()
    for a, b in pieces:
        _insert(dst.data, dlo + a, dlo + b, _extract(src.data, slo + a, slo + b))


def swap_words(dst: Words, src: Words, nwords: int) -> None:
    """dst words [0, nwords) = src words with their bytes reversed (bswap per word)."""
    size = dst.layout.bytes_per_long
    if nwords <= 0:
        return
    dst._range(0, nwords * size * 8)
    src._range(0, nwords * size * 8)
    code = _TYPECODE[size]
    with memoryview(dst.data) as dmv, memoryview(src.data) as smv:
        for b in range(0, nwords * size, _CHUNK):
            e = min(b + _CHUNK, nwords * size)
            words = array(code)
            words.frombytes(smv[b:e])
            words.byteswap()
            dmv[b:e] = memoryview(words).cast("B")


def apply(op: Callable[..., int], dst: Words, srcs: Sequence[Words], lo: int, hi: int) -> bool:
    """dst bits [lo, hi) = op(src bits [lo, hi), ...); True if any result bit is set.

    op must be bitwise (each result bit depends only on the same bit of the operands); it
    gets ints and may return a negative int (e.g. ~a), which is cut to the range's width.
    """
    if not dst._range(lo, hi):
        return False
    for s in srcs:
        s._range(lo, hi)
    if hi - lo <= _CHUNK_BITS:  # one piece: what the fuzzer's arrays always are
        value = _fit(op(*[_extract(s.data, lo, hi) for s in srcs]), hi - lo)  # ~a: cut
        _insert(dst.data, lo, hi, value)
        return value != 0
    nonzero = False
    for a, b in _chunks(lo, hi):
        value = op(*(_extract(s.data, a, b) for s in srcs)) & ((1 << (b - a)) - 1)
        _insert(dst.data, a, b, value)
        nonzero = nonzero or value != 0
    return nonzero


def test(op: Callable[..., int], srcs: Sequence[Words], lo: int, hi: int) -> bool:
    """Is any bit of op(src bits [lo, hi), ...) set? op is bitwise, as for apply()."""
    if lo >= hi:
        return False
    for s in srcs:
        s._range(lo, hi)
    if hi - lo <= _CHUNK_BITS:  # one piece
        return _fit(op(*[_extract(s.data, lo, hi) for s in srcs]), hi - lo) != 0
    for a, b in _chunks(lo, hi):
        if op(*(_extract(s.data, a, b) for s in srcs)) & ((1 << (b - a)) - 1):
            return True
    return False
