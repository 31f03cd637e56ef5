# SPDX-License-Identifier: GPL-2.0-or-later
"""The model of the received-page bitmap: target pages, blocks, accessors, discard, postcopy.

Each test states the QEMU rule it checks (migration/ram.c, include/exec/ram_addr.h,
system/physmem.c, migration/postcopy-ram.c, page-vary-target.c) and every error path.
"""

from __future__ import annotations

import pytest

from recvmap.pymodel import arch
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.ramblock import RamContext, Side, TargetPage, c_long
from recvmap.pymodel.words import ILP32_LE, LP64_BE, LP64_LE, Layout

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
LAYOUTS = (LP64_LE, ILP32_LE, LP64_BE, Layout(32, True))


def ctx_for(bits: int = 12, layout: Layout = LP64_LE, **kw: object) -> RamContext:
    return RamContext(TargetPage.fixed(bits), layout=layout, **kw)  # type: ignore[arg-type]


def bits_of(ctx: RamContext, rb: object) -> list[int]:
    from recvmap.pymodel.scenarios import set_bits

    m = rb.receivedmap  # type: ignore[attr-defined]
    return set_bits(m, ctx.layout, m.nbits)


# --- target page bits (page-vary-target.c) -----------------------------------------------


def test_fixed_target_page_ignores_requests() -> None:
    tp = TargetPage.fixed(12)
    assert tp.decided and tp.qemu_target_page_bits() == 12
    assert tp.set_preferred_target_page_bits(10) is True
    tp.finalize_target_page_bits()
    assert tp.qemu_target_page_size() == 4096


def test_variable_target_page_lowers_then_freezes() -> None:
    tp = TargetPage.variable(10)
    with pytest.raises(PreconditionError, match="finalize_target_page_bits"):
        tp.qemu_target_page_bits()
    assert tp.set_preferred_target_page_bits(14)
    assert tp.set_preferred_target_page_bits(12)  # lowered
    assert tp.set_preferred_target_page_bits(13)  # never raised, still true
    assert tp.bits == 12
    tp.finalize_target_page_bits()
    assert tp.qemu_target_page_bits() == 12
    assert tp.set_preferred_target_page_bits(12) is True  # no change needed
    assert tp.set_preferred_target_page_bits(11) is False  # frozen
    assert tp.qemu_target_page_bits() == 12


def test_variable_target_page_defaults_to_min_and_asserts_min() -> None:
    tp = TargetPage.variable(10)
    with pytest.raises(PreconditionError, match="TARGET_PAGE_BITS_MIN"):
        tp.set_preferred_target_page_bits(9)
    tp.finalize_target_page_bits()
    assert tp.qemu_target_page_bits() == 10
    with pytest.raises(PreconditionError):
        TargetPage(0)


@pytest.mark.parametrize(
    ("name", "board", "version", "bits"),
    [
        ("arm", None, None, 10),
        ("aarch64", "virt", None, 12),
        ("aarch64", "virt", "2.7", 10),
        ("arm", "sbsa-ref", None, 12),
        ("avr", None, None, 10),
        ("avr", None, "10.0", 8),
        ("avr", None, "10.1", 10),
        ("loongarch64", None, "8.1", 14),
        ("loongarch64", None, "8.2", 12),
        ("mips64el", "loongson3-virt", "9.2", 14),
        ("mips64el", "fuloong2e", "5.1", 14),
        ("mips64el", "fuloong2e", "5.0", 12),
        ("mips64el", "loongson3-virt", "10.0", 12),
        ("sparc64", None, None, 13),
        ("tricore", None, None, 14),
        ("hexagon", None, None, 16),
    ],
)
def test_target_page_for_target(
    name: str, board: str | None, version: str | None, bits: int
) -> None:
    tp = TargetPage.for_target(name, board=board, qemu_version=version)
    assert tp.decided and tp.qemu_target_page_bits() == bits


# --- the arch tables ----------------------------------------------------------------------


def test_arch_tables_render_every_row() -> None:
    text = arch.render_tables()
    for t in arch.TARGETS:
        assert t.name in text
    for h in arch.HOSTS:
        assert h.name in text
    assert "8 before QEMU 10.1" in text and "14 before QEMU 8.2" in text
    assert "in QEMU 5.1..9.2" in text and "virt since 2.8" in text
    with pytest.raises(KeyError):
        arch.target("nios2")
    with pytest.raises(KeyError):
        arch.host("vax")


def test_postcopy_combinations() -> None:
    combos = arch.postcopy_combinations()
    names = {c.target for c in combos}
    assert "hexagon" not in names  # user mode only
    assert "win64" not in {c.host for c in combos}  # no userfaultfd
    x86 = {(c.host, c.page_size) for c in combos if c.target == "x86_64"}
    assert {("x86_64", 4 * KIB), ("x86_64", 2 * MIB), ("x86_64", GIB)} <= x86
    # 16K target pages only fit hosts with at least 16K base pages
    tri = {c.host for c in combos if c.target == "tricore"}
    assert tri == {h.name for h in arch.HOSTS if h.postcopy and h.base_page >= 16 * KIB}
    every = arch.postcopy_combinations(every_page_bits=True)
    old_loong = {c.host for c in every if c.target == "loongarch64" and c.target_page_bits == 14}
    assert "x86_64" not in old_loong and "loongarch64" in old_loong
    assert all(c.page_size >= 1 << c.target_page_bits for c in every)
    assert arch.size_str(256) == "256" and arch.size_str(16 * GIB) == "16G"


# --- RAMBlock creation rules --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"idstr": ""}, "idstr"),
        ({"idstr": "x" * 256}, "idstr"),
        ({"idstr": "a\0b"}, "idstr"),
        ({"used_length": 4096 + 512}, "used_length"),
        ({"used_length": 8192, "max_length": 4096}, "used_length"),
        ({"max_length": 4096 * 3 + 1}, "max_length"),
        ({"used_length": 0, "max_length": 0}, "max_length"),
        ({"postcopy_length": 12288}, "postcopy_length"),
        ({"page_size": 3 * 4096}, "page_size"),
        ({"page_size": 2048}, "page_size"),
        ({"page_size": 2 * MIB}, "used_length"),  # 8K is not whole 2M pages
        ({"host": 0x1000_0800}, "host"),
        ({"host": (1 << 64) - 4096}, "host"),
        ({"used_length": -4096}, "used_length"),
    ],
)
def test_block_creation_rejects_broken_rules(kwargs: dict[str, object], argument: str) -> None:
    ctx = ctx_for()
    args: dict[str, object] = {"idstr": "ram", "used_length": 8192}
    args.update(kwargs)
    with pytest.raises(PreconditionError) as e:
        ctx.ram_block_add(**args)  # type: ignore[arg-type]
    assert e.value.function == "ram_block_add" and e.value.argument == argument
    assert ctx.ram_list.blocks == []


def test_block_creation_rules_against_target_and_host() -> None:
    ctx = ctx_for(14)  # 16K target pages on a 4K host: lengths are 16K multiples
    with pytest.raises(PreconditionError, match="0x4000"):
        ctx.ram_block_add("ram", 8192)
    a = ctx.ram_block_add("a", 32 * KIB)
    with pytest.raises(PreconditionError, match="unique"):
        ctx.ram_block_add("a", 16 * KIB)
    with pytest.raises(PreconditionError, match="overlap"):
        ctx.ram_block_add("b", 16 * KIB, host=a.host + 16 * KIB)
    b = ctx.ram_block_add("b", 16 * KIB)
    assert b.host >= a.host + a.max_length and b.host % b.page_size == 0
    x86 = RamContext.for_host(arch.host("x86_64"), TargetPage.fixed(12))
    with pytest.raises(PreconditionError, match="host x86_64"):
        x86.ram_block_add("m", 64 * KIB * 32, page_size=64 * KIB)
    huge = x86.ram_block_add("m", 2 * GIB, page_size=GIB)
    assert huge.host % GIB == 0 and huge.postcopy_length == 2 * GIB
    small = RamContext.for_host(arch.host("i386"), TargetPage.fixed(12))
    with pytest.raises(PreconditionError, match="32-bit space"):
        small.ram_block_add("m", 4 * GIB)
    assert "RAMBlock('a'" in repr(a) and "vary" in repr(TargetPage.variable(10))


# --- ramblock_recv_map_init / ram_load_cleanup ---------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_map_init_sizes_by_max_length_and_skips_ignored(layout: Layout) -> None:
    ctx = ctx_for(layout=layout)
    a = ctx.ram_block_add("a", 4 * 4096, 100 * 4096)
    b = ctx.ram_block_add("b", 4096, migratable=False)
    c = ctx.ram_block_add("c", 4096, ignored=True)
    ctx.ramblock_recv_map_init()
    assert a.receivedmap is not None
    bpl = layout.bits_per_long
    assert a.receivedmap.nwords == -(-100 // bpl)
    assert b.receivedmap is None and c.receivedmap is None
    assert ctx.ramblock_is_ignored(b) and ctx.ramblock_is_ignored(c)
    with pytest.raises(PreconditionError, match="assert"):
        ctx.ramblock_recv_map_init()
    assert ctx.ram_load_cleanup() == 0
    assert a.receivedmap is None
    assert ctx.ram_load_cleanup() == 0  # harmless the second time
    ctx.ramblock_recv_map_init()  # and a new load can start
    assert a.receivedmap is not None and not bits_of(ctx, a)


def test_map_init_needs_destination_and_finalized_page() -> None:
    src = ctx_for(side=Side.SOURCE)
    src.ram_block_add("a", 4096)
    with pytest.raises(PreconditionError, match="destination"):
        src.ramblock_recv_map_init()
    ctx = RamContext(TargetPage.variable(10))
    with pytest.raises(PreconditionError, match="finalize"):
        ctx.ram_block_add("a", 4096)


# --- offsets and accessors ----------------------------------------------------------------


def test_offset_is_target_pages_from_the_base() -> None:
    ctx = ctx_for()
    rb = ctx.ram_block_add("a", 16 * 4096)
    assert ctx.ramblock_recv_bitmap_offset(rb.host, rb) == 0
    assert ctx.ramblock_recv_bitmap_offset(rb.host + 4095, rb) == 0
    assert ctx.ramblock_recv_bitmap_offset(rb.host + 5 * 4096 + 7, rb) == 5
    # past the block: no check either
    assert ctx.ramblock_recv_bitmap_offset(rb.host + 20 * 4096, rb) == 20


@pytest.mark.parametrize(
    ("layout", "pointer_bits", "expected"),
    [
        (LP64_LE, 64, (1 << 52) - 1),  # (2**64 - 4096) >> 12
        (ILP32_LE, 32, (1 << 20) - 1),  # (2**32 - 4096) >> 12
        (Layout(32, False), 64, (1 << 32) - 1),  # LLP64: 64-bit difference, 32-bit long
    ],
)
def test_offset_below_base_wraps(layout: Layout, pointer_bits: int, expected: int) -> None:
    ctx = ctx_for(layout=layout, pointer_bits=pointer_bits)
    rb = ctx.ram_block_add("a", 16 * 4096)
    assert ctx.ramblock_recv_bitmap_offset(rb.host - 4096, rb) == expected
    with pytest.raises(PreconditionError, match="strict"):
        ctx.ramblock_recv_bitmap_offset(rb.host - 4096, rb, strict=True)
    with pytest.raises(PreconditionError, match="void"):
        ctx.ramblock_recv_bitmap_offset(1 << pointer_bits, rb)


def test_strict_context_rejects_addresses_outside_the_block() -> None:
    ctx = ctx_for(strict=True)
    rb = ctx.ram_block_add("a", 16 * 4096)
    ctx.ramblock_recv_map_init()
    with pytest.raises(PreconditionError, match="strict"):
        ctx.ramblock_recv_bitmap_set(rb, rb.host + 16 * 4096)
    with pytest.raises(PreconditionError, match="strict"):
        ctx.ramblock_recv_bitmap_test(rb, rb.host - 1)
    assert ctx.ramblock_recv_bitmap_offset(rb.host - 1, rb, strict=False) > 0
    assert not bits_of(ctx, rb)


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_set_test_and_byte_offsets(layout: Layout) -> None:
    ctx = ctx_for(layout=layout)
    rb = ctx.ram_block_add("a", 70 * 4096)
    ctx.ramblock_recv_map_init()
    ctx.ramblock_recv_bitmap_set(rb, rb.host + 3 * 4096 + 100)
    ctx.ramblock_recv_bitmap_set_offset(rb, 65 * 4096 + 4095)
    assert ctx.ramblock_recv_bitmap_test(rb, rb.host + 3 * 4096) == 1
    assert ctx.ramblock_recv_bitmap_test(rb, rb.host + 4 * 4096) == 0
    assert ctx.ramblock_recv_bitmap_test_byte_offset(rb, 65 * 4096) is True
    assert ctx.ramblock_recv_bitmap_test_byte_offset(rb, 64 * 4096) is False
    ctx.ramblock_recv_bitmap_set_range(rb, rb.host + 10 * 4096, 5)  # nr counts target pages
    ctx.ramblock_recv_bitmap_set_range(rb, rb.host + 30 * 4096, 0)  # no-op
    assert bits_of(ctx, rb) == [3, 10, 11, 12, 13, 14, 65]


def test_memory_image_follows_the_host_byte_order() -> None:
    images = {}
    for layout in LAYOUTS:
        ctx = ctx_for(layout=layout)
        rb = ctx.ram_block_add("a", 64 * 4096)
        ctx.ramblock_recv_map_init()
        ctx.ramblock_recv_bitmap_set(rb, rb.host)
        images[str(layout)] = rb.receivedmap.image()  # type: ignore[union-attr]
    assert images[str(LP64_LE)][:8] == bytes([1, 0, 0, 0, 0, 0, 0, 0])
    assert images[str(ILP32_LE)] == images[str(LP64_LE)]
    assert images[str(LP64_BE)][:8] == bytes([0, 0, 0, 0, 0, 0, 0, 1])
    assert images[str(Layout(32, True))][:8] == bytes([0, 0, 0, 1, 0, 0, 0, 0])


def test_tail_bits_inside_the_last_word_are_reachable() -> None:
    ctx = ctx_for()
    rb = ctx.ram_block_add("a", 3 * 4096)  # 3 bits, one 64-bit word
    ctx.ramblock_recv_map_init()
    ctx.ramblock_recv_bitmap_set(rb, rb.host + 40 * 4096)  # QEMU writes the tail, no check
    assert ctx.ramblock_recv_bitmap_test_byte_offset(rb, 40 * 4096)
    with pytest.raises(PreconditionError):  # word 1 is past the allocation
        ctx.ramblock_recv_bitmap_set(rb, rb.host + 64 * 4096)
    with pytest.raises(PreconditionError):  # a wrapped address is a huge index
        ctx.ramblock_recv_bitmap_test(rb, rb.host - 4096)
    with pytest.raises(PreconditionError):
        ctx.ramblock_recv_bitmap_set_range(rb, rb.host + 60 * 4096, 5)
    assert bits_of(ctx, rb) == [40]


def test_accessor_error_paths() -> None:
    ctx = ctx_for()
    rb = ctx.ram_block_add("a", 4 * 4096)
    for call in (
        lambda: ctx.ramblock_recv_bitmap_test(rb, rb.host),
        lambda: ctx.ramblock_recv_bitmap_set(rb, rb.host),
        lambda: ctx.ramblock_recv_bitmap_set_range(rb, rb.host, 1),
        lambda: ctx.ramblock_recv_bitmap_set_offset(rb, 0),
        lambda: ctx.ramblock_recv_bitmap_test_byte_offset(rb, 0),
    ):
        with pytest.raises(PreconditionError, match="receivedmap"):
            call()
    ctx.ramblock_recv_map_init()
    with pytest.raises(PreconditionError, match="uint64_t"):
        ctx.ramblock_recv_bitmap_set_offset(rb, 1 << 64)
    with pytest.raises(PreconditionError, match="uint64_t"):
        ctx.ramblock_recv_bitmap_test_byte_offset(rb, -1)
    with pytest.raises(PreconditionError, match="size_t"):
        ctx.ramblock_recv_bitmap_set_range(rb, rb.host, -1)
    with pytest.raises(PreconditionError):  # (size_t)2**63 becomes a negative long: assert
        ctx.ramblock_recv_bitmap_set_range(rb, rb.host, 1 << 63)
    assert not bits_of(ctx, rb)


def test_c_long_conversion() -> None:
    assert c_long(5, 32) == 5
    assert c_long((1 << 32) - 1, 32) == -1
    assert c_long(1 << 63, 64) == -(1 << 63)
    assert c_long((1 << 40) + 3, 32) == 3


# --- discard ------------------------------------------------------------------------------


def test_discard_clears_then_succeeds() -> None:
    ctx = ctx_for()
    rb = ctx.ram_block_add("a", 16 * 4096)
    ctx.ramblock_recv_map_init()
    ctx.ramblock_recv_bitmap_set_range(rb, rb.host, 16)
    assert ctx.ram_discard_range("a", 4 * 4096, 3 * 4096) == 0
    assert bits_of(ctx, rb) == [0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert ctx.error_log == []


def test_discard_unknown_block() -> None:
    ctx = ctx_for()
    assert ctx.ram_discard_range("nope", 0, 4096) == -1
    assert ctx.error_log == ["ram_discard_range: Failed to find block 'nope'"]


@pytest.mark.parametrize(
    ("start", "length", "message", "left"),
    [
        (4096, 4096, "Unaligned start address", [0, 2, 3, 4]),  # mid 8K host page
        (4096 + 100, 4096, "Unaligned start address", [0, 2, 3, 4]),  # the shift truncates
        (8192, 4096, "Unaligned length", [0, 1, 3, 4]),
        (8192, 3 * 4096, "Overrun block", [0, 1]),  # bits 2..4 cleared; 4 is a tail bit
    ],
)
def test_discard_clears_first_even_when_checks_fail(
    start: int, length: int, message: str, left: list[int]
) -> None:
    ctx = ctx_for()
    rb = ctx.ram_block_add("a", 4 * 4096, page_size=8192)  # 8K host pages
    ctx.ramblock_recv_map_init()
    ctx.ramblock_recv_bitmap_set_range(rb, rb.host, 5)  # 4 pages and one tail bit
    assert ctx.ram_discard_range("a", start, length) == -1
    assert message in ctx.error_log[-1]
    assert bits_of(ctx, rb) == left


def test_discard_messages_are_qemus() -> None:
    ctx = ctx_for()
    rb = ctx.ram_block_add("blk", 4 * 4096, host=0x10000)
    assert ctx.ram_block_discard_range(rb, 100, 4096) == -1
    assert ctx.ram_block_discard_range(rb, 0, 5 * 4096) == -1
    assert ctx.ram_block_discard_range(rb, 0, 100) == -1
    assert ctx.ram_block_discard_range(rb, 0, 4 * 4096) == 0
    assert ctx.error_log == [
        "ram_block_discard_range: Unaligned start address: 0x10064",
        "ram_block_discard_range: Overrun block 'blk' (0/5000/4000)",
        "ram_block_discard_range: Unaligned length: 64",
    ]


def test_discard_overrun_check_wraps_in_uint64() -> None:
    ctx = ctx_for()
    rb = ctx.ram_block_add("a", 4 * 4096)
    # start + length wraps to 4096 <= max_length: QEMU's check passes
    assert ctx.ram_block_discard_range(rb, (1 << 64) - 4096, 8192) == 0
    ctx.ramblock_recv_map_init()
    with pytest.raises(PreconditionError):  # but clearing that range is outside the map
        ctx.ram_discard_range("a", (1 << 64) - 4096, 8192)
    with pytest.raises(PreconditionError, match="uint64_t"):
        ctx.ram_discard_range("a", 1 << 64, 0)
    with pytest.raises(PreconditionError, match="size_t"):
        ctx.ram_discard_range("a", 0, -1)


def test_discard_on_the_source_touches_no_map() -> None:
    src = ctx_for(side=Side.SOURCE)
    rb = src.ram_block_add("a", 4 * 4096)
    assert src.ram_discard_range("a", 0, 4096) == 0
    assert src.ram_discard_range("a", 100, 4096) == -1
    assert rb.receivedmap is None


# --- postcopy placement -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_bits", "base", "page_size", "per_page"),
    [
        (12, 4 * KIB, 4 * KIB, 1),
        (10, 4 * KIB, 4 * KIB, 4),
        (12, 4 * KIB, 2 * MIB, 512),
        (13, 64 * KIB, 64 * KIB, 8),
        (14, 16 * KIB, 32 * MIB, 2048),
    ],
)
def test_place_page_sets_a_whole_host_page(
    target_bits: int, base: int, page_size: int, per_page: int
) -> None:
    ctx = ctx_for(target_bits, host_page_size=base)
    rb = ctx.ram_block_add("a", 4 * page_size, page_size=page_size)
    ctx.ramblock_recv_map_init()
    assert ctx.postcopy_ram_supported_by_host()
    assert ctx.postcopy_place_page(rb.host + 2 * page_size, rb) == 0
    assert bits_of(ctx, rb) == list(range(2 * per_page, 3 * per_page))


def test_place_page_refused_and_error_paths() -> None:
    ctx = ctx_for(14)  # 16K target on a 4K host
    rb = ctx.ram_block_add("a", 64 * KIB)
    ctx.ramblock_recv_map_init()
    assert ctx.postcopy_ram_supported_by_host() is False
    assert ctx.error_log == ["Target page size bigger than host page size"]
    with pytest.raises(PreconditionError, match="postcopy_ram_supported_by_host"):
        ctx.postcopy_place_page(rb.host, rb)
    ok = ctx_for(12)
    rb = ok.ram_block_add("a", 4 * 2 * MIB, page_size=2 * MIB)
    with pytest.raises(PreconditionError, match="receivedmap"):
        ok.postcopy_place_page(rb.host, rb)
    ok.ramblock_recv_map_init()
    for bad in (rb.host + 4096, rb.host - 2 * MIB, rb.host + 4 * 2 * MIB):
        with pytest.raises(PreconditionError, match="host page"):
            ok.postcopy_place_page(bad, rb)
    src = ctx_for(12, side=Side.SOURCE)
    sb = src.ram_block_add("a", 4096)
    with pytest.raises(PreconditionError, match="destination"):
        src.postcopy_place_page(sb.host, sb)
    # Windows has QEMU's stub (migration/postcopy-ram.c without userfaultfd): its own
    # text, in every release, and no page-size check even for 8K target pages on 4K
    for bits in (12, 13):
        win = RamContext.for_host(arch.host("win64"), TargetPage.fixed(bits))
        assert win.postcopy_ram_supported_by_host() is False
        assert win.error_log == ["postcopy_ram_supported_by_host: No OS support"]
    assert not bits_of(ok, rb)


def test_source_bitmaps() -> None:
    src = ctx_for(side=Side.SOURCE)
    rb = src.ram_block_add("a", 4 * 4096, 70 * 4096)
    src.ram_list_init_bitmaps()
    assert rb.bmap is not None
    with pytest.raises(PreconditionError, match="NULL"):
        src.ram_list_init_bitmaps()
    src.ram_save_cleanup()
    assert rb.bmap is None
    dst = ctx_for()
    with pytest.raises(PreconditionError, match="source"):
        dst.ram_list_init_bitmaps()
