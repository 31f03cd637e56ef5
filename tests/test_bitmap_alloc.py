# SPDX-License-Identifier: GPL-2.0-or-later
"""bitmap_new and bitmap_zero_extend: our C against the model, on both word widths.

Expected word counts are written out here (BITS_TO_LONGS by hand), and the bits after a
zero_extend are stated from QEMU's rule (bitmap.h: reallocate to BITS_TO_LONGS(new) words,
then bitmap_clear(old_nbits, new_nbits - old_nbits)), not taken from either implementation:
bits below old_nbits keep their value, bits from old_nbits to new_nbits are zero, bits past
new_nbits in a word the old array had keep their value (tail bits), added words are zero
(QEMU leaves them uninitialized; the model and our C zero them). Shrinking is outside the
domain: the model raises, our C aborts on QEMU's bitmap_clear assert.
"""

from __future__ import annotations

import ctypes
import random

import helpers
import pytest

from recvmap.pymodel.bitmap import bitmap_new, bitmap_zero_extend
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.words import ILP32_LE, LP64_LE, Layout
from recvmap.qemu_ref import CArray, load

WIDTHS = [(64, LP64_LE), (32, ILP32_LE)]
IDS = ["64", "32"]

# nbits -> words on a 64-bit and on a 32-bit host (BITS_TO_LONGS, by hand)
SIZES = [
    (0, 0, 0),
    (1, 1, 1),
    (31, 1, 1),
    (32, 1, 1),
    (33, 1, 2),
    (63, 1, 2),
    (64, 1, 2),
    (65, 2, 3),
    (96, 2, 3),
    (127, 2, 4),
    (128, 2, 4),
    (129, 3, 5),
    (1000, 16, 32),
]

# (old_nbits, new_nbits): growing within a word, to a word boundary, across words, from and to 0
GROW = [
    (0, 0),
    (0, 1),
    (1, 1),
    (5, 10),
    (10, 31),
    (31, 33),
    (32, 33),
    (10, 64),
    (63, 65),
    (64, 64),
    (64, 65),
    (65, 200),
    (100, 128),
    (128, 129),
    (0, 300),
    (33, 1000),
]
SHRINK = [(1, 0), (65, 64), (64, 63), (200, 10)]


def _libc_usable_size(address: int) -> int:
    libc = ctypes.CDLL(None)
    fn = libc.malloc_usable_size
    fn.restype, fn.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    return int(fn(address))


@pytest.mark.parametrize("bits, layout", WIDTHS, ids=IDS)
@pytest.mark.parametrize("nbits, w64, w32", SIZES, ids=[str(s[0]) for s in SIZES])
def test_bitmap_new_sizes(bits: int, layout: Layout, nbits: int, w64: int, w32: int) -> None:
    want = w64 if bits == 64 else w32
    lib = load(bits=bits)
    c = lib.bitmap_new(nbits)
    m = bitmap_new(nbits, layout)
    assert isinstance(c, CArray)
    assert m.nwords == want and c.nwords == want
    if want == 0:
        assert c.address == 0, "QEMU's g_new0 gives NULL for no words"
    else:
        assert _libc_usable_size(c.address) >= want * bits // 8, "the C allocated too little"
    assert c.image() == m.image() == bytes(want * bits // 8)
    c.free()
    assert c.nwords == 0


def _expected(old: int, new: int, bits: int) -> bytes:
    """All bits of the old array set (tail included), then QEMU's rule (module docstring)."""
    old_words = -(-old // bits)
    new_words = -(-new // bits)
    value = 0
    for i in range(new_words * bits):
        keep = i < old or (i >= new and i // bits < old_words)
        value |= int(keep) << i
    return value.to_bytes(new_words * bits // 8, "little")


@pytest.mark.parametrize("bits, layout", WIDTHS, ids=IDS)
@pytest.mark.parametrize("old, new", GROW, ids=[f"{a}-{b}" for a, b in GROW])
def test_zero_extend_grows_like_the_model(bits: int, layout: Layout, old: int, new: int) -> None:
    lib = load(bits=bits)
    c = lib.bitmap_new(old)
    m = bitmap_new(old, layout)
    full = b"\xff" * len(c.image())  # dirty tail bits too
    c.load_image(full)
    m.load_image(full)
    grown = lib.bitmap_zero_extend(c, old, new)
    m = bitmap_zero_extend(m, old, new)
    assert c.nwords == 0, "the old array was reallocated: the loader must consume it"
    want = _expected(old, new, bits)
    assert m.image() == want, "the model breaks QEMU's rule"
    assert grown.image() == want, "the C breaks QEMU's rule"
    grown.free()


@pytest.mark.parametrize("bits, layout", WIDTHS, ids=IDS)
def test_zero_extend_random_chains(bits: int, layout: Layout) -> None:
    """Fixed seed: chains of growth from a random fill, C and model in lockstep."""
    seed = 20260 + bits
    print(f"seed {seed}")
    rng = random.Random(seed)
    lib = load(bits=bits)
    for _ in range(40):
        n = rng.randrange(0, 3 * bits)
        c, m = lib.bitmap_new(n), bitmap_new(n, layout)
        image = rng.randbytes(len(c.image()))
        c.load_image(image)
        m.load_image(image)
        for _ in range(4):
            grow = rng.choice([0, 1, bits - 1, bits, bits + 1, rng.randrange(0, 4 * bits)])
            c = lib.bitmap_zero_extend(c, n, n + grow)
            m = bitmap_zero_extend(m, n, n + grow)
            n += grow
            assert c.image() == m.image(), (seed, n, grow)
        c.free()


@pytest.mark.parametrize("bits, layout", WIDTHS, ids=IDS)
@pytest.mark.parametrize("old, new", SHRINK, ids=[f"{a}-{b}" for a, b in SHRINK])
def test_zero_extend_shrinking_is_outside_the_domain(
    bits: int, layout: Layout, old: int, new: int
) -> None:
    with pytest.raises(PreconditionError, match="new_nbits"):
        bitmap_zero_extend(bitmap_new(old, layout), old, new)
    proc = helpers.run_c(bits, f"lib.bitmap_zero_extend(lib.bitmap_new({old}), {old}, {new})")
    helpers.assert_c_aborted(proc)


@pytest.mark.parametrize("bits", [64, 32])
def test_zero_extend_control_returns(bits: int) -> None:
    """The control of the abort test: the same call growing returns normally."""
    proc = helpers.run_c(bits, "lib.bitmap_zero_extend(lib.bitmap_new(65), 65, 66).free()")
    helpers.assert_c_returned(proc)


def test_negative_sizes_are_refused_by_the_model() -> None:
    with pytest.raises(PreconditionError, match="nbits"):
        bitmap_new(-1)
    with pytest.raises(PreconditionError, match="old_nbits"):
        bitmap_zero_extend(bitmap_new(64), -1, 64)
