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
import json
import random
import subprocess
import sys
from pathlib import Path

import helpers
import pytest

from recvmap.fuzz.engine.alloc import _MALLOPT
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.program.format import Alloc
from recvmap.pymodel.bitmap import bitmap_new, bitmap_zero_extend
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.words import ILP32_LE, LP64_LE, Layout
from recvmap.qemu_ref import CArray, load
from recvmap.qemu_ref.loader import set_guard

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
    set_guard("none")  # calloc's block, which malloc_usable_size measures
    try:
        c = lib.bitmap_new(nbits)
    finally:
        set_guard(None)
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


# --- the engine's allocation step (fuzz/engine/alloc.py) --------------------------------

# The two survivors of the mutation run before it (docs/mutants.md), as edits of bitmap.c.
NO_ZEROING = ("if (new_nelem > old_nelem) {", "if (new_nelem == old_nelem) {")
OVERRUN = ("(new_nelem - old_nelem) * WORD_BYTES", "(new_nelem + old_nelem) * WORD_BYTES")


def _allocating(layout: Layout, old: int | None, new: int) -> Program:
    """One array of BITS_TO_LONGS(new) words made by bitmap_new(new), or by zero_extend of
    an array of ``old`` bits whose words are all ones; its words by QEMU's rule."""
    bits = layout.bits_per_long
    nwords = -(-new // bits)
    if old is None:
        alloc, image = Alloc(new), bytes(nwords * bits // 8)
    else:
        ones = dict.fromkeys(range(-(-old // bits)), (1 << bits) - 1)
        alloc, image = Alloc(new, old, ones), _expected(old, new, bits)
    value = int.from_bytes(image, "little")
    words = {i: w for i in range(nwords) if (w := value >> (i * bits) & ((1 << bits) - 1))}
    return Program(
        layout, [ArraySpec(nwords, words, alloc)], [Op("bitmap_count_one", (Ref(0), new))]
    )


ENGINE_CASES = [(None, 100), (None, 64), (0, 100), (10, 100), (64, 65), (65, 300), (100, 12800)]


@pytest.mark.parametrize("bits, layout", WIDTHS, ids=IDS)
def test_engine_allocation_step_reference_is_clean(bits: int, layout: Layout) -> None:
    """The control: our C's arrays are the model's, and the model's are QEMU's rule; the
    program round-trips through JSON and replays clean, operations included."""
    from recvmap.fuzz.engine import first_divergence
    from recvmap.fuzz.engine.alloc import check_allocations
    from recvmap.fuzz.subjects.impls import CImpl, Subject

    impl = CImpl(load(bits=bits))
    for old, new in ENGINE_CASES:
        program = _allocating(layout, old, new)
        assert check_allocations(program, impl) is None, (old, new)
        again = Program.from_json(json.loads(json.dumps(program.to_json())))
        assert again.arrays[0].alloc == program.arrays[0].alloc
        assert first_divergence(again, Subject(bits=bits)) == ([old or 0], None)


def _library(bits: int, edit: tuple[str, str]) -> Path:
    from recvmap.fuzz.subjects.build import build_library

    return build_library(bits, {"bitmap.c": [edit]})


@pytest.mark.skipif(_MALLOPT is None, reason="needs glibc's M_PERTURB")
@pytest.mark.parametrize("bits, layout", WIDTHS, ids=IDS)
def test_engine_allocation_step_sees_added_words_left_uninitialized(
    bits: int, layout: Layout
) -> None:
    """The survivor bitmap.c:d0d76cab73 (the added words not zeroed): the tail of the last
    added word is what malloc left, 0xa5 under M_PERTURB, where the model has zeros (a
    block larger than glibc's per-thread cache: that hands small blocks back unperturbed)."""
    from recvmap.fuzz.engine.alloc import check_allocations
    from recvmap.fuzz.subjects.impls import CImpl

    impl = CImpl(load(_library(bits, NO_ZEROING), bits))
    found = check_allocations(_allocating(layout, 0, 12900), impl)  # past glibc's tcache
    assert found is not None and found.what == "memory" and found.op.name == "bitmap_zero_extend"
    assert (found.model, found.impl, found.offset) == (0, 0xA5 & 0xF0, 1612)  # bits 12900..
    assert check_allocations(_allocating(layout, None, 12900), impl) is None  # calloc: zero


@pytest.mark.parametrize("bits", [64, 32])
def test_engine_allocation_step_crashes_an_overrun(bits: int) -> None:
    """The survivor bitmap.c:2f099b86d2 (memset past the new array): glibc's allocator
    finds its next chunk damaged when the array is freed and aborts; the mutation runner
    re-runs such an input alone and counts the abort."""
    lib = _library(bits, OVERRUN)
    program = _allocating(LP64_LE if bits == 64 else ILP32_LE, 128, 12800).to_json()
    code = "\n".join(
        [
            "import json",
            "from recvmap.fuzz.engine.alloc import check_allocations",
            "from recvmap.fuzz.program import Program",
            "from recvmap.fuzz.subjects.impls import CImpl",
            "from recvmap.qemu_ref import load",
            f"impl = CImpl(load({str(lib)!r}, {bits}))",
            f"program = Program.from_json(json.loads({json.dumps(program)!r}))",
            "print(check_allocations(program, impl))",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode < 0, (proc.returncode, proc.stdout, proc.stderr[-300:])


# bitmap_new handing back its last word with bit 0 set: a bug only an allocation shows.
DIRTY_NEW = (
    "    return map;\n}\n\nqref_ulong *bitmap_zero_extend(",
    "    map[nelem - 1] |= 1;\n    return map;\n}\n\nqref_ulong *bitmap_zero_extend(",
)


@pytest.mark.parametrize("edit", [None, DIRTY_NEW], ids=["reference", "dirty-bitmap-new"])
def test_harness_allocates_in_one_input_in_sixteen(
    edit: tuple[str, str] | None, tmp_path: Path
) -> None:
    """The bitmap harness (the campaign's and the mutation runner's engine) makes arrays
    with the implementation's allocators in about one input in sixteen: our C is clean
    on them; a bitmap_new that leaves a bit set is a divergence of the allocation step."""
    from recvmap.fuzz.campaign.harness import Harness
    from recvmap.fuzz.engine import DivergenceError
    from recvmap.fuzz.engine.alloc import allocates
    from recvmap.fuzz.subjects.impls import Subject

    libs = {64: load(_library(64, edit) if edit else None, 64)}
    h = Harness("bitmap", Subject(libraries=libs), out_dir=tmp_path)
    rng = random.Random(16)
    inputs = [rng.randbytes(rng.randrange(2, 300)) for _ in range(400)]
    made = sum(allocates(h.decode(data)[0]) for data in inputs)
    assert 10 <= made <= 50, made
    if edit is None:
        for data in inputs:
            h.one_input(data)
        return
    with pytest.raises(DivergenceError, match=r"op #-1 bitmap_(new|zero_extend)\("):
        for data in inputs:
            h.one_input(data)
