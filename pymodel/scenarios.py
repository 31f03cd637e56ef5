# SPDX-License-Identifier: GPL-2.0-or-later
"""Readable stories of the received-page bitmap, each returning what it observed.

Every story takes ``make``, a context factory (the model's ``model_context`` by default,
or the C face's ``recvmap.qemu_ref.ram.c_context``), so the same story runs on both
implementations and can be compared. They double as executable README examples::

    >>> from recvmap.pymodel import scenarios
    >>> scenarios.precopy_stream().received_pages
    [0, 1, 2, 3, 5, 8, 9, 15]
    >>> r = scenarios.recovery()
    >>> r.resent_pages == r.missing_pages and r.complete
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .arch import MIB
from .ramblock import MapLike, RamApi, Side, TargetPage, model_context
from .words import LP64_LE, Layout

ContextFactory = Callable[..., RamApi]
KIB = 1024


def set_bits(m: MapLike, layout: Layout, nbits: int) -> list[int]:
    """The set bits below ``nbits`` of a map, read from its memory image."""
    image = m.image()
    step = layout.bits_per_long // 8
    if layout.big_endian:
        image = b"".join(image[i : i + step][::-1] for i in range(0, len(image), step))
    return [n for n in range(nbits) if image[n // 8] >> (n % 8) & 1]


def _received(ctx: RamApi, rb: Any) -> list[int]:
    m = rb.receivedmap
    assert m is not None
    return set_bits(m, ctx.layout, rb.max_length >> ctx.qemu_target_page_bits())


@dataclass(frozen=True)
class PrecopyReport:
    """What the destination saw during a precopy stream."""

    pages: int
    received_pages: list[int]
    tests: list[int]
    map_image: bytes
    map_after_cleanup: bool
    second_cleanup: int


def precopy_stream(make: ContextFactory = model_context, layout: Layout = LP64_LE) -> PrecopyReport:
    """Precopy: each target page that arrives sets one bit of the destination's map.

    An x86_64 guest (4K target pages) with a 64K ``pc.ram`` block: ram_load_precopy calls
    ramblock_recv_bitmap_set(block, host) for each page it loads, and multifd marks its
    pages by byte offset (ramblock_recv_bitmap_set_offset). After the load, ram_load_cleanup
    frees the map; a second cleanup is harmless.
    """
    ctx = make(TargetPage.for_target("x86_64"), layout=layout)
    tps = ctx.qemu_target_page_size()
    rb = ctx.ram_block_add("pc.ram", 16 * tps)
    ctx.ramblock_recv_map_init()
    for page in (0, 1, 2, 5, 8, 15, 2):  # a page sent twice sets its bit once
        ctx.ramblock_recv_bitmap_set(rb, rb.host + page * tps)
    for page in (3, 9):  # multifd: offsets into the block
        ctx.ramblock_recv_bitmap_set_offset(rb, page * tps)
    tests = [ctx.ramblock_recv_bitmap_test(rb, rb.host + p * tps) for p in range(16)]
    received, image = _received(ctx, rb), rb.receivedmap.image()
    ctx.ram_load_cleanup()
    return PrecopyReport(
        16, received, tests, image, rb.receivedmap is not None, ctx.ram_load_cleanup()
    )


@dataclass(frozen=True)
class PostcopyReport:
    """What the destination saw while placing host pages and discarding ranges."""

    target_pages_per_host_page: int
    after_place: list[int]
    discard_results: list[int]
    after_discards: list[int]
    error_log: list[str]


def postcopy_run(make: ContextFactory = model_context, layout: Layout = LP64_LE) -> PostcopyReport:
    """Postcopy on a 2M-hugepage block: whole host pages arrive, discards clear first.

    An aarch64 ``virt`` guest (4K target pages) backed by 2M hugepages on an x86_64 host:
    every placed host page sets 512 bits at once. Discards then clear bits: an aligned one
    succeeds; one with an unaligned start, and one overrunning the block, fail their
    checks in ram_block_discard_range but have already cleared their bits.
    """
    ctx = make(TargetPage.for_target("aarch64", board="virt"), layout=layout)
    tps = ctx.qemu_target_page_size()
    rb = ctx.ram_block_add("mach-virt.ram", 8 * MIB, page_size=2 * MIB)
    ctx.ramblock_recv_map_init()
    assert ctx.postcopy_ram_supported_by_host()
    for hp in (0, 1, 3):
        ctx.postcopy_place_page(rb.host + hp * 2 * MIB, rb)
    after_place = _received(ctx, rb)
    pages = [
        (2 * MIB, 2 * MIB),  # whole host page 1: ok
        (6 * MIB + tps, tps),  # one target page inside host page 3: unaligned start
        (6 * MIB, 2 * MIB + 1),  # one byte past the end of the block: overrun
    ]
    results = [ctx.ram_discard_range("mach-virt.ram", s, n) for s, n in pages]
    return PostcopyReport(
        2 * MIB // tps, after_place, results, _received(ctx, rb), list(ctx.error_log)
    )


@dataclass(frozen=True)
class RefusalReport:
    """Why postcopy could not start, and what strict mode says about a wild address."""

    supported: bool
    error_log: list[str]
    wrapped_offset: int
    supported_with_12_bits: bool


def postcopy_refused(
    make: ContextFactory = model_context, layout: Layout = LP64_LE
) -> RefusalReport:
    """A failure before postcopy starts: the target page is bigger than the host page.

    loongarch64 before QEMU 8.2 used 16K target pages; an x86_64 host has 4K pages, so
    postcopy_ram_supported_by_host refuses. Since 8.2 (4K pages) postcopy is possible.
    Also: an address 4K below the block wraps to a huge bit index (QEMU does not check).
    """
    ctx = make(TargetPage.for_target("loongarch64", qemu_version="8.1"), layout=layout)
    supported = ctx.postcopy_ram_supported_by_host()
    rb = ctx.ram_block_add("loongarch.ram", 64 * KIB)
    wrapped = ctx.ramblock_recv_bitmap_offset(rb.host - 4 * KIB, rb)
    now = make(TargetPage.for_target("loongarch64"), layout=layout)
    return RefusalReport(
        supported, list(ctx.error_log), wrapped, now.postcopy_ram_supported_by_host()
    )


@dataclass(frozen=True)
class FailureReport:
    """The destination's state when the postcopy connection broke."""

    pages: int
    received_pages: list[int]
    missing_pages: list[int]


def _destination_after_failure(make: ContextFactory, layout: Layout) -> tuple[RamApi, Any]:
    ctx = make(TargetPage.for_target("x86_64"), layout=layout)
    tps = ctx.qemu_target_page_size()
    rb = ctx.ram_block_add("pc.ram", 40 * tps, 48 * tps)
    ctx.ramblock_recv_map_init()
    for page in range(0, 17):  # precopy got the first 17 pages across
        ctx.ramblock_recv_bitmap_set(rb, rb.host + page * tps)
    for page in (20, 33, 39):  # then postcopy placed a few on demand...
        ctx.postcopy_place_page(rb.host + page * tps, rb)
    return ctx, rb  # ...and the connection broke


def postcopy_failure(
    make: ContextFactory = model_context, layout: Layout = LP64_LE
) -> FailureReport:
    """A failure in the middle of postcopy: the map says exactly what arrived."""
    ctx, rb = _destination_after_failure(make, layout)
    nbits = rb.used_length >> ctx.qemu_target_page_bits()
    got = _received(ctx, rb)
    return FailureReport(nbits, got, [p for p in range(nbits) if p not in got])


@dataclass(frozen=True)
class RecoveryReport:
    """Postcopy recovery: the stream, the source's dirty pages, and the resend."""

    stream: bytes
    sent: int
    missing_pages: list[int]
    resent_pages: list[int]
    complete: bool


def recovery(
    make: ContextFactory = model_context,
    destination: Layout = LP64_LE,
    source: Layout = LP64_LE,
) -> RecoveryReport:
    """Recovery after ``postcopy_failure``: send, reload, resend exactly what is missing.

    The destination sends its map (ramblock_recv_bitmap_send); the source, whose word
    layout may differ, reloads it (ram_dirty_bitmap_reload): the complement of the
    received map becomes its dirty bitmap, and it resends exactly those pages.
    """
    dst, rb = _destination_after_failure(make, destination)
    nbits = rb.used_length >> dst.qemu_target_page_bits()
    missing = [p for p in range(nbits) if p not in _received(dst, rb)]
    stream, sent = dst.ramblock_recv_bitmap_send("pc.ram")
    src = make(TargetPage.for_target("x86_64"), side=Side.SOURCE, layout=source)
    tps = src.qemu_target_page_size()
    sb = src.ram_block_add("pc.ram", 40 * tps, 48 * tps)
    src.ram_list_init_bitmaps()
    src.ram_dirty_bitmap_reload(sb, stream)
    assert sb.bmap is not None
    resend = set_bits(sb.bmap, source, nbits)
    for page in resend:
        dst.postcopy_place_page(rb.host + page * tps, rb)
    got = set(_received(dst, rb))
    complete = all(p in got for p in range(nbits))
    return RecoveryReport(stream, sent, missing, resend, complete)


__all__ = [
    "ContextFactory",
    "FailureReport",
    "PostcopyReport",
    "PrecopyReport",
    "RecoveryReport",
    "RefusalReport",
    "postcopy_failure",
    "postcopy_refused",
    "postcopy_run",
    "precopy_stream",
    "recovery",
    "set_bits",
]
