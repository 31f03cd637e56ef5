# SPDX-License-Identifier: GPL-2.0-or-later
"""Postcopy recovery: the destination sends its received map, the source reloads it.

When a postcopy migration breaks, the destination sends each block's receivedmap back
(migration/ram.c ramblock_recv_bitmap_send) and the source turns it into its dirty bitmap
(ram_dirty_bitmap_reload): the pages not received are exactly the pages to resend.

Wire format of one block (facts section 5)::

    be64 size | size bytes: the map as little-endian words, zero padded | be64 end mark

with nbits = postcopy_length >> target_page_bits, size = round_up(ceil(nbits / 8), 8) and
end mark 0x0123456789abcdef. The padding to 8 bytes lets 32- and 64-bit, little- and
big-endian hosts agree. The sender returns size + 8 (the end mark is not counted).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .bitmap import bitmap_complement, bitmap_from_le, bitmap_new, bitmap_to_le
from .errors import PreconditionError, RecoveryError
from .ramtypes import Side, c_long

if TYPE_CHECKING:  # annotations only: ramblock imports this module
    from .ramblock import RAMBlock, RamContext

RAMBLOCK_RECV_BITMAP_ENDING = 0x0123456789ABCDEF
HEADER = 8  # be64 size
TRAILER = 8  # be64 end mark


def recv_bitmap_size(nbits: int) -> int:
    """Bytes of map on the wire: DIV_ROUND_UP(nbits, 8) rounded up to 8 (migration/ram.c)."""
    size = (nbits + 7) // 8  # DIV_ROUND_UP(nbits, 8)
    return (size + 7) // 8 * 8  # ROUND_UP(size, 8)


def ramblock_recv_bitmap_send(ctx: RamContext, block_name: str) -> tuple[bytes, int]:
    """The recovery stream of block ``block_name`` and QEMU's return value.

    QEMU (migration/ram.c): unknown block -> error_report, -1 (and no stream). Else
    nbits = postcopy_length >> bits (an unsigned long), le_bitmap = bitmap_new(nbits +
    BITS_PER_LONG), bitmap_to_le(le_bitmap, receivedmap, nbits), and ``size`` bytes of
    le_bitmap go out. bitmap_to_le converts whole words, so bits past nbits in the map's
    last word are sent too when they fall inside ``size``; a 32-bit host's padding comes
    from the spare zeroed word. Returns size + 8.
    """
    fn = "ramblock_recv_bitmap_send"
    block = ctx.qemu_ram_block_by_name(block_name)
    if block is None:
        ctx.error_report(f"{fn}: invalid block name: {block_name}")
        return b"", -1
    if block.receivedmap is None:
        raise PreconditionError(fn, "block->receivedmap", "allocated (destination only)")
    bpl = ctx.bits_per_long
    nbits = (block.postcopy_length >> ctx.qemu_target_page_bits()) % (1 << bpl)
    le_bitmap = bitmap_new(nbits + bpl, ctx.layout)
    bitmap_to_le(le_bitmap, block.receivedmap, c_long(nbits, bpl))
    size = recv_bitmap_size(nbits)
    stream = (
        size.to_bytes(HEADER, "big")
        + le_bitmap.image()[:size]
        + RAMBLOCK_RECV_BITMAP_ENDING.to_bytes(TRAILER, "big")
    )
    return stream, size + HEADER


def _reject(ctx: RamContext, block: RAMBlock, reason: str, ret: int) -> RecoveryError:
    fn = "ram_dirty_bitmap_reload"
    err = RecoveryError(fn, block.idstr, reason, ret)
    ctx.error_report(str(err))
    return err


def _check_stream(ctx: RamContext, block: RAMBlock, stream: bytes, local_size: int) -> None:
    """QEMU's checks, in its order; a short stream is a read error (-EIO)."""
    name = block.idstr
    if len(stream) < HEADER:
        raise _reject(
            ctx, block, f"ramblock '{name}' stream too short: {len(stream)} bytes", -errno.EIO
        )
    size = int.from_bytes(stream[:HEADER], "big")
    if size != local_size:
        raise _reject(
            ctx,
            block,
            f"ramblock '{name}' bitmap size mismatch (0x{size:x} != 0x{local_size:x})",
            -errno.EINVAL,
        )
    if len(stream) < HEADER + local_size + TRAILER:
        got = min(len(stream) - HEADER, local_size)
        raise _reject(
            ctx,
            block,
            f"read bitmap failed for ramblock '{name}': (size 0x{local_size:x}, got: 0x{got:x})",
            -errno.EIO,
        )
    end = HEADER + local_size
    end_mark = int.from_bytes(stream[end : end + TRAILER], "big")
    if end_mark != RAMBLOCK_RECV_BITMAP_ENDING:
        raise _reject(
            ctx, block, f"ramblock '{name}' end mark incorrect: 0x{end_mark:x}", -errno.EINVAL
        )
    extra = len(stream) - end - TRAILER
    if extra:
        raise _reject(
            ctx, block, f"ramblock '{name}' {extra} bytes after the end mark", -errno.EINVAL
        )


def ram_dirty_bitmap_reload(ctx: RamContext, block: RAMBlock, stream: bytes) -> int:
    """Source: read ``stream`` into block->bmap as the pages still to send; 0.

    QEMU (migration/ram.c): nbits = used_length >> bits; the size field must equal
    round_up(ceil(nbits / 8), 8) and the end mark 0x0123456789abcdef. Then
    bitmap_from_le(bmap, le_bitmap, nbits) (whole words) and bitmap_complement(bmap, bmap,
    nbits) (last word masked: tail bits cleared; words past nbits untouched). A malformed
    stream (short, wrong size, wrong end mark, bytes after the end mark) raises
    RecoveryError with QEMU's return value (-EIO or -EINVAL) and leaves bmap untouched.
    """
    fn = "ram_dirty_bitmap_reload"
    if ctx.side is not Side.SOURCE:
        raise PreconditionError(fn, "side", "runs on the source only")
    if block.bmap is None:
        raise PreconditionError(fn, "block->bmap", "allocated by ram_list_init_bitmaps")
    bpl = ctx.bits_per_long
    nbits = (block.used_length >> ctx.qemu_target_page_bits()) % (1 << bpl)
    if nbits == 0:
        raise PreconditionError(
            fn, "nbits", "used_length >> target_page_bits > 0 (bitmap_complement needs nbits > 0)"
        )
    local_size = recv_bitmap_size(nbits)
    _check_stream(ctx, block, stream, local_size)
    le_bitmap = bitmap_new(nbits + bpl, ctx.layout)
    payload = stream[HEADER : HEADER + local_size]
    le_bitmap.load_image(payload + bytes(len(le_bitmap.image()) - local_size))
    bitmap_from_le(block.bmap, le_bitmap, nbits)
    bitmap_complement(block.bmap, block.bmap, nbits)
    return 0
