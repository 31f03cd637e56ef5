# SPDX-License-Identifier: GPL-2.0-or-later
"""The C ram layer (qemu_ref_ram.h) with the model's API, over a transport.

``CRamContext`` has the methods of ``recvmap.pymodel.ramblock.RamContext`` with the same
arguments and results, but every receivedmap operation runs in C on a C ``RAMBlock``.
The C runs where its transport puts it: ``LibraryTransport`` calls a library loaded in
this process through ctypes (ours, a user's, a QEMU tree's); the replay driver of another
host is ``recvmap.fuzz.subjects.remote.DriverTransport``. Maps read back (``image()``,
``nwords``) compare with the model's byte for byte.

The context's configuration (target page, side, layout, host, release ...) is a model
``RamContext`` of the same arguments, which also checks and places each new block. The C
does not check QEMU's domain: with ``checked=True`` (the default) each call first runs on
that model, so a call the model rejects raises its PreconditionError and never reaches C;
the results returned are always C's own.

The face's one addition to QEMU's functions is the recovery sender's buffer: QEMU's sender
writes a QEMUFile, ours a caller's buffer, given ``spare`` bytes more than its stream
needs (``ramblock_recv_bitmap_send(name, spare)``), filled with ``CANARY`` first; what it
wrote past its stream is part of its result (``written``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, Protocol

from recvmap.pymodel.errors import PreconditionError, RecoveryError
from recvmap.pymodel.ramblock import (
    IDSTR_MAX,
    RAMBlock,
    RamContext,
    postcopy_host_problem,
)
from recvmap.pymodel.recovery import HEADER, TRAILER, recv_bitmap_size
from recvmap.pymodel.words import Layout

from .loader import CLibrary, load

_LIBS: dict[int, CLibrary] = {}
ERROR_BUF = 1024
MAX_SPARE = 4096  # bytes a recovery sender's buffer may have past its stream
CANARY = 0xA5  # what a sender's buffer holds before the call


def library(bits: int) -> CLibrary:
    """Our installed library for ``bits``-bit words, loaded once."""
    if bits not in _LIBS:
        _LIBS[bits] = load(bits=bits)
    return _LIBS[bits]


def check_spare(spare: int) -> None:
    """The sender's buffer has 0 to MAX_SPARE bytes past its stream (PreconditionError)."""
    if not 0 <= spare <= MAX_SPARE:
        raise PreconditionError(
            "ramblock_recv_bitmap_send",
            "spare",
            f"0 <= spare <= {MAX_SPARE} (bytes of the caller's buffer past the stream)",
        )


def written(buf: bytes, ret: int) -> bytes:
    """What a recovery sender wrote into ``buf`` (filled with CANARY before the call): the
    ret + 8 bytes of its stream (nothing when ret < 0), and further up to the last byte
    that is no longer the canary. An implementation writing past its stream, or anything
    when it fails, so returns a longer stream than the model's: a divergence."""
    end = ret + TRAILER if ret >= 0 else 0
    return buf[: max(end, len(buf.rstrip(bytes([CANARY]))))]


class RamTransport(Protocol):
    """How a ``CRamContext`` reaches the C: its RAM list, blocks, maps and calls.

    Arguments of ``call`` are ints, ``str`` (a C string), a block handle, ``ram_list``,
    or a ``bytearray``: a buffer the C gets and may write, updated in place. ``config``
    holds QEMU's globals the C needs set before each call (the target page bits).
    """

    ram_list: Any  # the RAMList argument

    def check(self, layout: Layout, pointer_bits: int) -> None:
        """ValueError when the C cannot run a host of ``layout`` and ``pointer_bits``."""

    def new_block(self, block: RAMBlock, nwords: int) -> Any:
        """A C RAMBlock of ``block``'s parameters at the end of the list: its handle
        (hashable; what ``call`` returns for it). Its maps have ``nwords`` words."""

    def map(self, handle: Any, which: str) -> Any:
        """The ``receivedmap`` or ``bmap`` of block ``handle`` (``image()``, ``nwords``),
        or None while the C has not allocated it."""

    def call(self, config: RamContext, name: str, *args: Any) -> tuple[Any, str | None]:
        """Run C function ``name``: its result and the error_report line it left."""

    @property
    def alive(self) -> bool:
        """Whether the C can still be called (a driver may have exited)."""


class CRAMBlock:
    """A C RAMBlock with the model RAMBlock's attributes; ``shadow`` is the model's."""

    def __init__(self, ctx: CRamContext, handle: Any, shadow: RAMBlock) -> None:
        self._ctx, self.handle, self.shadow = ctx, handle, shadow
        self.idstr: str = shadow.idstr
        self.host: int = shadow.host
        self.used_length: int = shadow.used_length
        self.max_length: int = shadow.max_length
        self.postcopy_length: int = shadow.postcopy_length
        self.page_size: int = shadow.page_size
        self.migratable: bool = shadow.migratable
        self.ignored: bool = shadow.ignored

    @property
    def receivedmap(self) -> Any:
        return self._ctx.transport.map(self.handle, "receivedmap")

    @property
    def bmap(self) -> Any:
        return self._ctx.transport.map(self.handle, "bmap")

    def __repr__(self) -> str:
        return f"CRAMBlock({self.idstr!r}, host=0x{self.host:x}, max=0x{self.max_length:x})"


def _config(name: str) -> Any:
    """A read-only attribute of the context's configuration (its model context)."""
    return property(lambda self: getattr(self.model, name), doc=f"RamContext.{name}")


class CRamContext:
    """The C face of ``RamContext``: same methods and results, over ``transport``.

    ``model`` is a fresh model context of the configuration: the face's globals, its block
    checks and placement, and (``checked``) the shadow every call runs on first. Make one
    with ``c_context`` (this process's library) or ``remote.driver_context``.
    """

    target_page = _config("target_page")
    side = _config("side")
    layout = _config("layout")
    host_page_size = _config("host_page_size")
    pointer_bits = _config("pointer_bits")
    strict = _config("strict")
    host = _config("host")
    release = _config("release")
    bits_per_long = _config("bits_per_long")

    def __init__(self, transport: RamTransport, model: RamContext, checked: bool = True) -> None:
        if model.strict and not checked:
            raise ValueError("strict mode needs checked=True (the model does the range check)")
        transport.check(model.layout, model.pointer_bits)
        self.transport, self.model, self.checked = transport, model, checked
        self.error_log: list[str] = []
        self.blocks: list[CRAMBlock] = []
        self._by_handle: dict[Any, CRAMBlock] = {}

    def qemu_target_page_bits(self) -> int:
        return self.model.qemu_target_page_bits()

    def qemu_target_page_size(self) -> int:
        return self.model.qemu_target_page_size()

    def error_report(self, message: str) -> None:
        self.error_log.append(message)

    # --- plumbing -----------------------------------------------------------------------

    def _check(self, name: str, *args: Any) -> None:
        """Run ``name`` on the model first (it raises if out of QEMU's domain)."""
        if self.checked:
            fn: Callable[..., Any] = getattr(self.model, name)
            fn(*(a.shadow if isinstance(a, CRAMBlock) else a for a in args))

    def _call(self, name: str, *args: Any) -> Any:
        """One C call, blocks passed as the transport's handles; keep its error line."""
        result, error = self.transport.call(
            self.model, name, *(a.handle if isinstance(a, CRAMBlock) else a for a in args)
        )
        if error:
            self.error_report(error)
        return result

    def _c(self, name: str, *args: Any) -> Any:
        """Checked call: the model first, then the C."""
        self._check(name, *args)
        return self._call(name, *args)

    def close(self) -> None:
        """Free every map the library allocated (both cleanups are harmless twice)."""
        if self.blocks and self.transport.alive:
            self._call("ram_load_cleanup", self.transport.ram_list)
            self._call("ram_save_cleanup", self.transport.ram_list)

    # --- the RAM list ---------------------------------------------------------------

    def ram_block_add(self, *args: Any, **kwargs: Any) -> CRAMBlock:
        """QEMU's ram_block_add, with ``RamContext.ram_block_add``'s arguments: the model
        checks and places the block, the C gets a RAMBlock of the same parameters."""
        shadow = self.model.ram_block_add(*args, **kwargs)
        nbits = shadow.max_length >> self.qemu_target_page_bits()
        nwords = max(1, -(-nbits // self.bits_per_long))  # bitmap_new(0) is one word
        block = CRAMBlock(self, self.transport.new_block(shadow, nwords), shadow)
        self.blocks.append(block)
        self._by_handle[block.handle] = block
        return block

    def qemu_ram_block_by_name(self, name: str) -> CRAMBlock | None:
        handle = self._call("qemu_ram_block_by_name", self.transport.ram_list, name)
        return self._by_handle.get(handle) if handle else None

    def ramblock_is_ignored(self, rb: CRAMBlock) -> bool:
        return bool(self._c("ramblock_is_ignored", rb))

    # --- the received map -------------------------------------------------------------

    def ramblock_recv_map_init(self) -> None:
        self._check("ramblock_recv_map_init")
        self._call("ramblock_recv_map_init", self.transport.ram_list)

    def ramblock_recv_bitmap_offset(
        self, host_addr: int, rb: CRAMBlock, strict: bool | None = None
    ) -> int:
        self._check("ramblock_recv_bitmap_offset", host_addr, rb, strict)
        return int(self._call("ramblock_recv_bitmap_offset", host_addr, rb))

    def ramblock_recv_bitmap_test(self, rb: CRAMBlock, host_addr: int) -> int:
        return int(self._c("ramblock_recv_bitmap_test", rb, host_addr))

    def ramblock_recv_bitmap_test_byte_offset(self, rb: CRAMBlock, byte_offset: int) -> bool:
        return bool(self._c("ramblock_recv_bitmap_test_byte_offset", rb, byte_offset))

    def ramblock_recv_bitmap_set(self, rb: CRAMBlock, host_addr: int) -> None:
        self._c("ramblock_recv_bitmap_set", rb, host_addr)

    def ramblock_recv_bitmap_set_range(self, rb: CRAMBlock, host_addr: int, nr: int) -> None:
        self._c("ramblock_recv_bitmap_set_range", rb, host_addr, nr)

    def ramblock_recv_bitmap_set_offset(self, rb: CRAMBlock, byte_offset: int) -> None:
        self._c("ramblock_recv_bitmap_set_offset", rb, byte_offset)

    def ram_load_cleanup(self) -> int:
        self._check("ram_load_cleanup")
        return int(self._call("ram_load_cleanup", self.transport.ram_list))

    # --- discard ----------------------------------------------------------------------

    def ram_block_discard_range(self, rb: CRAMBlock, start: int, length: int) -> int:
        return int(self._c("ram_block_discard_range", rb, start, length))

    def ram_discard_range(self, rbname: str, start: int, length: int) -> int:
        self._check("ram_discard_range", rbname, start, length)
        return int(self._call("ram_discard_range", self.transport.ram_list, rbname, start, length))

    # --- postcopy ---------------------------------------------------------------------

    def postcopy_ram_supported_by_host(self) -> bool:
        """C compares the page sizes; a host without userfaultfd (the arch table's word) has
        QEMU's stub instead, which compares nothing: C is not asked."""
        self._check("postcopy_ram_supported_by_host")
        problem = postcopy_host_problem(self.host)
        if problem is not None:
            self.error_report(problem)
            return False
        return bool(self._call("postcopy_ram_supported_by_host", self.host_page_size))

    def postcopy_place_page(self, host: int, rb: CRAMBlock) -> int:
        self._check("postcopy_place_page", host, rb)
        return int(self._call("postcopy_place_page", host, rb))

    # --- the source's dirty bitmap ----------------------------------------------------

    def ram_list_init_bitmaps(self) -> None:
        self._check("ram_list_init_bitmaps")
        self._call("ram_list_init_bitmaps", self.transport.ram_list)

    def ram_save_cleanup(self) -> None:
        self._check("ram_save_cleanup")
        self._call("ram_save_cleanup", self.transport.ram_list)

    # --- postcopy recovery ------------------------------------------------------------

    def ramblock_recv_bitmap_send(self, block_name: str, spare: int = 0) -> tuple[bytes, int]:
        """The C sender writes into a buffer of at least size + 16 bytes; (stream, ret).

        The map's bits come from postcopy_length, or from used_length before QEMU v6.1.0
        (a QEMU tree's own sender): the buffer has room for either, and ``spare`` bytes
        more. It is filled with CANARY first; the stream is what the sender wrote
        (``written``): the ret + 8 bytes it reports (be64 size, the map, be64 end mark),
        and any byte past them it changed.
        """
        check_spare(spare)
        self._check("ramblock_recv_bitmap_send", block_name)
        block = next((b for b in self.blocks if b.idstr == block_name), None)
        buflen = spare
        if block is not None:
            length = max(block.used_length, block.postcopy_length)
            nbits = (length >> self.qemu_target_page_bits()) % (1 << self.bits_per_long)
            buflen += HEADER + recv_bitmap_size(nbits) + TRAILER
        buf = bytearray([CANARY]) * buflen
        ret = int(
            self._call(
                "ramblock_recv_bitmap_send", self.transport.ram_list, block_name, buf, buflen
            )
        )
        return written(bytes(buf), ret), ret

    def ram_dirty_bitmap_reload(self, block: CRAMBlock, stream: bytes) -> int:
        """0, or RecoveryError carrying the C function's negative return value and its
        last error text (the Error's message at the newest release; "function: reason"
        before v8.2.0). A stream the model rejects with a RecoveryError must be rejected
        by the C on its own."""
        try:
            self._check("ram_dirty_bitmap_reload", block, stream)
        except RecoveryError:
            pass
        ret = int(self._call("ram_dirty_bitmap_reload", block, bytearray(stream), len(stream)))
        if ret < 0:
            fn = "ram_dirty_bitmap_reload"
            message = self.error_log[-1] if self.error_log else ""
            raise RecoveryError(fn, block.idstr, message.removeprefix(fn + ": "), ret)
        return ret


# --- this process: a library through ctypes -----------------------------------------


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


class LibraryTransport:
    """A library loaded in this process: blocks are C structs linked by their addresses
    (a block's handle is its address), arguments go through ctypes. The library emulates
    LP64 and ILP32 little-endian hosts (its 64- and 32-bit builds)."""

    alive = True

    def __init__(self, lib: CLibrary) -> None:
        self.lib = lib
        self._list = RAMListStruct()
        self.ram_list = ctypes.addressof(self._list)
        self._structs: dict[int, tuple[RAMBlockStruct, int]] = {}  # handle -> (struct, nwords)

    def check(self, layout: Layout, pointer_bits: int) -> None:
        if layout.big_endian or pointer_bits != layout.bits_per_long:
            raise ValueError(f"the C library emulates LP64/ILP32 little-endian hosts, not {layout}")
        if self.lib.bits != layout.bits_per_long:
            raise ValueError(f"a {self.lib.bits}-bit library for a {layout} context")

    def new_block(self, block: RAMBlock, nwords: int) -> int:
        st = RAMBlockStruct(
            host=block.host,
            used_length=block.used_length,
            max_length=block.max_length,
            postcopy_length=block.postcopy_length,
            page_size=block.page_size,
            migratable=block.migratable,
            ignored=block.ignored,
            idstr=block.idstr.encode(),
        )
        handle = ctypes.addressof(st)
        if self._structs:
            next(reversed(self._structs.values()))[0].next = handle
        else:
            self._list.blocks = handle
        self._structs[handle] = (st, nwords)
        return handle

    def map(self, handle: int, which: str) -> CMap | None:
        st, nwords = self._structs[handle]
        address = getattr(st, which)
        return CMap(address, nwords, self.lib.bits) if address else None

    def call(self, config: RamContext, name: str, *args: Any) -> tuple[Any, str | None]:
        """Run one C function with the target and host pages set; its error_report line."""
        self.lib.qref_ram_clear_error()
        self.lib.qref_set_target_page_bits(config.qemu_target_page_bits())
        self.lib.qref_set_host_page_size(config.host_page_size)
        c_args = [
            a.encode()
            if isinstance(a, str)
            else (ctypes.c_uint8 * len(a)).from_buffer(a)
            if isinstance(a, bytearray)
            else a
            for a in args
        ]
        result = self.lib.functions[name](*c_args)
        buf = (ctypes.c_uint8 * ERROR_BUF)()
        if self.lib.qref_ram_last_error(buf, ERROR_BUF):
            return result, ctypes.string_at(buf).decode()
        return result, None

    def __del__(self) -> None:
        """Free every map the library allocated (ram_load_cleanup, ram_save_cleanup)."""
        try:
            if self._structs:
                self.lib.ram_load_cleanup(self.ram_list)
                self.lib.ram_save_cleanup(self.ram_list)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def c_context(
    *args: Any, lib: CLibrary | None = None, checked: bool = True, **config: Any
) -> CRamContext:
    """A C face of ``lib`` (default: ours, of the layout's width) with ``RamContext``'s
    arguments (``model_context``'s: the factory of every face)."""
    model = RamContext(*args, **config)
    lib = library(model.bits_per_long) if lib is None else lib
    return CRamContext(LibraryTransport(lib), model, checked)
