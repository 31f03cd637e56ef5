# SPDX-License-Identifier: GPL-2.0-or-later
"""The C reference in another process: the ``qref-replay`` driver, here or on an emulated host.

``Driver`` runs one ``qref-replay`` process (qemu_ref/replay.c documents its line protocol).
``DriverImpl`` is an ``Implementation`` over it, so the engine runs unchanged on a driver
built for s390x and started under qemu-user; its layout is the one the driver reports.
``DriverTransport`` carries the ram layer's face (``qemu_ref.ram.CRamContext``) to the same
process (``driver_context``). ``replay`` runs a
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

from recvmap.pymodel.ramblock import RAMBlock, RamContext
from recvmap.pymodel.words import Layout
from recvmap.qemu_ref.ram import CRamContext

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


@dataclass(frozen=True)
class DriverObject:
    """A driver object ``#index`` (a RAMBlock or a RAMList); equal when the index is."""

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


WHICH = {"receivedmap": "recv", "bmap": "bmap"}  # a block's maps, by the driver's names


class DriverTransport:
    """``qemu_ref.ram.RamTransport`` over a driver: the C ram layer of the driver's host.

    Blocks are driver objects (``#k``); the target page bits are a global of the driver,
    set before every call. Maps are read from the driver in one exchange for all blocks,
    only when something ran since the last read (``snapshot``).
    """

    def __init__(self, driver: Driver) -> None:
        if not driver.info.get("ram"):
            raise DriverError(f"{driver.name}: built without the ram layer")
        self.driver = driver
        self.ram_list = DriverObject(int(driver.ask("list")[1:]))
        self._errbuf = int(driver.ask(f"new {ERROR_BUF}"))
        self._nwords: dict[DriverObject, int] = {}  # every block, in list order
        self._seen: dict[tuple[DriverObject, str], DriverMap] = {}
        self._snapshot_generation = -1

    @property
    def alive(self) -> bool:
        return self.driver.proc.poll() is None

    def check(self, layout: Layout, pointer_bits: int) -> None:
        if layout != self.driver.layout:
            raise ValueError(f"{self.driver.name} runs {self.driver.layout}, not {layout}")
        if pointer_bits != self.driver.info["pointer"]:
            raise ValueError(f"{self.driver.name} has {self.driver.info['pointer']}-bit pointers")

    def new_block(self, block: RAMBlock, nwords: int) -> DriverObject:
        """A driver RAMBlock; the driver's list is rebuilt with it at the end."""
        answer = self.driver.ask(
            f"block {arg_token(block.idstr)} {block.host} {block.used_length} "
            f"{block.max_length} {block.postcopy_length} {block.page_size} "
            f"{int(block.migratable)} {int(block.ignored)}"
        )
        obj = DriverObject(int(answer[1:]))
        self._nwords[obj] = nwords
        objs = " ".join(f"#{o.index}" for o in self._nwords)
        self.ram_list = DriverObject(int(self.driver.ask(f"list {objs}")[1:]))
        return obj

    def snapshot(self) -> None:
        """Read every map of every block in one exchange, unless nothing ran since the last.

        The driver runs code only on commands, so the maps cannot change between two
        exchanges that call nothing (``Driver.generation``). With ``same?`` the driver
        answers ``same`` for a map equal to the copy it sent last (which we hold).
        """
        if self._snapshot_generation == self.driver.generation:
            return
        wanted = [(obj, w) for obj in self._nwords for w in WHICH.values()]
        requests = []
        for obj, w in wanted:
            last = self._seen.get((obj, w))
            same = " same?" if last is not None and last.nwords == self._nwords[obj] else ""
            requests.append(f"map #{obj.index} {w} {self._nwords[obj]}{same}")
        for key, answer in zip(wanted, self.driver.ask_many(requests), strict=True):
            if answer == "null":
                self._seen.pop(key, None)
            elif answer != "same":
                self._seen[key] = DriverMap(bytes.fromhex(answer), self._nwords[key[0]])
        self._snapshot_generation = self.driver.generation

    def map(self, handle: DriverObject, which: str) -> DriverMap | None:
        self.snapshot()
        return self._seen.get((handle, WHICH[which]))

    def call(self, config: RamContext, name: str, *args: Any) -> tuple[Any, str | None]:
        """One C call with the page bits set, in one exchange, and its error_report line.

        A ``bytearray`` argument is a driver buffer loaded with its bytes, read back into
        it after the call and freed."""
        buffers = [(a, int(self.driver.ask(f"new {len(a)}"))) for a in args if type(a) is bytearray]
        try:
            loads = [f"load {k} {bytes(a).hex()}" for a, k in buffers if a]
            if loads:
                self.driver.ask_many(loads)
            tokens = iter(DriverArray(k, len(a), 0) for a, k in buffers)
            argv = [next(tokens) if type(a) is bytearray else a for a in args]
            answers = self.driver.ask_many(
                [
                    "call qref_ram_clear_error",
                    f"call qref_set_target_page_bits {config.qemu_target_page_bits()}",
                    f"call qref_set_host_page_size {config.host_page_size}",
                    f"call {name} {' '.join(arg_token(x) for x in argv)}",
                    f"calld qref_ram_last_error @{self._errbuf} {ERROR_BUF}",
                    *(f"dump {k}" for _, k in buffers),
                ]
            )
            for (a, _), image in zip(buffers, answers[5:], strict=True):
                a[:] = bytes.fromhex(image)
        finally:
            if buffers:
                self.driver.ask_many(f"free {k}" for _, k in buffers)
        kind, value = answers[3].split(" ")
        _, length, image = answers[4].split(" ")
        error = None
        if int(length):
            raw = bytes.fromhex(image)
            error = raw[: raw.index(b"\0")].decode(errors="replace")
        return parse_result(kind, value), error


def driver_context(driver: Driver, *args: Any, checked: bool = True, **config: Any) -> CRamContext:
    """The C ram layer of ``driver``'s host with ``RamContext``'s arguments; the layout and
    pointer width are the driver's (others asked for are a ValueError)."""
    config.setdefault("layout", driver.layout)
    config.setdefault("pointer_bits", driver.info["pointer"])
    return CRamContext(DriverTransport(driver), RamContext(*args, **config), checked)


def driver_factory(driver: Driver) -> Callable[..., CRamContext]:
    """A ram context factory (``model_context``'s arguments) for the C of ``driver``'s
    host. Contexts are unchecked: the engine asks the model first, strict mode too."""

    def make(*args: Any, **config: Any) -> CRamContext:
        config["strict"] = False  # the model checks strict mode before the driver is called
        return driver_context(driver, *args, checked=False, **config)

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
    "DriverTransport",
    "Replay",
    "driver_context",
    "driver_factory",
    "for_layout",
    "program_script",
    "replay",
]
