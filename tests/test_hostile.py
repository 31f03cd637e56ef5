# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 10: the fuzzer and the model facing broken libraries and bad input.

Each test is one defect of the issue; it failed before the fix it names.
"""

from __future__ import annotations

import pickle

import pytest

from recvmap import pymodel as pm
from recvmap.pymodel.errors import ArgumentTypeError, PreconditionError
from recvmap.pymodel.ramblock import Side, TargetPage, model_context

# --- #8 the Python API of the model ---------------------------------------------------------


@pytest.mark.parametrize("bad", [b"\x00" * 8, None, "map", [0, 0], 3])
def test_api_non_map_argument_is_type_error_naming_it(bad: object) -> None:
    with pytest.raises(TypeError, match=r"^find_next_bit: addr: expected a bitmap"):
        pm.find_next_bit(bad, 64, 0)  # type: ignore[arg-type]
    m = pm.bitmap_new(64)
    with pytest.raises(TypeError, match=r"^bitmap_and: src2: expected a bitmap"):
        pm.bitmap_and(m, m, bad, 64)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [3.0, True, False, "3", None, 2**70 + 0.5])
def test_api_counts_and_offsets_are_ints_not_bool_or_float(bad: object) -> None:
    m = pm.bitmap_new(64)
    m.set_word(0, 0b1000)
    with pytest.raises(TypeError, match=r"^find_next_bit: size: expected an int"):
        pm.find_next_bit(m, bad, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^find_next_bit: offset: expected an int"):
        pm.find_next_bit(m, 64, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^bitmap_set: nr: expected an int"):
        pm.bitmap_set(m, 1, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^bitmap_new: nbits: expected an int"):
        pm.bitmap_new(bad)  # type: ignore[arg-type]


def test_api_find_next_bit_float_offset_no_longer_returns_float() -> None:
    m = pm.bitmap_new(64)
    m.set_word(0, 0b1000)
    with pytest.raises(TypeError):
        pm.find_next_bit(m, 3.0, 5)  # type: ignore[arg-type]
    assert pm.find_next_bit(m, 64, 0) == 3


def test_api_keyword_arguments_are_checked_too() -> None:
    m = pm.bitmap_new(64)
    with pytest.raises(TypeError, match="bitmap_set: start"):
        pm.bitmap_set(m, start=1.5, nr=2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bitmap_new: layout"):
        pm.bitmap_new(64, layout="LP64")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [(pm.LP64_LE, pm.ILP32_LE), (pm.LP64_LE, pm.LP64_BE), (pm.ILP32_BE, pm.ILP32_LE)],
)
def test_api_maps_of_different_layouts_rejected(a: pm.Layout, b: pm.Layout) -> None:
    x, y = pm.bitmap_new(64, a), pm.bitmap_new(64, b)
    # Before: bitmap_equal(LP64 map, ILP32 map, 64) returned 1.
    with pytest.raises(PreconditionError, match=r"^bitmap_equal: src2: .*share one host"):
        pm.bitmap_equal(x, y, 64)
    before = (x.image(), y.image())
    with pytest.raises(PreconditionError, match="bitmap_or: src1"):
        pm.bitmap_or(x, y, x, 64)
    assert (x.image(), y.image()) == before


def test_api_rejected_call_changes_nothing_zero_extend() -> None:
    m = pm.bitmap_new(200)
    pm.bitmap_set(m, 0, 200)
    image = m.image()
    with pytest.raises(TypeError, match="bitmap_zero_extend: old_nbits"):
        pm.bitmap_zero_extend(m, 3.0, 100)  # type: ignore[arg-type]
    assert m.image() == image and m.nwords == 4  # before: shrunk to 2 words, then raised


def test_api_type_errors_pickle_and_name_the_argument() -> None:
    try:
        pm.test_bit(1, None)  # type: ignore[arg-type]
    except ArgumentTypeError as err:
        again = pickle.loads(pickle.dumps(err))
        assert isinstance(again, TypeError) and str(again) == str(err)
        assert (again.function, again.argument) == ("test_bit", "addr")
    else:
        pytest.fail("no TypeError")


def _stream() -> tuple[bytes, object, object]:
    page = TargetPage.for_target("x86_64")
    dst = model_context(page)
    rb = dst.ram_block_add("pc.ram", 1 << 20)
    dst.ramblock_recv_map_init()
    dst.ramblock_recv_bitmap_set_range(rb, rb.host + 4096, 3)
    stream, _ = dst.ramblock_recv_bitmap_send("pc.ram")
    src = model_context(page, side=Side.SOURCE)
    src_rb = src.ram_block_add("pc.ram", 1 << 20)
    src.ram_list_init_bitmaps()
    return stream, src, src_rb


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_api_bytes_like_streams_accepted(wrap: type) -> None:
    stream, src, src_rb = _stream()
    assert src.ram_dirty_bitmap_reload(src_rb, wrap(stream)) == 0  # type: ignore[attr-defined]
    nbits = 256
    # pages 1..3 were received: they are the only ones not dirty
    assert pm.bitmap_count_one(src_rb.bmap, nbits) == nbits - 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["stream", None, 12])
def test_api_non_bytes_stream_is_type_error(bad: object) -> None:
    _, src, src_rb = _stream()
    with pytest.raises(TypeError, match="ram_dirty_bitmap_reload: stream: expected a bytes-like"):
        src.ram_dirty_bitmap_reload(src_rb, bad)  # type: ignore[attr-defined]
