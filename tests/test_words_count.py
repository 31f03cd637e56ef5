# SPDX-License-Identifier: GPL-2.0-or-later
"""The model's bit count on large ranges (translate + adler32) against a per-byte count.

The expected values come from a table of single-byte popcounts written out by ``bin()``,
independent of the primitive under test; the ranges straddle the primitive's internal
boundaries (the 8184-byte adler32 span, the 64 KiB chunk, the 512-bit small-range cut).
"""

from __future__ import annotations

import random

import pytest

from recvmap.pymodel import bitmap_count_one
from recvmap.pymodel.words import LP64_LE, Words

BYTE_BITS = [bin(b).count("1") for b in range(256)]


def slow_count(data: bytes, lo: int, hi: int) -> int:
    total = 0
    for bit in range(lo, hi):
        total += data[bit >> 3] >> (bit & 7) & 1
    return total


def fill(kind: str, n: int, rng: random.Random) -> bytes:
    if kind == "random":
        return rng.randbytes(n)
    if kind == "ones":
        return b"\xff" * n
    if kind == "ones-one-hole":
        data = bytearray(b"\xff" * n)
        data[rng.randrange(n)] = 0x7F
        return bytes(data)
    return bytes(n)  # zeros


@pytest.mark.parametrize("kind", ["random", "ones", "ones-one-hole", "zeros"])
def test_count_matches_per_byte_count(kind: str) -> None:
    rng = random.Random(kind)
    nbytes = 3 * 65536 + 24  # three whole chunks and a tail; a multiple of 8
    data = fill(kind, nbytes, rng)
    words = Words(LP64_LE, nbytes // 8)
    words.load_image(data)
    whole = sum(BYTE_BITS[b] for b in data)
    assert bitmap_count_one(words, nbytes * 8) == whole
    for lo, hi in [(0, 8184 * 8), (3, 8184 * 8 + 5), (100, 65536 * 8 + 9), (513, 70001 * 8)]:
        assert words.count(lo, hi) == slow_count(data, lo, hi), (lo, hi)
    for _ in range(6):
        lo = rng.randrange(nbytes * 8)
        hi = rng.randrange(lo, min(nbytes * 8, lo + 300_000) + 1)
        assert words.count(lo, hi) == slow_count(data, lo, hi), (lo, hi)


def test_large_set_and_clear_match_int_arithmetic() -> None:
    """set_range / clear_range over ranges that grow by copying within the range (the store
    doubles from a 4 KiB pattern) against the same ranges applied to a Python int."""
    rng = random.Random(7)
    nbytes = 600_000
    words = Words(LP64_LE, nbytes // 8)
    words.load_image(rng.randbytes(nbytes))
    value = int.from_bytes(words.image(), "little")
    for _ in range(12):
        lo = rng.randrange(nbytes * 8)
        hi = rng.randrange(lo, nbytes * 8 + 1)
        mask = ((1 << (hi - lo)) - 1) << lo
        if rng.random() < 0.5:
            words.set_range(lo, hi)
            value |= mask
        else:
            words.clear_range(lo, hi)
            value &= ~mask
        assert words.image() == value.to_bytes(nbytes, "little"), (lo, hi)
