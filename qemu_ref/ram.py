# SPDX-License-Identifier: GPL-2.0-or-later
"""The C ram layer (qemu_ref_ram.h) through ctypes, with the model's API.

``CRamContext`` has the methods of ``recvmap.pymodel.ramblock.RamContext`` with the same
arguments and results, but every receivedmap operation runs in C on a C ``RAMBlock``
built from the model's block parameters. Maps are calloc'ed by the library and read back
as ``CMap`` (``image()``, ``nwords``) to compare with the model byte for byte.

The C reference does not check QEMU's domain. With ``checked=True`` (the default) each call
first runs on a shadow model context, so a call the model rejects raises the model's
PreconditionError and never reaches C; the results returned are always C's own.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from recvmap.pymodel.arch import Host
from recvmap.pymodel.ramblock import (
    IDSTR_MAX,
    BlockSpec,
    FaceBlock,
    RAMBlock,
    RamFace,
    Side,
    TargetPage,
)
from recvmap.pymodel.recovery import HEADER, TRAILER, recv_bitmap_size
from recvmap.pymodel.words import LP64_LE, Layout

from .loader import CLibrary, load

_LIBS: dict[int, CLibrary] = {}
ERROR_BUF = 1024


def library(bits: int) -> CLibrary:
    """Our installed library for ``bits``-bit words, loaded once."""
    if bits not in _LIBS:
        _LIBS[bits] = load(bits=bits)
    return _LIBS[bits]


class RAMBlockStruct(ctypes.Structure):
    """struct RAMBlock of qemu_ref_ram.h."""

    _fields_ = [
        ("host", ctypes.c_void_p),
        ("used_length", ctypes.c_uint64),
        ("max_length", ctypes.c_uint64),
        ("postcopy_length", ctypes.c_uint64),
        ("page_size", ctypes.c_size_t),
        ("receivedmap", ctypes.c_void_p),
        ("bmap", ctypes.c_void_p),
        ("next", ctypes.c_void_p),
        ("migratable", ctypes.c_bool),
        ("ignored", ctypes.c_bool),
        ("idstr", ctypes.c_char * (IDSTR_MAX + 1)),
    ]


class RAMListStruct(ctypes.Structure):
    """struct RAMList of qemu_ref_ram.h."""

    _fields_ = [("blocks", ctypes.c_void_p)]


class CMap:
    """A map allocated by the C library, seen like the model's Words."""

    def __init__(self, address: int, nwords: int, bits_per_long: int) -> None:
        self.address = address
        self.nwords = nwords
        self.bits_per_long = bits_per_long

    @property
    def nbits(self) -> int:
        return self.nwords * self.bits_per_long

    def image(self) -> bytes:
        return ctypes.string_at(self.address, self.nwords * self.bits_per_long // 8)

    def load_image(self, image: bytes) -> None:
        size = self.nwords * self.bits_per_long // 8
        if len(image) != size:
            raise ValueError(f"image of {len(image)} bytes for {size} bytes of words")
        ctypes.memmove(self.address, image, size)


CANARY = 0xA5  # what a sender's buffer holds before the call


def written(buf: bytes, ret: int) -> bytes:
    """What a recovery sender wrote into ``buf`` (filled with CANARY before the call): the
    ret + 8 bytes of its stream (nothing when ret < 0), and further up to the last byte
    that is no longer the canary. An implementation writing past its stream, or anything
    when it fails, so returns a longer stream than the model's: a divergence."""
    end = ret + TRAILER if ret >= 0 else 0
    return buf[: max(end, len(buf.rstrip(bytes([CANARY]))))]


def sender_room(face: RamFace[Any], block: Any) -> int:
    """Bytes of a recovery sender's buffer for ``block`` (None: unknown, 0): room for the
    map of postcopy_length, or of used_length before QEMU v6.1.0 (a QEMU tree's own
    sender, on this machine or a host's driver), whichever is longer."""
    buflen = face._send_length(block)
    if block is not None:
        nbits = max(block.used_length, block.postcopy_length) >> face.qemu_target_page_bits()
        buflen = max(buflen, HEADER + recv_bitmap_size(nbits) + TRAILER)
    return buflen


def _field(name: str, convert: Callable[[Any], Any]) -> Any:
    """A read-only attribute: ``convert`` of the C struct's field ``name``."""
    return property(lambda self: convert(getattr(self.struct, name)), doc=f"RAMBlock.{name}")


class CRAMBlock(FaceBlock):
    """A C RAMBlock with the model RAMBlock's attributes, read from the C struct."""

    def __init__(self, ctx: CRamContext, struct: RAMBlockStruct, shadow: RAMBlock | None):
        self._ctx = ctx
        self.struct = struct
        self.shadow = shadow

    @property
    def ptr(self) -> int:
        return ctypes.addressof(self.struct)

    @property
    def idstr(self) -> str:
        return bytes(self.struct.idstr).decode()

    host: int = _field("host", lambda p: p or 0)  # a NULL c_void_p reads as None
    used_length: int = _field("used_length", int)
    max_length: int = _field("max_length", int)
    postcopy_length: int = _field("postcopy_length", int)
    page_size: int = _field("page_size", int)
    migratable: bool = _field("migratable", bool)
    ignored: bool = _field("ignored", bool)

    def _map(self, address: int | None) -> CMap | None:
        if not address:
            return None
        bpl = self._ctx.bits_per_long
        nbits = self.max_length >> self._ctx.qemu_target_page_bits()
        return CMap(address, max(1, -(-nbits // bpl)), bpl)

    @property
    def receivedmap(self) -> CMap | None:
        return self._map(self.struct.receivedmap)

    @property
    def bmap(self) -> CMap | None:
        return self._map(self.struct.bmap)

    def __repr__(self) -> str:
        return f"CRAMBlock({self.idstr!r}, host=0x{self.host:x}, max=0x{self.max_length:x})"


class CRamContext(RamFace[CRAMBlock]):
    """The C face of ``RamContext``: same constructor, methods and results.

    The C library emulates LP64 and ILP32 little-endian hosts (its 64- and 32-bit
    builds); other layouts are model-only.
    """

    def __init__(
        self,
        target_page: TargetPage,
        *,
        side: Side = Side.DESTINATION,
        layout: Layout = LP64_LE,
        host_page_size: int = 4096,
        pointer_bits: int | None = None,
        strict: bool = False,
        host: Host | None = None,
        lib: CLibrary | None = None,
        checked: bool = True,
    ) -> None:
        super().__init__(
            target_page,
            side=side,
            layout=layout,
            host_page_size=host_page_size,
            pointer_bits=pointer_bits,
            strict=strict,
            host=host,
        )
        if layout.big_endian or self.pointer_bits != layout.bits_per_long:
            raise ValueError(f"the C library emulates LP64/ILP32 little-endian hosts, not {layout}")
        self.shadow = self._shadow_model(checked)
        self.lib = library(layout.bits_per_long) if lib is None else lib
        if self.lib.bits != layout.bits_per_long:
            raise ValueError(f"a {self.lib.bits}-bit library for a {layout} context")
        self._list = RAMListStruct()
        self.blocks: list[CRAMBlock] = []
        self._by_address: dict[int, CRAMBlock] = {}

    # --- plumbing -----------------------------------------------------------------------

    def _call(self, name: str, *args: Any) -> Any:
        """Run one C function with the target and host pages set; keep its error_report line."""
        self.lib.qref_ram_clear_error()
        self.lib.qref_set_target_page_bits(self.qemu_target_page_bits())
        self.lib.qref_set_host_page_size(self.host_page_size)
        result = self.lib.functions[name](*args)
        buf = (ctypes.c_uint8 * ERROR_BUF)()
        if self.lib.qref_ram_last_error(buf, ERROR_BUF):
            self.error_report(ctypes.string_at(buf).decode())
        return result

    @property
    def _list_ptr(self) -> int:
        return ctypes.addressof(self._list)

    def close(self) -> None:
        """Free every map the library allocated (ram_load_cleanup, ram_save_cleanup)."""
        if self.blocks:
            self.lib.ram_load_cleanup(self._list_ptr)
            self.lib.ram_save_cleanup(self._list_ptr)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # --- the RAM list ---------------------------------------------------------------

    def _new_block(self, spec: BlockSpec, shadow: RAMBlock | None) -> CRAMBlock:
        """A C RAMBlock of the checked ``spec``, linked at the end of the C list."""
        st = RAMBlockStruct(**asdict(spec) | {"idstr": spec.idstr.encode()})
        block = CRAMBlock(self, st, shadow)
        if self.blocks:
            self.blocks[-1].struct.next = block.ptr
        else:
            self._list.blocks = block.ptr
        self.blocks.append(block)
        self._by_address[block.ptr] = block
        return block

    def qemu_ram_block_by_name(self, name: str) -> CRAMBlock | None:
        address = self._call("qemu_ram_block_by_name", self._list_ptr, name.encode())
        return self._by_address[address] if address else None

    def ramblock_is_ignored(self, rb: CRAMBlock) -> bool:
        return bool(self._call("ramblock_is_ignored", rb.ptr))

    # --- the received map -------------------------------------------------------------

    def ramblock_recv_map_init(self) -> None:
        self._check("ramblock_recv_map_init")
        self._call("ramblock_recv_map_init", self._list_ptr)

    def ramblock_recv_bitmap_offset(
        self, host_addr: int, rb: CRAMBlock, strict: bool | None = None
    ) -> int:
        self._check("ramblock_recv_bitmap_offset", host_addr, rb, strict)
        return int(self._call("ramblock_recv_bitmap_offset", host_addr, rb.ptr))

    def ramblock_recv_bitmap_test(self, rb: CRAMBlock, host_addr: int) -> int:
        self._check("ramblock_recv_bitmap_test", rb, host_addr)
        return int(self._call("ramblock_recv_bitmap_test", rb.ptr, host_addr))

    def ramblock_recv_bitmap_test_byte_offset(self, rb: CRAMBlock, byte_offset: int) -> bool:
        self._check("ramblock_recv_bitmap_test_byte_offset", rb, byte_offset)
        return bool(self._call("ramblock_recv_bitmap_test_byte_offset", rb.ptr, byte_offset))

    def ramblock_recv_bitmap_set(self, rb: CRAMBlock, host_addr: int) -> None:
        self._check("ramblock_recv_bitmap_set", rb, host_addr)
        self._call("ramblock_recv_bitmap_set", rb.ptr, host_addr)

    def ramblock_recv_bitmap_set_range(self, rb: CRAMBlock, host_addr: int, nr: int) -> None:
        self._check("ramblock_recv_bitmap_set_range", rb, host_addr, nr)
        self._call("ramblock_recv_bitmap_set_range", rb.ptr, host_addr, nr)

    def ramblock_recv_bitmap_set_offset(self, rb: CRAMBlock, byte_offset: int) -> None:
        self._check("ramblock_recv_bitmap_set_offset", rb, byte_offset)
        self._call("ramblock_recv_bitmap_set_offset", rb.ptr, byte_offset)

    def ram_load_cleanup(self) -> int:
        self._check("ram_load_cleanup")
        return int(self._call("ram_load_cleanup", self._list_ptr))

    # --- discard ----------------------------------------------------------------------

    def ram_block_discard_range(self, rb: CRAMBlock, start: int, length: int) -> int:
        self._check("ram_block_discard_range", rb, start, length)
        return int(self._call("ram_block_discard_range", rb.ptr, start, length))

    def ram_discard_range(self, rbname: str, start: int, length: int) -> int:
        self._check("ram_discard_range", rbname, start, length)
        return int(self._call("ram_discard_range", self._list_ptr, rbname.encode(), start, length))

    # --- postcopy ---------------------------------------------------------------------

    def postcopy_ram_supported_by_host(self) -> bool:
        self._check("postcopy_ram_supported_by_host")
        if not self._call("postcopy_ram_supported_by_host", self.host_page_size):
            return False
        return self._postcopy_host()

    def postcopy_place_page(self, host: int, rb: CRAMBlock) -> int:
        self._check("postcopy_place_page", host, rb)
        return int(self._call("postcopy_place_page", host, rb.ptr))

    # --- the source's dirty bitmap ----------------------------------------------------

    def ram_list_init_bitmaps(self) -> None:
        self._check("ram_list_init_bitmaps")
        self._call("ram_list_init_bitmaps", self._list_ptr)

    def ram_save_cleanup(self) -> None:
        self._check("ram_save_cleanup")
        self._call("ram_save_cleanup", self._list_ptr)

    # --- postcopy recovery ------------------------------------------------------------

    def ramblock_recv_bitmap_send(self, block_name: str, spare: int = 0) -> tuple[bytes, int]:
        """The C sender writes into a buffer of at least size + 16 bytes; (stream, ret).

        The map's bits come from postcopy_length, or from used_length before QEMU v6.1.0
        (a QEMU tree's own sender): the buffer has room for either, and ``spare`` bytes
        more. It is filled with CANARY first; the stream is what the sender wrote
        (``written``): the ret + 8 bytes it reports (be64 size, the map, be64 end mark),
        and any byte past them it changed.
        """
        self._check("ramblock_recv_bitmap_send", block_name, spare)
        block = next((b for b in self.blocks if b.idstr == block_name), None)
        buflen = sender_room(self, block) + spare
        buf = (ctypes.c_uint8 * buflen).from_buffer_copy(bytes([CANARY]) * buflen)
        ret = int(
            self._call(
                "ramblock_recv_bitmap_send", self._list_ptr, block_name.encode(), buf, buflen
            )
        )
        return written(bytes(buf), ret), ret

    def ram_dirty_bitmap_reload(self, block: CRAMBlock, stream: bytes) -> int:
        """0, or RecoveryError carrying the C function's negative return value."""
        self._check_reload(block, stream)
        buf = (ctypes.c_uint8 * len(stream)).from_buffer_copy(stream)
        ret = int(self._call("ram_dirty_bitmap_reload", block.ptr, buf, len(stream)))
        return self._reload_result(block, ret)


# The context factory of the checked C face: the same constructor as every face's context.
c_context = CRamContext
