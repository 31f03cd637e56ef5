# SPDX-License-Identifier: GPL-2.0-or-later
"""Decode fuzzer bytes into ram- and recovery-layer programs.

Like ``gen.decode_bitmap_program``: any byte string decodes (missing bytes read as zeros),
so atheris, Hypothesis and ``random`` drive the same decoder. The bytes choose a target and
its page bits from the architecture table, a host whose page and hugepage sizes back the
blocks, one to three RAM blocks that obey QEMU's alignment rules (checked by the model's
``ram_block_add``, so the setup is always inside QEMU's domain), then operations biased to
page, host-page and word boundaries of the received map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from recvmap.pymodel import arch
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.ramblock import RAMBlock, RamContext
from recvmap.pymodel.recovery import recv_bitmap_size
from recvmap.pymodel.words import Layout

from .decode_bitmap import Source
from .format import Op, Program, Ref
from .ram_setup import RamSetup, target_page

MAX_MAP_BITS = 1 << 22  # keep maps small unless one hugepage alone is bigger
NAMES = ("pc.ram", "ram1", "vga.vram", "/rom@etc/acpi/tables", "mem-ram0", "pc.bios")
UNKNOWN = "no-such-block"
# Bytes of the sender's buffer past its stream, on one send in three: the face fills them
# with a canary, and a sender that writes past its stream (or checks the size the wrong way
# round) then diverges.
SPARES = (1, 8, 16, 64)


def migrating_targets() -> list[str]:
    """Targets whose system emulation migrates (the table's user-mode-only ones do not)."""
    return [t.name for t in arch.TARGETS if t.system]


def host_names() -> list[str]:
    return [h.name for h in arch.HOSTS]


@dataclass
class BlockPlan:
    """A block of the setup, as the decoder sees it."""

    index: int
    idstr: str
    host: int
    max_length: int
    used_length: int
    postcopy_length: int
    page_size: int
    has_map: bool


def _length(src: Source, align: int, cap: int) -> int:
    return align * (1 + src.below(cap))


def _block_json(rb: RAMBlock) -> dict[str, Any]:
    """A block of the setup: the parameters the model checked and placed."""
    return {
        "idstr": rb.idstr,
        "host": rb.host,
        "used_length": rb.used_length,
        "max_length": rb.max_length,
        "page_size": rb.page_size,
        "postcopy_length": rb.postcopy_length,
        "migratable": rb.migratable,
        "ignored": rb.ignored,
    }


def decode_blocks(
    src: Source, model: RamContext, host: arch.Host, bits: int
) -> list[dict[str, Any]]:
    """One to three blocks QEMU could have created; lengths multiples of their alignment.

    used_length may be 0 (a block below one alignment unit of RAM), and one setup in eight
    has no RAM at all (every used_length 0: ram_bytes_total() is 0 and
    ram_list_init_bitmaps allocates nothing).
    """
    blocks: list[dict[str, Any]] = []
    no_ram = src.below(8) == 0
    for i in range(1 + src.below(3)):
        sizes = host.page_sizes
        page_size = sizes[0] if src.below(2) or len(sizes) == 1 else src.choice(sizes[1:])
        align = max(page_size, 1 << bits)
        cap = max(1, min(8, MAX_MAP_BITS // max(1, align >> bits)))
        max_length = _length(src, align, cap)
        npages = max_length // align
        used = max_length if src.below(3) else align * src.below(npages + 1)
        if no_ram or src.below(8) == 0:
            used = 0
        postcopy = used if src.below(4) else align * src.below(npages + 1)
        kw: dict[str, Any] = {
            "used_length": used,
            "max_length": max_length,
            "page_size": page_size,
            "postcopy_length": postcopy,
            "migratable": src.below(16) != 0,
            "ignored": src.below(16) == 0,
        }
        try:
            blocks.append(_block_json(model.ram_block_add(NAMES[i], **kw)))
        except PreconditionError:
            continue  # e.g. a 16G hugepage in a 32-bit address space
    if not blocks:  # the base page always fits
        size = max(host.base_page, 1 << bits)
        blocks.append(
            _block_json(model.ram_block_add(NAMES[5], size, size, page_size=host.base_page))
        )
    return blocks


class OpDecoder:
    """Operations on the blocks of one setup, biased to boundaries."""

    def __init__(self, src: Source, setup: RamSetup, layer: str, bpl: int) -> None:
        self.src = src
        self.absent: frozenset[str] = frozenset()  # functions the implementation lacks
        self.bits = setup.target_page_bits
        self.bpl = bpl
        self.layer = layer
        self.blocks = [
            BlockPlan(
                i,
                str(b["idstr"]),
                int(b["host"]),
                int(b["max_length"]),
                int(b["used_length"]),
                int(b["postcopy_length"]),
                int(b["page_size"]),
                bool(b.get("migratable", True)) and not bool(b.get("ignored", False)),
            )
            for i, b in enumerate(setup.blocks)
        ]
        self.side = setup.side
        self.sent: BlockPlan | None = None

    # --- numbers ------------------------------------------------------------------------

    def page_index(self, b: BlockPlan) -> int:
        """A target page of ``b``: first, last, word boundaries, just past the end."""
        src, bpl = self.src, self.bpl
        npages = b.max_length >> self.bits
        kind = src.below(10)
        if kind == 0:
            return 0
        if kind == 1:
            return npages - 1
        if kind in (2, 3):
            base = src.below(npages // bpl + 1) * bpl
            return min(npages - 1, max(0, base + src.choice((-1, 0, 0, 1))))
        if kind == 4:
            return npages + src.below(2)  # past the end: inside the last word or not
        if kind == 5:
            per_host_page = max(1, b.page_size >> self.bits)
            return min(npages - 1, src.below(npages // per_host_page + 1) * per_host_page)
        return src.below(npages)

    def intra(self) -> int:
        kind = self.src.below(8)
        tps = 1 << self.bits
        return 0 if kind < 6 else (tps - 1 if kind == 6 else self.src.below(tps))

    def address(self, b: BlockPlan) -> int:
        if self.src.below(32) == 0:  # below the block: QEMU wraps around
            return max(0, b.host - (1 << self.bits) * (1 + self.src.below(4)))
        return b.host + (self.page_index(b) << self.bits) + self.intra()

    def count(self, b: BlockPlan, page: int) -> int:
        src = self.src
        left = max(0, (b.max_length >> self.bits) - page)
        return src.choice(
            (0, 1, left, left, self.bpl, max(1, b.page_size >> self.bits), src.below(left + 1))
        )

    def discard_args(self, b: BlockPlan) -> tuple[int, int]:
        """start, length: host-page aligned mostly; target-page aligned, unaligned, overrun.

        One length in eight is a few bytes off a page multiple: QEMU's "Unaligned length"
        check masks every low bit of the length, odd ones included.
        """
        src, ps, tps = self.src, b.page_size, 1 << self.bits
        nhost = b.max_length // ps
        kind = src.below(8)
        if kind < 4:
            start = src.below(nhost + 1) * ps
        elif kind < 6:
            start = self.page_index(b) << self.bits
        else:
            start = src.below(nhost) * ps + src.choice((1, tps, ps // 2, ps - 1))
        kind = src.below(8)
        if kind < 4:
            length = src.below(nhost - min(nhost, start // ps) + 1) * ps
        elif kind == 4:
            length = max(0, b.max_length - start) + ps  # overrun
        elif kind == 5:
            length = self.count(b, start >> self.bits) << self.bits
        else:
            length = src.choice((0, tps, ps, ps + tps, b.max_length))
        if src.below(8) == 0:
            length += src.choice((1, 2, 3, 7))
        return start, length

    # --- operations ---------------------------------------------------------------------

    def block(self) -> BlockPlan:
        return self.src.choice(self.blocks)

    def name(self, b: BlockPlan) -> str:
        return UNKNOWN if self.src.below(16) == 0 else b.idstr

    def destination_op(self) -> Op:
        src, b = self.src, self.block()
        kind = src.choice(
            (
                "set",
                "set",
                "set_range",
                "set_range",
                "set_offset",
                "test",
                "test",
                "test_byte_offset",
                "offset",
                "discard",
                "discard",
                "block_discard",
                "place",
                "place",
                "place",
                "supported",
                "reinit",
            )
        )
        if kind == "set":
            return Op("ramblock_recv_bitmap_set", (Ref(b.index), self.address(b)))
        if kind == "set_range":
            page = self.page_index(b)
            addr = b.host + (page << self.bits) + self.intra()
            return Op("ramblock_recv_bitmap_set_range", (Ref(b.index), addr, self.count(b, page)))
        if kind == "set_offset" and "ramblock_recv_bitmap_set_offset" in self.absent:
            kind = "set"
        if kind == "test_byte_offset" and "ramblock_recv_bitmap_test_byte_offset" in self.absent:
            kind = "test"  # before 1cba9f6e662d (v2.12.0)
        if kind == "set":
            return Op("ramblock_recv_bitmap_set", (Ref(b.index), self.address(b)))
        if kind == "set_offset":
            offset = (self.page_index(b) << self.bits) + self.intra()
            return Op("ramblock_recv_bitmap_set_offset", (Ref(b.index), offset))
        if kind == "test":
            return Op("ramblock_recv_bitmap_test", (Ref(b.index), self.address(b)))
        if kind == "test_byte_offset":
            offset = (self.page_index(b) << self.bits) + self.intra()
            return Op("ramblock_recv_bitmap_test_byte_offset", (Ref(b.index), offset))
        if kind == "offset":
            return Op("ramblock_recv_bitmap_offset", (self.address(b), Ref(b.index)))
        if kind == "discard":
            return Op("ram_discard_range", (self.name(b), *self.discard_args(b)))
        if kind == "block_discard":
            return Op("ram_block_discard_range", (Ref(b.index), *self.discard_args(b)))
        if kind == "place":
            k = src.below(b.max_length // b.page_size)
            return Op("postcopy_place_page", (b.host + k * b.page_size, Ref(b.index)))
        if kind == "supported":
            return Op("postcopy_ram_supported_by_host", ())
        if src.below(2):
            return Op("ram_load_cleanup", ())
        return Op("ramblock_recv_map_init", ())

    def source_op(self) -> Op:
        src, b = self.src, self.block()
        kind = src.below(8)
        if kind < 4:
            return Op("ram_discard_range", (self.name(b), *self.discard_args(b)))
        if kind == 4:
            return Op("ram_block_discard_range", (Ref(b.index), *self.discard_args(b)))
        if kind == 5:
            return Op("postcopy_ram_supported_by_host", ())
        return Op("ram_save_cleanup", ()) if src.below(2) else Op("ram_list_init_bitmaps", ())

    def stream_op(self) -> Op:
        src = self.src
        size = recv_bitmap_size(self.sent.postcopy_length >> self.bits) if self.sent else 0
        total = 16 + size
        kind = src.below(4)
        if kind == 0:  # every length: inside the size field, the map, the end mark
            n = src.choice((src.below(9), total - 9, total - 8, total - 1, src.below(total + 1)))
            return Op("stream_truncate", (max(0, n),))
        if kind == 1:
            pos = src.choice((src.below(8), 8 + src.below(max(1, size)), total - 8 + src.below(8)))
            return Op("stream_xor", (max(0, pos), 1 << src.below(8)))
        if kind == 2:
            return Op("stream_append", (1 + src.below(16), src.below(256)))
        value = src.choice((size + 8, max(0, size - 8), 0, 2 * size, (1 << 64) - 1))
        return Op("stream_set_size", (value,))

    def recovery_op(self) -> Op:
        src = self.src
        kind = src.below(16)
        if kind < 3:
            b = self.block()
            self.sent = b
            if kind == 2:  # a larger buffer: what the sender writes past its stream shows
                spare = src.choice(SPARES)
                return Op("ramblock_recv_bitmap_send", (self.name(b), spare))
            return Op("ramblock_recv_bitmap_send", (self.name(b),))
        if kind < 5 and self.sent is not None:
            return self.stream_op()
        if kind < 8 and "ram_dirty_bitmap_reload" not in self.absent:
            b = self.sent if self.sent is not None and src.below(4) else self.block()
            return Op("ram_dirty_bitmap_reload", (Ref(b.index),))
        return self.destination_op()

    def first_ops(self) -> list[Op]:
        if self.layer == "recovery":
            return [Op("ramblock_recv_map_init", ()), Op("ram_list_init_bitmaps", ())]
        if self.side == "source":
            return [Op("ram_list_init_bitmaps", ())]
        return [Op("ramblock_recv_map_init", ())]

    def next(self) -> Op:
        if self.layer == "recovery":
            return self.recovery_op()
        return self.source_op() if self.side == "source" else self.destination_op()


def decode_ram_program(
    data: bytes,
    layout: Layout,
    *,
    layer: str = "ram",
    targets: Sequence[str] | None = None,
    hosts: Sequence[str] | None = None,
    senders: Sequence[Layout] = (),
    max_ops: int = 24,
    absent: frozenset[str] = frozenset(),
) -> tuple[Program, Callable[[], Op | None]]:
    """The setup decoded now, and a function yielding the next operation (None when done).

    ``absent``: functions the implementation lacks (a QEMU release without them); their
    operations are never generated.

    ``layout`` is the word layout of the implementation (the source's, for recovery);
    ``senders`` the destination layouts a recovery program may use (default: ``layout``).
    """
    src = Source(data)
    t = arch.target(src.choice(list(targets) if targets else migrating_targets()))
    bits = src.choice(t.page_bits_choices())
    h = arch.host(src.choice(list(hosts) if hosts else host_names()))
    side = "source" if layer == "ram" and src.below(8) == 0 else "destination"
    strict = layer == "ram" and src.below(8) == 0
    sender = src.choice(list(senders) or [layout]) if layer == "recovery" else None
    pointer_bits = min(layout.bits_per_long, sender.bits_per_long if sender else 64)
    model = RamContext(
        target_page(t.name, bits),
        layout=layout,
        host_page_size=h.base_page,
        pointer_bits=pointer_bits,
        host=h,
    )
    setup = RamSetup(
        t.name,
        bits,
        h.name,
        h.base_page,
        side,
        strict,
        tuple(decode_blocks(src, model, h, bits)),
        sender,
    )
    program = Program(layout, [], [], layer, setup.to_json())
    decoder = OpDecoder(src, setup, layer, layout.bits_per_long)
    decoder.absent = absent
    pending = decoder.first_ops()
    count = [0]

    def next_op() -> Op | None:
        if count[0] >= max_ops or (not pending and src.exhausted()):
            return None
        count[0] += 1
        return pending.pop(0) if pending else decoder.next()

    return program, next_op
