# SPDX-License-Identifier: GPL-2.0-or-later
"""The model and the C ram layer agree on every result, message and map byte.

The matrix is (target x target page bits x host x RAMBlock page size x word width):
every QEMU system target with its board and historical page sizes, every host of the
arch table with its base page and hugepages, each host's own word width plus a 32-bit
variant of 64-bit hosts. A fixed-seed sample of the matrix (plus its corners) runs a
random program of receivedmap operations on both sides; calls the model rejects must be
rejected by the checked C face too, and never reach C.

Big-endian hosts run the model in their byte order and the C library (little-endian) with
the same word width: the model's image, word-swapped, must equal C's. LLP64 (64-bit
Windows: 32-bit long, 64-bit pointers) is model-only; the C library emulates LP64/ILP32.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import pytest

from recvmap.pymodel import arch
from recvmap.pymodel.errors import PreconditionError, RecoveryError
from recvmap.pymodel.ramblock import RamApi, RamContext, Side, TargetPage
from recvmap.pymodel.words import Layout
from recvmap.qemu_ref.ram import CRamContext, c_context, library

MIB = 1 << 20
SAMPLE = int(os.environ.get("RECVMAP_RAM_SAMPLE", "900"))  # of ~2000; all if larger
OPS = 40
SMALL_MAP = 1 << 16  # compare images after every op below this many bytes
MAX_MAP_BITS = 1 << 22


@dataclass(frozen=True)
class Combo:
    target: str
    bits: int
    host: str
    page_size: int
    bpl: int

    def __str__(self) -> str:
        return f"{self.target}/{self.bits}-{self.host}-{arch.size_str(self.page_size)}-{self.bpl}"


def matrix() -> list[Combo]:
    out = []
    for t in arch.TARGETS:
        if not t.system:
            continue
        for bits in t.page_bits_choices():
            for h in arch.HOSTS:
                widths = [h.bits_per_long]
                for ps in h.page_sizes:
                    if h.bits_per_long == 64 and ps <= 256 * MIB:
                        widths_ps = [*widths, 32]
                    else:
                        widths_ps = widths
                    out += [Combo(t.name, bits, h.name, ps, w) for w in widths_ps]
    return out


def sample() -> list[Combo]:
    everything = matrix()
    corners = [
        c
        for c in everything
        if (c.host, c.page_size) in {("aarch64-64k", 16 << 30), ("s390x", 1 << 20)}
        and c.target in ("arm", "s390x", "avr")
    ]
    corners += [c for c in everything if c.host in ("i386", "win64") and c.target == "x86_64"]
    rng = random.Random(20170620)
    if SAMPLE >= len(everything):
        return everything
    return corners + rng.sample(everything, SAMPLE)


COMBOS = sample()


def _target_page(c: Combo) -> TargetPage:
    t = arch.target(c.target)
    if t.vary:
        tp = TargetPage.variable(t.page_bits)
        tp.set_preferred_target_page_bits(c.bits)
        tp.finalize_target_page_bits()
        return tp
    return TargetPage.fixed(c.bits)


def no_c_face(c: Combo) -> str | None:
    """Why combination ``c`` runs on the model alone, or None when C runs it too."""
    h = arch.host(c.host)
    pointer_bits = h.pointer_bits if c.bpl == h.bits_per_long else 32
    if pointer_bits == c.bpl:
        return None
    return (
        f"{c.host}: {c.bpl}-bit long with {pointer_bits}-bit pointers (LLP64) is model-only, "
        "the C library emulates LP64 and ILP32 only"
    )


def _contexts(c: Combo, side: Side) -> tuple[RamContext, CRamContext | None]:
    h = arch.host(c.host)
    own = c.bpl == h.bits_per_long
    pointer_bits = h.pointer_bits if own else 32
    layout = Layout(c.bpl, h.big_endian)
    m = RamContext(
        _target_page(c),
        side=side,
        layout=layout,
        host_page_size=h.base_page,
        pointer_bits=pointer_bits,
        host=h if own else None,
    )
    if no_c_face(c) is not None:
        return m, None
    cc = c_context(
        _target_page(c),
        side=side,
        layout=Layout(c.bpl, False),
        host_page_size=h.base_page,
        pointer_bits=pointer_bits,
        lib=library(c.bpl),
    )
    return m, cc


def le_image(image: bytes, layout: Layout) -> bytes:
    if not layout.big_endian:
        return image
    n = layout.bits_per_long // 8
    return b"".join(image[i : i + n][::-1] for i in range(0, len(image), n))


def _images(ctx: RamApi, attr: str) -> list[bytes | None]:
    out: list[bytes | None] = []
    for name in ("ram0", "ram1", "rom"):
        m = getattr(ctx.qemu_ram_block_by_name(name), attr)
        out.append(None if m is None else le_image(m.image(), ctx.layout))
    return out


def _run(ctx: RamApi, op: tuple[Any, ...]) -> Any:
    """One operation; blocks are named so both sides resolve their own objects."""
    name, *args = op
    if name in ("map_init", "cleanup", "supported", "init_bitmaps"):
        fn = {
            "map_init": ctx.ramblock_recv_map_init,
            "cleanup": ctx.ram_load_cleanup,
            "supported": ctx.postcopy_ram_supported_by_host,
            "init_bitmaps": ctx.ram_list_init_bitmaps,
        }[name]
        return fn()
    if name == "discard":
        return ctx.ram_discard_range(*args)
    if name == "send":
        return ctx.ramblock_recv_bitmap_send(*args)
    rb = ctx.qemu_ram_block_by_name(args[0])
    rest = args[1:]
    if name in ("set", "test", "offset"):
        addr = rb.host + rest[0]
        fn = {
            "set": ctx.ramblock_recv_bitmap_set,
            "test": ctx.ramblock_recv_bitmap_test,
        }.get(name)
        if fn is None:
            return ctx.ramblock_recv_bitmap_offset(addr, rb)
        return fn(rb, addr)
    if name == "set_range":
        return ctx.ramblock_recv_bitmap_set_range(rb, rb.host + rest[0], rest[1])
    if name == "set_offset":
        return ctx.ramblock_recv_bitmap_set_offset(rb, rest[0])
    if name == "test_byte_offset":
        return ctx.ramblock_recv_bitmap_test_byte_offset(rb, rest[0])
    if name == "block_discard":
        return ctx.ram_block_discard_range(rb, *rest)
    if name == "place":
        return ctx.postcopy_place_page(rb.host + rest[0], rb)
    if name == "reload":
        return ctx.ram_dirty_bitmap_reload(rb, rest[0])
    raise AssertionError(name)


def _outcome(ctx: RamApi, op: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "ok", _run(ctx, op)
    except PreconditionError as e:
        return "precondition", (e.function, e.argument)
    except RecoveryError as e:
        return "recovery", (e.ret, str(e))


def program(c: Combo, rng: random.Random, tps: int, pages: int) -> list[tuple[Any, ...]]:
    """A random receivedmap program over blocks ram0 (used < max), ram1 and rom (ignored)."""
    ps = c.page_size
    span = pages * tps
    ops: list[tuple[Any, ...]] = [("supported",), ("map_init",)]

    def page() -> int:
        return rng.choice([0, 1, pages - 1, pages, pages + 5, rng.randrange(pages + 80)])

    for _ in range(OPS):
        k = rng.randrange(14)
        blk = rng.choice(["ram0", "ram0", "ram1", "rom"])
        if k == 0:
            ops.append(("set", blk, page() * tps + rng.randrange(tps)))
        elif k == 1:
            ops.append(("set_offset", blk, page() * tps + rng.choice([0, tps - 1])))
        elif k == 2:
            ops.append(("set_range", blk, page() * tps, rng.choice([0, 1, 3, 64, pages])))
        elif k == 3:
            ops.append(("test", blk, page() * tps))
        elif k == 4:
            ops.append(("test_byte_offset", blk, page() * tps + rng.randrange(tps)))
        elif k == 5:
            start = rng.choice([0, ps, tps, ps + 100, span - ps])
            length = rng.choice([ps, 2 * ps, tps, ps + tps, span])
            ops.append(("discard", rng.choice([blk, "nope"]), max(start, 0), length))
        elif k == 6:
            ops.append(("block_discard", blk, rng.choice([0, ps, 100]), rng.choice([ps, 7])))
        elif k == 7:
            ops.append(("place", blk, rng.randrange(max(1, span // ps) + 1) * ps))
        elif k == 8:
            ops.append(("offset", blk, rng.choice([-tps, -1, 0, span, 3 * tps])))
        elif k == 9:
            ops.append(("send", rng.choice([blk, "nope"])))
        elif k == 10:
            ops.append(("cleanup",))
            ops.append(("map_init",))
        elif k == 11:
            ops.append(("cleanup",))
        elif k == 12:
            ops.append(("set", blk, -tps))  # wraps: outside the domain on both sides
        else:
            ops.append(("map_init",))
    ops.append(("send", "ram0"))
    return ops


def _blocks(ctx: RamApi, c: Combo, pages: int, tps: int) -> None:
    unit = max(c.page_size, tps)
    used = max(unit, (pages * tps) // unit * unit)
    ctx.ram_block_add("ram0", used, used + unit, page_size=c.page_size)
    ctx.ram_block_add("ram1", unit, page_size=c.page_size)
    ctx.ram_block_add("rom", unit, page_size=c.page_size, migratable=False)


def _pages(c: Combo) -> int:
    tps = 1 << c.bits
    per_page = max(1, c.page_size // tps)
    return max(1, min(3 * per_page, MAX_MAP_BITS // 2))


@pytest.mark.parametrize("c", COMBOS, ids=str)
def test_program_agrees(c: Combo) -> None:
    rng = random.Random(str(c))
    m, cc = _contexts(c, Side.DESTINATION)
    tps = m.qemu_target_page_size()
    pages = _pages(c)
    _blocks(m, c, pages, tps)
    if cc is not None:
        _blocks(cc, c, pages, tps)
    ops = program(c, rng, tps, pages)
    small = pages // 8 < SMALL_MAP
    last_stream = None
    for i, op in enumerate(ops):
        mo = _outcome(m, op)
        if mo[0] == "ok" and op[0] == "send" and mo[1][1] > 0:
            last_stream = mo[1][0]
        if cc is None:
            continue
        co = _outcome(cc, op)
        assert co == mo, f"op {i} {op}: C {co} != model {mo}"
        assert cc.error_log == m.error_log, f"op {i} {op}"
        if small or i == len(ops) - 1:
            assert _images(cc, "receivedmap") == _images(m, "receivedmap"), f"op {i} {op}"
    if last_stream is not None:
        _reload_agrees(c, last_stream)
    if cc is not None:
        cc.close()
    else:  # the model ran the program without complaint; nothing was compared
        pytest.skip(str(no_c_face(c)))


def _reload_agrees(c: Combo, stream: bytes) -> None:
    m, cc = _contexts(c, Side.SOURCE)
    tps = m.qemu_target_page_size()
    pages = _pages(c)
    _blocks(m, c, pages, tps)
    ops = [("init_bitmaps",), ("reload", "ram0", stream), ("reload", "ram0", stream[:-1])]
    if cc is not None:
        _blocks(cc, c, pages, tps)
    for op in ops:
        mo = _outcome(m, op)
        assert mo[0] != "precondition", mo
        if cc is not None:
            assert _outcome(cc, op) == mo
            assert _images(cc, "bmap") == _images(m, "bmap")
    if cc is not None:
        cc.close()


def test_matrix_covers_the_tables() -> None:
    everything = matrix()
    assert {c.target for c in everything} == {t.name for t in arch.TARGETS if t.system}
    assert {c.host for c in everything} == {h.name for h in arch.HOSTS}
    assert {c.bpl for c in COMBOS} == {32, 64}
    assert any(arch.host(c.host).big_endian for c in COMBOS)
    assert any(c.page_size >= 1 << 30 for c in COMBOS)


def test_c_face_guards() -> None:
    """The C face refuses layouts the library cannot emulate and calls outside the domain."""
    from recvmap.pymodel.words import LP64_BE, LP64_LE

    tp = TargetPage.fixed(12)
    with pytest.raises(ValueError, match="little-endian"):
        c_context(tp, layout=LP64_BE, lib=library(64))
    with pytest.raises(ValueError, match="little-endian"):
        c_context(tp, layout=Layout(32, False), pointer_bits=64, lib=library(32))
    with pytest.raises(ValueError, match="checked"):
        c_context(tp, strict=True, checked=False, lib=library(64))
    with pytest.raises(ValueError, match="32-bit library"):
        c_context(tp, layout=LP64_LE, lib=library(32))
    ctx = c_context(tp, lib=library(64), strict=True)
    rb = ctx.ram_block_add("a", 4 * 4096)
    assert ctx.qemu_ram_block_by_name("a") is rb and ctx.qemu_ram_block_by_name("b") is None
    assert not ctx.ramblock_is_ignored(rb) and repr(rb).startswith("CRAMBlock('a'")
    with pytest.raises(PreconditionError, match="receivedmap"):
        ctx.ramblock_recv_bitmap_set(rb, rb.host)  # would dereference NULL in C
    ctx.ramblock_recv_map_init()
    with pytest.raises(PreconditionError, match="strict"):
        ctx.ramblock_recv_bitmap_set(rb, rb.host - 1)
    with pytest.raises(PreconditionError, match="allocation"):
        ctx.ramblock_recv_bitmap_set_offset(rb, 64 * 4096)  # past the one word
    ctx.ramblock_recv_bitmap_set_offset(rb, 63 * 4096)  # a tail bit: fine
    assert rb.receivedmap is not None and rb.receivedmap.nbits == 64
    rb.receivedmap.load_image(bytes([1]) + bytes(7))
    assert ctx.ramblock_recv_bitmap_test(rb, rb.host) == 1
    with pytest.raises(ValueError, match="image"):
        rb.receivedmap.load_image(b"")
    assert (rb.used_length, rb.max_length, rb.postcopy_length, rb.page_size) == (
        4 * 4096,
        4 * 4096,
        4 * 4096,
        4096,
    )
    assert rb.migratable and not rb.ignored
    ctx.close()
    assert rb.receivedmap is None
    ctx.close()  # harmless twice


def test_only_llp64_combinations_lack_a_c_face() -> None:
    """The combinations test_program_agrees skips (counted, with their reason) are exactly
    those of an LLP64 host: a new host or width without a C face cannot hide there."""
    skipped = [c for c in COMBOS if no_c_face(c) is not None]
    llp64 = [
        c
        for c in COMBOS
        if c.bpl == arch.host(c.host).bits_per_long and arch.host(c.host).pointer_bits != c.bpl
    ]
    print(f"{len(skipped)} of {len(COMBOS)} combinations are model-only (LLP64)")
    assert skipped == llp64
    assert {c.host for c in skipped} <= {h.name for h in arch.HOSTS if h.name.startswith("win")}
    assert len(skipped) < len(COMBOS) // 20
