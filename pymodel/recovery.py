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

Release rules (``pymodel.releases``): both functions from v3.0.0 (a335debb35), with
size = round_up(nbits / 8, 8) (rounded down) until a725ef9fe364 (also v3.0.0); the
sender's nbits from used_length before v6.1.0; the reload's error_report() texts with
the function's name before 7aa6070d09 (Error messages since), its int returns and the
read failure's error code before 88577f3242 (both v8.2.0); its end-mark message in
decimal before v5.2.0.
"""

from __future__ import annotations

import errno
from typing import Protocol

from .bitmap import bitmap_complement, bitmap_from_le, bitmap_new, bitmap_to_le
from .errors import PreconditionError, RecoveryError
from .ramtypes import RAMBlock, Side, c_long
from .releases import (
    RECV_SIZE_ROUND_UP,
    RELOAD_END_MARK_HEX,
    RELOAD_ERROR_OBJECT,
    RELOAD_ERROR_SETG,
    SEND_POSTCOPY_LENGTH,
    Rules,
    require,
)
from .words import Layout


class RamGlobals(Protocol):
    """What recovery reads of QEMU's globals: ``ramblock.RamContext`` is one (ramblock
    imports this module, so the context is named by what it offers, not imported)."""

    release: Rules
    side: Side
    layout: Layout

    @property
    def bits_per_long(self) -> int: ...

    def qemu_target_page_bits(self) -> int: ...

    def qemu_ram_block_by_name(self, name: str) -> RAMBlock | None: ...

    def error_report(self, message: str) -> None: ...


RAMBLOCK_RECV_BITMAP_ENDING = 0x0123456789ABCDEF
HEADER = 8  # be64 size
TRAILER = 8  # be64 end mark


def recv_bitmap_size(nbits: int) -> int:
    """Bytes of map on the wire: DIV_ROUND_UP(nbits, 8) rounded up to 8 (migration/ram.c)."""
    size = (nbits + 7) // 8  # DIV_ROUND_UP(nbits, 8)
    return (size + 7) // 8 * 8  # ROUND_UP(size, 8)


def _recv_bitmap_size(ctx: RamGlobals, nbits: int) -> int:
    """The size of ``ctx``'s rules: before a725ef9fe364 ("migration: fix incorrect bitmap
    size calculation") both sides computed ROUND_UP(nbits / 8, 8), the division rounding
    down (a map of fewer than 8 pages was 0 bytes, a partial last byte was dropped)."""
    if ctx.release.has(RECV_SIZE_ROUND_UP):
        return recv_bitmap_size(nbits)
    return (nbits // 8 + 7) // 8 * 8


def ramblock_recv_bitmap_send(ctx: RamGlobals, block_name: str) -> tuple[bytes, int]:
    """The recovery stream of block ``block_name`` and QEMU's return value.

    QEMU (migration/ram.c): unknown block -> error_report, -1 (and no stream). Else
    nbits = postcopy_length >> bits (an unsigned long), le_bitmap = bitmap_new(nbits +
    BITS_PER_LONG), bitmap_to_le(le_bitmap, receivedmap, nbits), and ``size`` bytes of
    le_bitmap go out. bitmap_to_le converts whole words, so bits past nbits in the map's
    last word are sent too when they fall inside ``size``; a 32-bit host's padding comes
    from the spare zeroed word. Returns size + 8.
    """
    fn = "ramblock_recv_bitmap_send"
    require(fn, ctx.release)
    block = ctx.qemu_ram_block_by_name(block_name)
    if block is None:
        ctx.error_report(f"{fn}: invalid block name: {block_name}")
        return b"", -1
    if block.receivedmap is None:
        raise PreconditionError(fn, "block->receivedmap", "allocated (destination only)")
    bpl = ctx.bits_per_long
    length = block.postcopy_length if ctx.release.has(SEND_POSTCOPY_LENGTH) else block.used_length
    nbits = (length >> ctx.qemu_target_page_bits()) % (1 << bpl)
    le_bitmap = bitmap_new(nbits + bpl, ctx.layout)
    bitmap_to_le(le_bitmap, block.receivedmap, c_long(nbits, bpl))
    size = _recv_bitmap_size(ctx, nbits)
    stream = (
        size.to_bytes(HEADER, "big")
        + le_bitmap.image()[:size]
        + RAMBLOCK_RECV_BITMAP_ENDING.to_bytes(TRAILER, "big")
    )
    return stream, size + HEADER


class QEMUFileReader:
    """A stream read as QEMU's QEMUFile reads it (migration/qemu-file.c).

    A read past the end yields zero bytes for what is missing and records -EIO, which
    only qemu_file_get_error() reports later; qemu_get_buffer returns how many bytes it
    really read. Nothing after the last read is looked at.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.error = 0

    def get_buffer(self, n: int) -> bytes:
        got = self.data[self.pos : self.pos + n]
        self.pos += len(got)
        if len(got) < n:
            self.error = -errno.EIO
        return got

    def get_be64(self) -> int:
        return int.from_bytes(self.get_buffer(8).ljust(8, b"\0"), "big")


def _reject(ctx: RamGlobals, block: RAMBlock, reason: str, ret: int) -> RecoveryError:
    """The rules' way of failing: error_report("%s: ...", __func__) before 7aa6070d09, an
    Error (its message, no prefix) since; an int (-EINVAL, -EIO) before 88577f3242, false
    since (-1 through the ABI)."""
    fn = "ram_dirty_bitmap_reload"
    if ctx.release.has(RELOAD_ERROR_OBJECT):
        ret = -1
    err = RecoveryError(fn, block.idstr, reason, ret)
    ctx.error_report(reason if ctx.release.has(RELOAD_ERROR_SETG) else str(err))
    return err


def _read_stream(ctx: RamGlobals, block: RAMBlock, stream: bytes, local_size: int) -> bytes:
    """QEMU's reads and checks, in its order; the map's ``local_size`` bytes.

    size = qemu_get_be64: an empty or short stream gives a size of zeros (and the
    missing low bytes), a size mismatch. Then the map and the end mark are read, and
    only then the file error is checked: a stream short anywhere after a matching size
    is a failed read. Bytes after the end mark are never read (the next message).
    """
    name = block.idstr
    rel = ctx.release
    f = QEMUFileReader(stream)
    size = f.get_be64()
    if size != local_size:
        raise _reject(
            ctx,
            block,
            f"ramblock '{name}' bitmap size mismatch (0x{size:x} != 0x{local_size:x})",
            -errno.EINVAL,
        )
    payload = f.get_buffer(local_size)
    end_mark = f.get_be64()
    if f.error or len(payload) != local_size:
        got = len(payload)
        code = "" if rel.has(RELOAD_ERROR_OBJECT) else f" {f.error}"
        raise _reject(
            ctx,
            block,
            f"read bitmap failed for ramblock '{name}':{code} "
            f"(size 0x{local_size:x}, got: 0x{got:x})",
            -errno.EIO,
        )
    if end_mark != RAMBLOCK_RECV_BITMAP_ENDING:
        shown = f"{end_mark:x}" if rel.has(RELOAD_END_MARK_HEX) else f"{end_mark}"
        raise _reject(ctx, block, f"ramblock '{name}' end mark incorrect: 0x{shown}", -errno.EINVAL)
    return payload


def ram_dirty_bitmap_reload(ctx: RamGlobals, block: RAMBlock, stream: bytes) -> int:
    """Source: read ``stream`` into block->bmap as the pages still to send; 0.

    QEMU (migration/ram.c): nbits = used_length >> bits; the size field must equal
    round_up(ceil(nbits / 8), 8) and the end mark 0x0123456789abcdef. Then
    bitmap_from_le(bmap, le_bitmap, nbits) (whole words) and bitmap_complement(bmap, bmap,
    nbits) (last word masked: tail bits cleared; words past nbits untouched). A malformed
    stream (wrong size, short, wrong end mark) raises RecoveryError and leaves bmap
    untouched; bytes after the end mark are not read (``_read_stream``).

    Release rules: absent before v3.0.0; before 7aa6070d09 QEMU error_report()s with the
    function name prefixed, since it sets an Error (the message without prefix); before
    88577f3242 it returns -EINVAL (size, end mark) or -EIO (failed read) with the file
    error in the read failure's text, since it returns false (ABI: -1) without it (both
    v8.2.0). Before v5.2.0 (af3bbbe984) a wrong end mark is printed in decimal after
    "0x"; before a725ef9fe364 the size rounds down (``_recv_bitmap_size``).
    """
    fn = "ram_dirty_bitmap_reload"
    require(fn, ctx.release)
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
    local_size = _recv_bitmap_size(ctx, nbits)
    payload = _read_stream(ctx, block, stream, local_size)
    le_bitmap = bitmap_new(nbits + bpl, ctx.layout)
    le_bitmap.load_image(payload + bytes(len(le_bitmap.image()) - local_size))
    bitmap_from_le(block.bmap, le_bitmap, nbits)
    bitmap_complement(block.bmap, block.bmap, nbits)
    return 0
