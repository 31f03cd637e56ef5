# SPDX-License-Identifier: GPL-2.0-or-later
"""Postcopy recovery streams: golden vectors, every layout pair, every malformed stream.

The golden streams in vectors/recovery_stream_v1.json were written out by hand from the
wire rules (facts section 5); the model (all four layouts) and the C reference (both
word widths) must produce exactly those bytes and accept them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recvmap.fuzz.engine.ram import send
from recvmap.pymodel.errors import PreconditionError, RecoveryError
from recvmap.pymodel.ramblock import RamApi, RamContext, Side, TargetPage
from recvmap.pymodel.recovery import RAMBLOCK_RECV_BITMAP_ENDING, recv_bitmap_size
from recvmap.pymodel.scenarios import set_bits
from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout
from recvmap.qemu_ref import CLibrary
from recvmap.qemu_ref.ram import c_context

VECTORS = json.loads((Path(__file__).parent / "vectors" / "recovery_stream_v1.json").read_text())
LAYOUTS = (LP64_LE, ILP32_LE, LP64_BE, ILP32_BE)
TPS = 1 << VECTORS["target_page_bits"]


def model(layout: Layout, side: Side = Side.DESTINATION) -> RamApi:
    return RamContext(TargetPage.fixed(VECTORS["target_page_bits"]), side=side, layout=layout)


def c_ctx(lib: CLibrary, side: Side = Side.DESTINATION) -> RamApi:
    tp = TargetPage.fixed(VECTORS["target_page_bits"])
    return c_context(tp, side=side, layout=lib.layout, lib=lib)


def set_list(v: dict[str, Any]) -> list[int]:
    return list(range(v["nbits"])) if v["set_bits"] == "all" else list(v["set_bits"])


def expected_stream(v: dict[str, Any], bpl: int) -> bytes:
    hexed = v["stream"] if "stream" in v else v["stream_by_bpl"][str(bpl)]
    return bytes.fromhex(hexed)


def send_vector(ctx: RamApi, v: dict[str, Any]) -> tuple[bytes, int]:
    rb = ctx.ram_block_add("pc.ram", v["nbits"] * TPS, v["max_pages"] * TPS)
    ctx.ramblock_recv_map_init()
    for page in set_list(v) + v["tail_bits"]:
        ctx.ramblock_recv_bitmap_set_offset(rb, page * TPS)
    return ctx.ramblock_recv_bitmap_send("pc.ram")


def reload_vector(ctx: RamApi, v: dict[str, Any], stream: bytes) -> list[int]:
    """Reload on a source whose bmap starts all dirty; return its set bits."""
    rb = ctx.ram_block_add("pc.ram", v["nbits"] * TPS, v["max_pages"] * TPS)
    ctx.ram_list_init_bitmaps()
    assert ctx.ram_dirty_bitmap_reload(rb, stream) == 0
    return set_bits(rb.bmap, ctx.layout, rb.bmap.nbits)


def expected_dirty(v: dict[str, Any], bpl: int) -> list[int]:
    """Complement below nbits, tail of the last word cleared, later words still dirty."""
    nbits, received = v["nbits"], set(set_list(v))
    last_word_end = -(-nbits // bpl) * bpl
    return [p for p in range(nbits) if p not in received] + list(
        range(last_word_end, v["max_pages"])
    )


def test_vector_file_is_consistent() -> None:
    assert VECTORS["schema"] == "recvmap/recovery_stream/v1"
    nbits = {v["nbits"] for v in VECTORS["vectors"]}
    assert {0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 200} <= nbits
    for v in VECTORS["vectors"]:
        for bpl in (32, 64):
            s = expected_stream(v, bpl)
            assert len(s) == 16 + v["size"] and v["ret"] == v["size"] + 8
            assert int.from_bytes(s[:8], "big") == v["size"] == recv_bitmap_size(v["nbits"])
            assert int.from_bytes(s[-8:], "big") == RAMBLOCK_RECV_BITMAP_ENDING


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda x: x.name)
@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: v["name"])
def test_model_matches_golden_streams(layout: Layout, v: dict[str, Any]) -> None:
    stream, ret = send_vector(model(layout), v)
    assert stream == expected_stream(v, layout.bits_per_long)
    assert ret == v["ret"]
    if v["nbits"] == 0:
        src = model(layout, Side.SOURCE)
        rb = src.ram_block_add("pc.ram", 0, v["max_pages"] * TPS)
        src.ram_list_init_bitmaps()
        assert rb.bmap is None  # no RAM at all: ram_list_init_bitmaps allocates nothing
        with pytest.raises(PreconditionError, match="bmap"):
            src.ram_dirty_bitmap_reload(rb, stream)
        other = src.ram_block_add("ram1", TPS)  # with other RAM the empty block has a bmap
        src.ram_save_cleanup()
        src.ram_list_init_bitmaps()
        assert rb.bmap is not None and other.bmap is not None
        with pytest.raises(PreconditionError, match="nbits"):
            src.ram_dirty_bitmap_reload(rb, stream)
        return
    dirty = reload_vector(model(layout, Side.SOURCE), v, stream)
    assert dirty == expected_dirty(v, layout.bits_per_long)


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: v["name"])
def test_c_matches_golden_streams(lib: CLibrary, v: dict[str, Any]) -> None:
    stream, ret = send_vector(c_ctx(lib), v)
    assert stream == expected_stream(v, lib.bits)
    assert ret == v["ret"]
    if v["nbits"]:
        dirty = reload_vector(c_ctx(lib, Side.SOURCE), v, stream)
        assert dirty == expected_dirty(v, lib.bits)


def _malformed_source(ctx: RamApi, nbits: int) -> Any:
    rb = ctx.ram_block_add("pc.ram", nbits * TPS, max(64, nbits) * TPS)
    ctx.ram_list_init_bitmaps()
    return rb


@pytest.mark.parametrize("case", VECTORS["malformed"], ids=lambda c: c["name"])
def test_malformed_streams_rejected_model(case: dict[str, Any]) -> None:
    for layout in LAYOUTS:
        ctx = model(layout, Side.SOURCE)
        rb = _malformed_source(ctx, case["nbits"])
        before = rb.bmap.image()
        if case["ret"] == 0:  # not malformed for QEMU: it never reads past the end mark
            assert ctx.ram_dirty_bitmap_reload(rb, bytes.fromhex(case["stream"])) == 0
            assert ctx.error_log == [] and rb.bmap.image() != before
            continue
        with pytest.raises(RecoveryError) as e:
            ctx.ram_dirty_bitmap_reload(rb, bytes.fromhex(case["stream"]))
        assert e.value.ret == case["ret"] and case["reason"] in str(e.value)
        assert e.value.block == "pc.ram" and e.value.function == "ram_dirty_bitmap_reload"
        assert ctx.error_log == [e.value.reason]  # an Error's message: no function prefix
        assert rb.bmap.image() == before


@pytest.mark.parametrize("case", VECTORS["malformed"], ids=lambda c: c["name"])
def test_malformed_streams_rejected_c(lib: CLibrary, case: dict[str, Any]) -> None:
    ctx = c_ctx(lib, Side.SOURCE)
    rb = _malformed_source(ctx, case["nbits"])
    before = rb.bmap.image()
    if case["ret"] == 0:
        assert ctx.ram_dirty_bitmap_reload(rb, bytes.fromhex(case["stream"])) == 0
        return
    with pytest.raises(RecoveryError) as e:
        ctx.ram_dirty_bitmap_reload(rb, bytes.fromhex(case["stream"]))
    mctx = model(lib.layout, Side.SOURCE)
    mrb = _malformed_source(mctx, case["nbits"])
    with pytest.raises(RecoveryError) as m:
        mctx.ram_dirty_bitmap_reload(mrb, bytes.fromhex(case["stream"]))
    assert (e.value.ret, str(e.value), e.value.block) == (m.value.ret, str(m.value), "pc.ram")
    assert rb.bmap.image() == before


@pytest.mark.parametrize("sender", LAYOUTS, ids=lambda x: x.name)
@pytest.mark.parametrize("receiver", LAYOUTS, ids=lambda x: x.name)
def test_every_layout_pair_agrees(sender: Layout, receiver: Layout) -> None:
    v = {"nbits": 77, "max_pages": 130, "set_bits": [0, 3, 31, 32, 63, 64, 76], "tail_bits": []}
    stream, _ = send_vector(model(sender), v)
    dirty = reload_vector(model(receiver, Side.SOURCE), v, stream)
    assert dirty == expected_dirty(v, receiver.bits_per_long)


@given(
    nbits=st.integers(1, 300),
    extra=st.integers(0, 80),
    data=st.data(),
    sender=st.sampled_from(LAYOUTS),
    receiver=st.sampled_from(LAYOUTS),
)
def test_reload_is_the_complement(
    nbits: int, extra: int, data: st.DataObject, sender: Layout, receiver: Layout
) -> None:
    received = data.draw(st.sets(st.integers(0, nbits - 1)))
    v = {"nbits": nbits, "max_pages": nbits + extra, "set_bits": sorted(received), "tail_bits": []}
    stream, ret = send_vector(model(sender), v)
    assert ret == recv_bitmap_size(nbits) + 8 == len(stream) - 8
    assert reload_vector(model(receiver, Side.SOURCE), v, stream) == expected_dirty(
        v, receiver.bits_per_long
    )


def test_send_unknown_block_and_preconditions() -> None:
    dst = model(LP64_LE)
    assert dst.ramblock_recv_bitmap_send("nope") == (b"", -1)
    assert dst.error_log == ["ramblock_recv_bitmap_send: invalid block name: nope"]
    rb = dst.ram_block_add("pc.ram", 4 * TPS)
    with pytest.raises(PreconditionError, match="receivedmap"):
        dst.ramblock_recv_bitmap_send("pc.ram")
    dst.ramblock_recv_map_init()
    stream, _ = dst.ramblock_recv_bitmap_send("pc.ram")
    with pytest.raises(PreconditionError, match="source"):
        dst.ram_dirty_bitmap_reload(rb, stream)
    src = model(LP64_LE, Side.SOURCE)
    sb = src.ram_block_add("pc.ram", 4 * TPS)
    with pytest.raises(PreconditionError, match="bmap"):
        src.ram_dirty_bitmap_reload(sb, stream)


def test_c_send_unknown_block(lib: CLibrary) -> None:
    ctx = c_ctx(lib)
    assert ctx.ramblock_recv_bitmap_send("nope") == (b"", -1)
    assert ctx.error_log == ["ramblock_recv_bitmap_send: invalid block name: nope"]


def test_recovery_error_pickles() -> None:
    import pickle

    e = RecoveryError("ram_dirty_bitmap_reload", "b", "ramblock 'b' end mark incorrect: 0x0", -22)
    f = pickle.loads(pickle.dumps(e))
    assert (f.function, f.block, f.reason, f.ret, str(f)) == (
        e.function,
        e.block,
        e.reason,
        e.ret,
        str(e),
    )


# A sender that NUL-terminates its stream when the buffer has room: invisible with an exact
# buffer, a write past the stream with a larger one.
END_MARK = "    put_be64(buf + 8 + size, RAMBLOCK_RECV_BITMAP_ENDING);\n"
PAST_STREAM = END_MARK + "    if (buflen > size + 16) {\n        buf[size + 16] = 0;\n    }\n"
SIZE_CHECK = "    if (buflen < size + 16) {"


@pytest.mark.parametrize(
    "edit, spare, tail, ret",
    [
        (None, 0, b"", None),
        (None, 8, b"", None),
        ((END_MARK, PAST_STREAM), 0, b"", None),
        ((END_MARK, PAST_STREAM), 8, b"\0", None),
        ((SIZE_CHECK, SIZE_CHECK.replace("<", ">")), 0, b"", None),
        ((SIZE_CHECK, SIZE_CHECK.replace("<", ">")), 1, None, -28),
    ],
    ids=["reference", "reference-spare", "past-exact", "past-spare", "size-exact", "size-spare"],
)
def test_spare_buffer_shows_what_the_sender_writes(
    edit: tuple[str, str] | None, spare: int, tail: bytes | None, ret: int | None
) -> None:
    """The C face gives the sender ``spare`` more bytes, filled with a canary: a byte the
    sender changes past its stream is part of the stream it returns (so the engine sees a
    result the model does not give), and the size check the wrong way round fails on a
    larger buffer (-ENOSPC). With an exact buffer both bugs are invisible. Expected streams
    are the golden vectors'."""
    from recvmap.fuzz.subjects.build import build_library
    from recvmap.qemu_ref import load

    v = next(v for v in VECTORS["vectors"] if v["nbits"] > 64)
    lib = load(build_library(64, {"ram.c": [edit]} if edit else None), 64)
    ctx = c_ctx(lib)
    rb = ctx.ram_block_add("pc.ram", v["nbits"] * TPS, v["max_pages"] * TPS)
    ctx.ramblock_recv_map_init()
    for page in set_list(v) + v["tail_bits"]:
        ctx.ramblock_recv_bitmap_set_offset(rb, page * TPS)
    got = ctx.ramblock_recv_bitmap_send("pc.ram", spare)
    golden = expected_stream(v, 64)
    if ret is None:
        assert got == (golden + (tail or b""), v["ret"])
    else:
        assert got == (b"", ret)
    assert send(model(LP64_LE), "nope", spare) == (b"", -1)  # the model's sender: no buffer
    with pytest.raises(PreconditionError, match="spare"):
        ctx.ramblock_recv_bitmap_send("pc.ram", -1)
