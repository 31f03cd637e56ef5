# SPDX-License-Identifier: GPL-2.0-or-later
"""What the ram layer (ramblock) and postcopy recovery (recovery) both need: the side of the
migration, C's signed long and QEMU's RAMBlock. Imports only the memory (``words``), so that
recovery can use them without importing ramblock (ramblock imports recovery, never the other
way, not even for annotations).
"""

from __future__ import annotations

import enum

from .words import Words


class Side(enum.Enum):
    """Which end of the migration a process is: only the destination has receivedmaps."""

    DESTINATION = "destination"
    SOURCE = "source"


def c_long(value: int, bits: int) -> int:
    """``value`` converted to a signed ``bits``-bit C integer (gcc: modulo 2**bits)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class RAMBlock:
    """The fields of QEMU's RAMBlock (include/exec/ramblock.h) the received map uses.

    ``host`` is the block's host base address (an int, never dereferenced); lengths are
    ram_addr_t (uint64_t); ``page_size`` is the host page or hugepage backing the block.
    ``receivedmap`` exists on the destination between ramblock_recv_map_init and
    ram_load_cleanup; ``bmap`` is the source's dirty bitmap, reloaded on recovery.
    Create blocks with ``RamContext.ram_block_add``, which checks QEMU's rules.
    """

    def __init__(
        self,
        idstr: str,
        host: int,
        used_length: int,
        max_length: int,
        page_size: int,
        *,
        postcopy_length: int | None = None,
        migratable: bool = True,
        ignored: bool = False,
    ) -> None:
        self.idstr = idstr
        self.host = host
        self.used_length = used_length
        self.max_length = max_length
        self.page_size = page_size
        self.postcopy_length = used_length if postcopy_length is None else postcopy_length
        self.migratable = migratable
        self.ignored = ignored
        self.receivedmap: Words | None = None
        self.bmap: Words | None = None

    def __repr__(self) -> str:
        return (
            f"RAMBlock({self.idstr!r}, host=0x{self.host:x}, used=0x{self.used_length:x}, "
            f"max=0x{self.max_length:x}, page_size=0x{self.page_size:x})"
        )
