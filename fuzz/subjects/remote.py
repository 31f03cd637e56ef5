# SPDX-License-Identifier: GPL-2.0-or-later
"""The C reference in another process: the ``qref-replay`` driver, here or on an emulated host.

``Driver`` runs one ``qref-replay`` process (qemu_ref/replay.c documents its line protocol).
``DriverImpl`` is an ``Implementation`` over it, so the engine runs unchanged on a driver
built for s390x and started under qemu-user; its layout is the one the driver reports.
``DriverRamContext`` is the ram layer's ``RamApi`` over the same process. ``replay`` runs a
whole program in one batch and returns every result and the final memory images;
``recvmap.fuzz.campaign.driver`` is that batch mode as a command::

    python -m recvmap.fuzz.campaign.driver tests/vectors/x.json --host s390x [--compare]
"""

from __future__ import annotations

import subprocess
import tempfile
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from recvmap.pymodel.arch import Host
from recvmap.pymodel.ramblock import BlockSpec, FaceBlock, RAMBlock, RamFace, Side, TargetPage
from recvmap.pymodel.words import Layout
from recvmap.qemu_ref.ram import CANARY, sender_room, written

from ..program import Program, Ref

ERROR_BUF = 1024


# Commands that never change the driver's memory (all others bump Driver.generation).
READ_ONLY = ("info", "dump ", "map ", "has ")


class DriverError(RuntimeError):
    """The driver refused a command, or died (the message carries its stderr)."""


class Driver:
    """One running ``qref-replay``: send command lines, read one answer line each."""

    def __init__(self, argv: Sequence[str], name: str = "", env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.name = name or Path(argv[-1]).name
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        self.generation = 0  # counts exchanges that may change the driver's memory
        self.info = self._info()

    def _info(self) -> dict[str, int]:
        fields = self.ask("info").split()
        return {k: int(v) for k, v in (f.split("=") for f in fields)}

    @property
    def layout(self) -> Layout:
        return Layout(self.info["bits"], bool(self.info["big_endian"]))

    def _died(self, line: str = "") -> DriverError:
        code = self.proc.wait(timeout=30)
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace").strip()
        at = f" at {line[:200]!r}" if line else ""
        return DriverError(f"{self.name}: driver exited with status {code}{at}: {err[-2000:]}")

    def ask_many(self, lines: Iterable[str]) -> list[str]:
        """Send every line, then read their answers; an ``err`` answer raises."""
        lines = list(lines)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if any(not line.startswith(READ_ONLY) for line in lines):
            self.generation += 1  # the driver's memory may change from here
        try:
            self.proc.stdin.write("".join(line + "\n" for line in lines))
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None
        answers, refused = [], None
        for line in lines:
            answer = self.proc.stdout.readline()
            if not answer:
                raise self._died(line)
            if not answer.startswith("ok") and refused is None:
                refused = DriverError(f"{self.name}: {line[:200]!r}: {answer.strip()}")
            answers.append(answer[3:].rstrip("\n"))
        if refused is not None:  # raised once every answer is read: the pipe stays in step
            raise refused
        return answers

    def ask(self, line: str) -> str:
        return self.ask_many([line])[0]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class DriverArray:
    """Buffer ``@index`` of a driver, with the last image seen (None: ask the driver)."""

    index: int
    nbytes: int
    nwords: int
    cache: bytes | None = None


@dataclass(frozen=True, eq=False)
class DriverObject:
    """A driver object ``#index`` (a RAMBlock or a RAMList)."""

    index: int


def arg_token(a: Any) -> str:
    """One argument of a ``call`` line: integer, @buffer, #object or $hex string."""
    if isinstance(a, DriverArray):
        return f"@{a.index}"
    if isinstance(a, DriverObject):
        return f"#{a.index}"
    if isinstance(a, str):
        return "$" + a.encode().hex()
    if isinstance(a, bytes):
        return "$" + a.hex()
    if isinstance(a, bool) or not isinstance(a, int):
        raise TypeError(f"a driver argument is an int, str, array or object, not {a!r}")
    return str(a)


def parse_result(kind: str, value: str) -> Any:
    """A ``call`` answer's value as the ctypes loader would return it."""
    if kind == "v":
        return None
    if kind == "b":
        return value == "1"
    if kind == "o":
        return None if value == "null" else DriverObject(int(value[1:]))
    return int(value)


class DriverImpl:
    """``Implementation`` over a driver process: the C reference of another host."""

    def __init__(self, driver: Driver, name: str | None = None, own: bool = True) -> None:
        self.driver = driver
        self.layout = driver.layout
        order = "be" if self.layout.big_endian else "le"
        self.name = name or f"{driver.name}-{self.layout.bits_per_long}{order}"
        self.own = own
        self._has: dict[str, bool] = {}
        self._freed: list[int] = []  # buffers whose handles Python dropped
        self._epoch = 0  # bumped by reset(): handles of an older epoch are gone already

    def _release(self, epoch: int, index: int) -> None:
        if epoch == self._epoch:
            self._freed.append(index)

    def alloc(self, nwords: int) -> DriverArray:
        if self._freed:
            self.driver.ask_many(f"free {k}" for k in self._freed)
            self._freed.clear()
        nbytes = nwords * self.layout.bits_per_long // 8
        h = DriverArray(int(self.driver.ask(f"new {nbytes}")), nbytes, nwords, bytes(nbytes))
        weakref.finalize(h, self._release, self._epoch, h.index)
        return h

    def image(self, handle: DriverArray) -> bytes:
        if handle.cache is None:
            handle.cache = bytes.fromhex(self.driver.ask(f"dump {handle.index}"))
        return handle.cache

    def load(self, handle: DriverArray, image: bytes) -> None:
        if len(image) != handle.nbytes:
            raise ValueError(f"image of {len(image)} bytes for {handle.nbytes} bytes of words")
        self.driver.ask(f"load {handle.index} {bytes(image).hex()}")
        handle.cache = bytes(image)

    def has(self, fname: str) -> bool:
        if fname not in self._has:
            self._has[fname] = self.driver.ask(f"has {fname}") == "1"
        return self._has[fname]

    def call(self, fname: str, *args: Any) -> Any:
        """Call and read back, in one exchange, every array the call was given."""
        answer = self.driver.ask(f"calld {fname} {' '.join(arg_token(a) for a in args)}")
        kind, value, *images = answer.split(" ")
        seen: list[DriverArray] = []
        for a in args:
            if isinstance(a, DriverArray) and a not in seen:
                seen.append(a)
        for a, img in zip(seen, images, strict=True):
            a.cache = bytes.fromhex(img)
        return parse_result(kind, value)

    def reset(self) -> None:
        """Free everything on the driver side (earlier handles become invalid)."""
        self._epoch += 1
        self._freed.clear()
        self.driver.ask("reset")

    def close(self) -> None:
        if self.own:
            self.driver.close()


# --- batch mode ----------------------------------------------------------------------


def program_script(program: Program, buffers: Sequence[int] | None = None) -> list[str]:
    """The driver lines of a bitmap-layer program: arrays, initial words, calls, dumps.

    With ``buffers`` (the driver's numbers of arrays already allocated) the lines use them
    and free them at the end; without, the script starts with ``reset`` and allocates
    arrays @0, @1, ... itself (a standalone script: ``qref-replay < script``). Initial
    contents are word values, so one script means the same on every host.
    """
    if program.layer != "bitmap":
        raise ValueError(f"the batch replay runs bitmap-layer programs, not {program.layer!r}")
    bpl = program.layout.bits_per_long
    lines = []
    if buffers is None:
        buffers = range(len(program.arrays))
        lines.append("reset")
        lines += [f"new {a.nwords * bpl // 8}" for a in program.arrays]
    for k, a in zip(buffers, program.arrays, strict=True):
        lines += [f"word {k} {i} {v}" for i, v in sorted(a.words.items())]
    for op in program.ops:
        args = " ".join(f"@{buffers[a.index]}" if isinstance(a, Ref) else str(a) for a in op.args)
        lines.append(f"call {op.name} {args}")
    lines += [f"dump {k}" for k in buffers]
    if not isinstance(buffers, range):
        lines += [f"free {k}" for k in buffers]
    return lines


@dataclass
class Replay:
    """What a batch replay printed: each operation's result and the final images."""

    results: list[Any] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)


def replay(program: Program, driver: Driver) -> Replay:
    """Run a whole program on a driver: one exchange allocates, one runs everything."""
    if program.layout != driver.layout:
        raise ValueError(f"program for {program.layout}, driver is {driver.layout}")
    bpl = program.layout.bits_per_long
    buffers = [
        int(k) for k in driver.ask_many(f"new {a.nwords * bpl // 8}" for a in program.arrays)
    ]
    lines = program_script(program, buffers)
    answers = dict(zip(range(len(lines)), driver.ask_many(lines), strict=True))
    out = Replay()
    for i, line in enumerate(lines):
        if line.startswith("call "):
            kind, value = answers[i].split(" ")
            out.results.append(parse_result(kind, value))
        elif line.startswith("dump "):
            out.images.append(bytes.fromhex(answers[i]))
    return out


# --- the ram layer over a driver ------------------------------------------------------


@dataclass(frozen=True)
class DriverMap:
    """A snapshot of a map the library allocated inside a driver (``image()``, ``nwords``)."""

    data: bytes
    nwords: int

    def image(self) -> bytes:
        return self.data


class DriverRAMBlock(FaceBlock):
    """A driver RAMBlock with the model RAMBlock's attributes.

    ``receivedmap`` and ``bmap`` read the map from the driver at each access (one exchange)
    and return a snapshot, or None while the library has not allocated it.
    """

    def __init__(
        self, ctx: DriverRamContext, obj: DriverObject, spec: BlockSpec, shadow: RAMBlock | None
    ) -> None:
        self._ctx, self.obj, self.shadow = ctx, obj, shadow
        self.idstr: str = spec.idstr
        self.host: int = spec.host
        self.used_length: int = spec.used_length
        self.max_length: int = spec.max_length
        self.postcopy_length: int = spec.postcopy_length
        self.page_size: int = spec.page_size
        self.migratable: bool = spec.migratable
        self.ignored: bool = spec.ignored
        self._seen: dict[str, DriverMap] = {}

    def _map(self, which: str) -> DriverMap | None:
        self._ctx.snapshot()
        return self._seen.get(which)

    def _map_request(self, which: str) -> str:
        """The ``map`` line; with ``same?`` the driver answers ``same`` if the map equals
        the copy it sent last (which we hold)."""
        bpl = self._ctx.bits_per_long
        nbits = self.max_length >> self._ctx.qemu_target_page_bits()
        nwords = max(1, -(-nbits // bpl))  # bitmap_new allocates one word for 0 bits
        last = self._seen.get(which)
        same = " same?" if last is not None and last.nwords == nwords else ""
        return f"map #{self.obj.index} {which} {nwords}{same}"

    def _map_answer(self, which: str, request: str, answer: str) -> None:
        if answer == "null":
            self._seen.pop(which, None)
        elif answer != "same":
            self._seen[which] = DriverMap(bytes.fromhex(answer), int(request.split()[3]))

    @property
    def receivedmap(self) -> DriverMap | None:
        return self._map("recv")

    @property
    def bmap(self) -> DriverMap | None:
        return self._map("bmap")

    def __repr__(self) -> str:
        return f"DriverRAMBlock({self.idstr!r}, host=0x{self.host:x}, max=0x{self.max_length:x})"


class DriverRamContext(RamFace[DriverRAMBlock]):
    """``RamApi`` over a driver: the C ram layer of the driver's host.

    The layout and pointer width are the driver's. With ``checked=True`` every call first
    runs on a shadow model context (a call the model rejects raises its PreconditionError
    and never reaches the driver); the results returned are always the driver's.
    The target page bits are a global of the driver: they are set before every call.
    """

    def __init__(
        self,
        driver: Driver,
        target_page: TargetPage,
        *,
        side: Side = Side.DESTINATION,
        host_page_size: int = 4096,
        strict: bool = False,
        host: Host | None = None,
        checked: bool = True,
    ) -> None:
        if not driver.info.get("ram"):
            raise DriverError(f"{driver.name}: built without the ram layer")
        super().__init__(
            target_page,
            side=side,
            layout=driver.layout,
            host_page_size=host_page_size,
            pointer_bits=driver.info["pointer"],
            strict=strict,
            host=host,
        )
        self.shadow = self._shadow_model(checked)
        self.driver = driver
        self.blocks: list[DriverRAMBlock] = []
        self._snapshot_generation = -1
        self._list = DriverObject(int(driver.ask("list")[1:]))
        self._errbuf = int(driver.ask(f"new {ERROR_BUF}"))

    def snapshot(self) -> None:
        """Read every map of every block in one exchange, unless nothing ran since the last.

        The driver runs code only on commands, so the maps cannot change between two
        exchanges that call nothing (``Driver.generation``).
        """
        if self._snapshot_generation == self.driver.generation:
            return
        wanted = [(b, w) for b in self.blocks for w in ("recv", "bmap")]
        requests = [b._map_request(w) for b, w in wanted]
        for (b, w), request, answer in zip(
            wanted, requests, self.driver.ask_many(requests), strict=True
        ):
            b._map_answer(w, request, answer)
        self._snapshot_generation = self.driver.generation

    def _call(self, name: str, *args: Any) -> Any:
        """One C call with the target and host pages set and its error_report line collected."""
        bits = self.qemu_target_page_bits()
        a = self.driver.ask_many(
            [
                "call qref_ram_clear_error",
                f"call qref_set_target_page_bits {bits}",
                f"call qref_set_host_page_size {self.host_page_size}",
                f"call {name} {' '.join(arg_token(x) for x in args)}",
                f"calld qref_ram_last_error @{self._errbuf} {ERROR_BUF}",
            ]
        )
        kind, value = a[-2].split(" ")
        _, length, image = a[-1].split(" ")
        if int(length):
            raw = bytes.fromhex(image)
            self.error_report(raw[: raw.index(b"\0")].decode(errors="replace"))
        return parse_result(kind, value)

    def _c(self, name: str, *args: Any) -> Any:
        """Checked call: shadow model first, then the driver with blocks as objects."""
        self._check(name, *args)
        return self._call(name, *(a.obj if isinstance(a, DriverRAMBlock) else a for a in args))

    def _new_block(self, spec: BlockSpec, shadow: RAMBlock | None) -> DriverRAMBlock:
        """A driver RAMBlock of the checked ``spec``; the driver's list is rebuilt with it."""
        answer = self.driver.ask(
            f"block {arg_token(spec.idstr)} {spec.host} {spec.used_length} {spec.max_length} "
            f"{spec.postcopy_length} {spec.page_size} {int(spec.migratable)} {int(spec.ignored)}"
        )
        block = DriverRAMBlock(self, DriverObject(int(answer[1:])), spec, shadow)
        self.blocks.append(block)
        objs = " ".join(f"#{b.obj.index}" for b in self.blocks)
        self._list = DriverObject(int(self.driver.ask(f"list {objs}")[1:]))
        return block

    def qemu_ram_block_by_name(self, name: str) -> DriverRAMBlock | None:
        obj = self._call("qemu_ram_block_by_name", self._list, name)
        return next((b for b in self.blocks if b.obj == obj), None)

    def ramblock_is_ignored(self, rb: DriverRAMBlock) -> bool:
        return bool(self._c("ramblock_is_ignored", rb))

    def ramblock_recv_map_init(self) -> None:
        self._check("ramblock_recv_map_init")
        self._call("ramblock_recv_map_init", self._list)

    def ramblock_recv_bitmap_offset(
        self, host_addr: int, rb: DriverRAMBlock, strict: bool | None = None
    ) -> int:
        self._check("ramblock_recv_bitmap_offset", host_addr, rb, strict)
        return int(self._call("ramblock_recv_bitmap_offset", host_addr, rb.obj))

    def ramblock_recv_bitmap_test(self, rb: DriverRAMBlock, host_addr: int) -> int:
        return int(self._c("ramblock_recv_bitmap_test", rb, host_addr))

    def ramblock_recv_bitmap_test_byte_offset(self, rb: DriverRAMBlock, byte_offset: int) -> bool:
        return bool(self._c("ramblock_recv_bitmap_test_byte_offset", rb, byte_offset))

    def ramblock_recv_bitmap_set(self, rb: DriverRAMBlock, host_addr: int) -> None:
        self._c("ramblock_recv_bitmap_set", rb, host_addr)

    def ramblock_recv_bitmap_set_range(self, rb: DriverRAMBlock, host_addr: int, nr: int) -> None:
        self._c("ramblock_recv_bitmap_set_range", rb, host_addr, nr)

    def ramblock_recv_bitmap_set_offset(self, rb: DriverRAMBlock, byte_offset: int) -> None:
        self._c("ramblock_recv_bitmap_set_offset", rb, byte_offset)

    def ram_load_cleanup(self) -> int:
        self._check("ram_load_cleanup")
        return int(self._call("ram_load_cleanup", self._list))

    def ram_block_discard_range(self, rb: DriverRAMBlock, start: int, length: int) -> int:
        return int(self._c("ram_block_discard_range", rb, start, length))

    def ram_discard_range(self, rbname: str, start: int, length: int) -> int:
        self._check("ram_discard_range", rbname, start, length)
        return int(self._call("ram_discard_range", self._list, rbname, start, length))

    def postcopy_ram_supported_by_host(self) -> bool:
        """C checks the page sizes; a host without userfaultfd is the arch table's word."""
        self._check("postcopy_ram_supported_by_host")
        if not self._call("postcopy_ram_supported_by_host", self.host_page_size):
            return False
        return self._postcopy_host()

    def postcopy_place_page(self, host: int, rb: DriverRAMBlock) -> int:
        self._check("postcopy_place_page", host, rb)
        return int(self._call("postcopy_place_page", host, rb.obj))

    def ram_list_init_bitmaps(self) -> None:
        self._check("ram_list_init_bitmaps")
        self._call("ram_list_init_bitmaps", self._list)

    def ram_save_cleanup(self) -> None:
        self._check("ram_save_cleanup")
        self._call("ram_save_cleanup", self._list)

    def ramblock_recv_bitmap_send(self, block_name: str, spare: int = 0) -> tuple[bytes, int]:
        """The driver's sender writes into a buffer of size + 16 + ``spare`` bytes, filled
        with the canary first; (what it wrote, ret), as the C face."""
        self._check("ramblock_recv_bitmap_send", block_name, spare)
        block = next((b for b in self.blocks if b.idstr == block_name), None)
        buflen = sender_room(self, block) + spare  # a pre-v6.1 tree's map is used_length's
        buf = int(self.driver.ask(f"new {buflen}"))
        try:
            if buflen:
                self.driver.ask(f"load {buf} {(bytes([CANARY]) * buflen).hex()}")
            ret = int(
                self._call(
                    "ramblock_recv_bitmap_send",
                    self._list,
                    block_name,
                    DriverArray(buf, buflen, 0),
                    buflen,
                )
            )
            image = bytes.fromhex(self.driver.ask(f"dump {buf}"))
        finally:
            self.driver.ask(f"free {buf}")
        return written(image, ret), ret

    def ram_dirty_bitmap_reload(self, block: DriverRAMBlock, stream: bytes) -> int:
        """0, or RecoveryError carrying the driver's negative return value."""
        self._check_reload(block, stream)
        buf = int(self.driver.ask(f"new {len(stream)}"))
        try:
            if stream:
                self.driver.ask(f"load {buf} {stream.hex()}")
            ret = int(
                self._call(
                    "ram_dirty_bitmap_reload",
                    block.obj,
                    DriverArray(buf, len(stream), 0),
                    len(stream),
                )
            )
        finally:
            self.driver.ask(f"free {buf}")
        return self._reload_result(block, ret)

    def close(self) -> None:
        """Free the maps the library allocated (both cleanups are harmless twice)."""
        if self.blocks and self.driver.proc.poll() is None:
            self._call("ram_load_cleanup", self._list)
            self._call("ram_save_cleanup", self._list)


def driver_factory(driver: Driver) -> Callable[..., DriverRamContext]:
    """A ram context factory (``model_context``'s keywords) for the C of ``driver``'s host.

    Contexts are unchecked: the engine asks the model first. The layout and pointer width
    asked for must be the driver's own.
    """

    def make(
        target_page: TargetPage,
        *,
        side: Side = Side.DESTINATION,
        layout: Layout | None = None,
        host_page_size: int = 4096,
        pointer_bits: int | None = None,
        strict: bool = False,
        host: Host | None = None,
    ) -> DriverRamContext:
        if layout is not None and layout != driver.layout:
            raise ValueError(f"{driver.name} runs {driver.layout}, not {layout}")
        if pointer_bits is not None and pointer_bits != driver.info["pointer"]:
            raise ValueError(f"{driver.name} has {driver.info['pointer']}-bit pointers")
        del strict  # the model checks strict mode before the driver is called
        return DriverRamContext(
            driver,
            target_page,
            side=side,
            host_page_size=host_page_size,
            host=host,
            checked=False,
        )

    return make


# --- for the command line (recvmap.fuzz.campaign.driver) ------------------------------


def for_layout(program: Program, layout: Layout) -> Program | None:
    """``program`` for a host of ``layout``: the same program when only the byte order
    differs (initial contents are word values), None when the word width differs."""
    if program.layout.bits_per_long != layout.bits_per_long:
        return None
    if program.layout == layout:
        return program
    obj = program.to_json()
    obj["big_endian"] = layout.big_endian
    return Program.from_json(obj)


__all__ = [
    "Driver",
    "DriverArray",
    "DriverError",
    "DriverImpl",
    "DriverObject",
    "DriverRamContext",
    "Replay",
    "driver_factory",
    "for_layout",
    "program_script",
    "replay",
]
