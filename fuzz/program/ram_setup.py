# SPDX-License-Identifier: GPL-2.0-or-later
"""The setup of a ram or recovery program: target page, host, side and blocks.

``Program.setup`` of the ram and recovery layers, read as a ``RamSetup``; the decoders
(decode_ram) build it and the engine (engine.ram) runs programs with it. Imports only
``recvmap.pymodel`` and the program format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recvmap.pymodel import arch
from recvmap.pymodel.ramblock import RamApi, Side, TargetPage
from recvmap.pymodel.words import Layout

from .format import Program

RAM_LAYERS = ("ram", "recovery")
SOURCE_FUNCTIONS = frozenset(
    {"ram_list_init_bitmaps", "ram_save_cleanup", "ram_dirty_bitmap_reload"}
)
STREAM_OPS = frozenset(
    {"stream_truncate", "stream_xor", "stream_append", "stream_set_size", "stream_load"}
)
RAM_FUNCTIONS = (
    "ramblock_recv_map_init",
    "ramblock_recv_bitmap_offset",
    "ramblock_recv_bitmap_test",
    "ramblock_recv_bitmap_test_byte_offset",
    "ramblock_recv_bitmap_set",
    "ramblock_recv_bitmap_set_range",
    "ramblock_recv_bitmap_set_offset",
    "ram_load_cleanup",
    "ram_block_discard_range",
    "ram_discard_range",
    "postcopy_ram_supported_by_host",
    "postcopy_place_page",
    "ram_list_init_bitmaps",
    "ram_save_cleanup",
    "ramblock_recv_bitmap_send",
    "ram_dirty_bitmap_reload",
)
BLOCK_FIELDS = ("used_length", "max_length", "page_size", "host", "postcopy_length")

# A ram implementation: builds a context like ``model_context`` (same keyword arguments).
ContextFactory = Callable[..., RamApi]


def target_page(target: str, bits: int) -> TargetPage:
    """The finalized run-time page bits ``bits`` of QEMU target ``target``.

    A TARGET_PAGE_BITS_VARY target (arm) starts undecided at its minimum; the board asks
    for ``bits`` before finalization (page-vary-target.c). Other targets, and historical
    values of them, are fixed at compile time.
    """
    t = arch.target(target)
    return TargetPage.finalized(
        bits, vary_min=t.page_bits if t.vary and bits >= t.page_bits else None
    )


@dataclass(frozen=True)
class RamSetup:
    """The shared parameters of a ram or recovery program (``Program.setup``)."""

    target: str
    target_page_bits: int
    host: str
    host_page_size: int
    side: str
    strict: bool
    blocks: tuple[dict[str, Any], ...]
    sender: Layout | None = None  # recovery: the destination's word layout

    @classmethod
    def of(cls, program: Program) -> RamSetup:
        s = program.setup
        sender = s.get("sender")
        return cls(
            str(s["target"]),
            int(s["target_page_bits"]),
            str(s["host"]),
            int(s.get("host_page_size", arch.host(str(s["host"])).base_page)),
            str(s.get("side", "destination")),
            bool(s.get("strict", False)),
            tuple(dict(b) for b in s.get("blocks", ())),
            Layout(int(sender["bits_per_long"]), bool(sender["big_endian"])) if sender else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target": self.target,
            "target_page_bits": self.target_page_bits,
            "host": self.host,
            "host_page_size": self.host_page_size,
            "side": self.side,
            "strict": self.strict,
            "blocks": [dict(b) for b in self.blocks],
        }
        if self.sender is not None:
            out["sender"] = {
                "bits_per_long": self.sender.bits_per_long,
                "big_endian": self.sender.big_endian,
            }
        return out

    def roles(self, program: Program) -> dict[str, tuple[Side, Layout]]:
        """Each context of the program: its side of the migration and word layout."""
        if program.layer == "recovery":
            assert self.sender is not None, "a recovery program needs setup.sender"
            return {
                "destination": (Side.DESTINATION, self.sender),
                "source": (Side.SOURCE, program.layout),
            }
        return {self.side: (Side(self.side), program.layout)}


def block_kwargs(block: dict[str, Any]) -> dict[str, Any]:
    """``ram_block_add`` keyword arguments of one block of the setup."""
    kw = {k: int(block[k]) for k in BLOCK_FIELDS if k in block}
    kw["migratable"] = bool(block.get("migratable", True))
    kw["ignored"] = bool(block.get("ignored", False))
    return kw
