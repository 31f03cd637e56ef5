# SPDX-License-Identifier: GPL-2.0-or-later
"""Real other hosts: the C reference and its replay driver cross-built and run under qemu-user.

The model claims the same semantics on every host QEMU runs on. This module builds our C
(qemu_ref/*.c plus the replay driver) with Debian's cross compilers (static, so no target
libraries are needed at run time), caches each build under ``build/hosts/NAME``, and runs
it as ``qemu-ARCH -L /usr/TRIPLET driver`` (binfmt_misc may be absent, and a wrong program
path makes qemu-user exit 1 without a word, so every path is checked first).

- ``available_hosts()`` / ``host_status(name)``: which hosts can run here, and why not.
- ``host_impl(name)``: an ``Implementation`` (``remote.DriverImpl``) on that host.
- ``fuzz_host(name, seconds, seed)``: random decoded programs against the model configured
  for the host's layout; a summary dict (``recvmap fuzz --host NAME``).
- ``recovery_matrix(names, samples, seed)``: the postcopy recovery stream sent by each
  host's ram layer, reloaded by every host's (all pairs), each step compared with the model.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recvmap.pymodel.errors import PreconditionError, RecoveryError
from recvmap.pymodel.ramblock import RamContext, Side, TargetPage
from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout

from .engine import Session, minimize
from .gen import decode_bitmap_program, run_stream
from .gen_ram import decode_ram_program
from .impls import ModelImpl
from .program import Op, Program
from .ram_session import ContextFactory, RamSession, model_factories
from .remote import Driver, DriverError, DriverImpl, DriverRamContext, driver_factory
from .vectors import model_run

CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread")
HEADERS = ("qemu_ref.h", "qemu_ref_ram.h")  # those present make the ABI
SOURCES = ("bitops.c", "bitmap.c", "ram.c")
DRIVER = "qref-replay"


class HostError(RuntimeError):
    """A host cannot be built or run here; the message says what is missing."""


@dataclass(frozen=True)
class EmulatedHost:
    """A machine the C reference is built for: compiler, emulator and expected layout.

    ``triplet`` None means this machine's own ``gcc``; ``qemu`` None means run directly.
    ``cflags`` may emulate another word width (``-DQREF_BITS_PER_LONG=32``).
    """

    name: str
    layout: Layout
    triplet: str | None = None
    qemu: str | None = None
    cflags: tuple[str, ...] = ()
    note: str = ""

    @property
    def cc(self) -> str:
        return f"{self.triplet}-gcc" if self.triplet else os.environ.get("CC", "gcc")

    @property
    def sysroot(self) -> Path | None:
        return Path("/usr") / self.triplet if self.triplet else None


HOSTS: dict[str, EmulatedHost] = {
    h.name: h
    for h in (
        EmulatedHost("native", LP64_LE, note="this machine (x86_64 or another LP64 LE host)"),
        EmulatedHost(
            "i686", ILP32_LE, "i686-linux-gnu", "qemu-i386", note="real 32-bit little-endian host"
        ),
        EmulatedHost(
            "armhf",
            ILP32_LE,
            "arm-linux-gnueabihf",
            "qemu-arm",
            note="real 32-bit little-endian host",
        ),
        EmulatedHost(
            "s390x", LP64_BE, "s390x-linux-gnu", "qemu-s390x", note="real 64-bit big-endian host"
        ),
        EmulatedHost(
            "ppc64",
            LP64_BE,
            "powerpc64-linux-gnu",
            "qemu-ppc64",
            note="real 64-bit big-endian host",
        ),
        EmulatedHost(
            "native32",
            ILP32_LE,
            cflags=("-DQREF_BITS_PER_LONG=32",),
            note="this machine, 32-bit words emulated with uint32_t",
        ),
        EmulatedHost(
            "s390x-w32",
            ILP32_BE,
            "s390x-linux-gnu",
            "qemu-s390x",
            ("-DQREF_BITS_PER_LONG=32",),
            note="big-endian host with 32-bit words emulated (stands for ppc32/mips)",
        ),
    )
}


# --- sources and cache --------------------------------------------------------------------


def source_dir() -> Path:
    """Where qemu_ref's C lives: $RECVMAP_QEMU_REF_SRC, the checkout, or the installed package."""
    candidates = []
    if env := os.environ.get("RECVMAP_QEMU_REF_SRC"):
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parent.parent / "qemu_ref")
    try:
        from recvmap.qemu_ref.loader import package_file

        candidates.append(package_file("qemu_ref.h").parent)
    except Exception:  # noqa: BLE001 - no installed package: the checkout must do
        pass
    for c in candidates:
        if (c / "replay.c").is_file() and (c / "bitops.c").is_file():
            return c
    raise HostError(
        f"C sources of qemu_ref not found (looked in {', '.join(map(str, candidates))})"
    )


def cache_root() -> Path:
    """$RECVMAP_HOSTS_DIR, else build/hosts of the checkout, else ~/.cache/recvmap/hosts."""
    if env := os.environ.get("RECVMAP_HOSTS_DIR"):
        return Path(env)
    repo = source_dir().parent
    if (repo / "meson.build").is_file() and os.access(repo, os.W_OK):
        return repo / "build" / "hosts"
    return Path.home() / ".cache" / "recvmap" / "hosts"


def _inputs(src: Path) -> tuple[list[Path], list[Path]]:
    headers = [src / h for h in HEADERS if (src / h).is_file()]
    sources = [src / s for s in SOURCES if (src / s).is_file()]
    if (src / "qemu_ref_ram.h").is_file() and not (src / "ram.c").is_file():
        headers.remove(src / "qemu_ref_ram.h")  # ram layer declared but not written yet
    return headers, sources


def host_status(name: str) -> str | None:
    """None if host ``name`` can be built and run here, else the reason it cannot."""
    if name not in HOSTS:
        return f"unknown host {name!r} (known: {', '.join(HOSTS)})"
    h = HOSTS[name]
    if not shutil.which(h.cc):
        return f"{h.cc} not installed (apt-get install gcc-{h.triplet or ''})".rstrip("-")
    if h.qemu and not shutil.which(h.qemu):
        return f"{h.qemu} not installed (apt-get install qemu-user)"
    if h.sysroot is not None and not (h.sysroot / "lib" / "libc.a").is_file():
        return f"{h.sysroot}/lib/libc.a missing (apt-get install the libc6-dev cross package)"
    return None


def available_hosts() -> list[str]:
    """Hosts whose compiler, emulator and static libc are all present."""
    return [name for name in HOSTS if host_status(name) is None]


def _run(argv: Sequence[str], what: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode:
        raise HostError(f"{what} failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr}")
    return proc.stdout


def _fingerprint(h: EmulatedHost, files: list[Path], flags: Sequence[str]) -> str:
    digest = hashlib.sha256()
    version = _run([h.cc, "--version"], f"{h.cc} --version")
    for part in (version, " ".join(flags), h.name):
        digest.update(part.encode() + b"\0")
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def build(
    name: str,
    program: str = DRIVER,
    extra_flags: Sequence[str] = (),
    out_dir: Path | None = None,
    src: Path | None = None,
) -> Path:
    """Build (or reuse) ``program`` (``qref-replay`` or ``qref-stress``) for host ``name``.

    Output goes to ``out_dir`` (default: the host's cache directory); ``extra_flags`` make
    variants (sanitizers, a rewritten atomic), ``src`` another copy of the C sources. A
    build is reused while compiler, flags and every input file are unchanged.
    """
    if reason := host_status(name):
        raise HostError(f"host {name}: {reason}")
    h = HOSTS[name]
    src = source_dir() if src is None else src
    headers, sources = _inputs(src)
    main_c = src / ("replay.c" if program == DRIVER else "stress.c")
    gen = src / "gen_dispatch.py"
    static = ("-static",) if h.triplet else ()
    flags = [*CFLAGS, *static, *h.cflags, *extra_flags]
    if program != DRIVER and len(headers) == len(HEADERS):
        flags.append("-DQREF_STRESS_RAM")
    out_dir = cache_root() / name if out_dir is None else out_dir
    exe = out_dir / program
    stamp = out_dir / f"{program}.key"
    key = _fingerprint(h, [*headers, *sources, main_c, gen], flags)
    if exe.is_file() and stamp.is_file() and stamp.read_text() == key:
        return exe
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "qref_dispatch.h"
    _run([sys.executable, str(gen), str(table), *map(str, headers)], "gen_dispatch.py")
    tmp = exe.with_suffix(".tmp")
    _run(
        [h.cc, *flags, f"-I{out_dir}", f"-I{src}", str(main_c), *map(str, sources), "-o", str(tmp)],
        f"building {program} for {name}",
    )
    tmp.replace(exe)
    stamp.write_text(key)
    return exe


def command(name: str, exe: Path) -> list[str]:
    """How to run a built executable of host ``name`` (under qemu-user when foreign)."""
    h = HOSTS[name]
    if not exe.is_file():
        raise HostError(f"{exe}: no such executable (qemu-user would exit 1 silently)")
    if h.qemu is None:
        return [str(exe)]
    qemu = shutil.which(h.qemu)
    if qemu is None or h.sysroot is None or not h.sysroot.is_dir():
        raise HostError(f"host {name}: {h.qemu} or {h.sysroot} missing")
    return [qemu, "-L", str(h.sysroot), str(exe)]


def host_driver(name: str) -> Driver:
    """A running replay driver of host ``name``, checked to have the expected layout."""
    if name not in HOSTS:
        raise HostError(host_status(name) or name)
    return start_driver(name, build(name))


def start_driver(name: str, exe: Path) -> Driver:
    """Run the driver ``exe`` built for host ``name``; its layout must be the host's."""
    h = HOSTS[name]
    driver = Driver(command(name, exe), name=name)
    if driver.layout != h.layout:
        driver.close()
        raise HostError(f"host {name}: driver reports {driver.layout}, expected {h.layout}")
    return driver


def host_impl(name: str) -> DriverImpl:
    """The C reference of host ``name`` as an engine ``Implementation``."""
    return DriverImpl(host_driver(name), name=f"qemu_ref@{name}")


# --- differential fuzzing on a host ---------------------------------------------------------


class _Recorder:
    """Hands out a decoder's operations and remembers them all, to replay a crash."""

    def __init__(self, next_op: Callable[[], Op | None]) -> None:
        self.next_op = next_op
        self.seen: list[Op] = []

    def __call__(self) -> Op | None:
        op = self.next_op()
        if op is not None:
            self.seen.append(op)
        return op


class HostPool:
    """Running drivers by host name, started on first use, with sessions for programs.

    A bitmap or ram program runs on one host; a recovery program runs its destination
    (``setup.sender``'s layout) on a sender host and its source on the host itself.
    """

    def __init__(self, executables: dict[str, Path] | None = None) -> None:
        self.executables = dict(executables or {})  # other builds (e.g. sanitized) by host
        self.drivers: dict[str, Driver] = {}
        self._impls: dict[str, DriverImpl] = {}

    def driver(self, name: str) -> Driver:
        if name not in self.drivers:
            exe = self.executables.get(name)
            self.drivers[name] = host_driver(name) if exe is None else start_driver(name, exe)
        return self.drivers[name]

    def impl(self, name: str) -> DriverImpl:
        if name not in self._impls:
            self._impls[name] = DriverImpl(self.driver(name), f"qemu_ref@{name}", own=False)
        return self._impls[name]

    def session(self, program: Program, name: str, sender: str | None = None) -> Any:
        """A session comparing ``program`` on the model and on host ``name``."""
        if program.layer == "bitmap":
            return Session(program, ModelImpl(program.layout, program.release), self.impl(name))
        make: ContextFactory = driver_factory(self.driver(name))
        factories = {"destination": make, "source": make}
        if program.layer == "recovery":
            factories["destination"] = driver_factory(self.driver(sender or name))
        return RamSession(program, model_factories(program.release), factories)

    def first_divergence(self, program: Program, name: str, sender: str | None) -> Any:
        session = self.session(program, name, sender)
        for i, op in enumerate(program.ops):
            _, divergence = session.step(i, op)
            if divergence is not None:
                return divergence
        return None

    def reset(self) -> None:
        """Free everything inside the running drivers (earlier sessions become invalid)."""
        for impl in self._impls.values():
            impl.reset()
        for n, d in self.drivers.items():
            if n not in self._impls:
                d.ask("reset")

    def close(self) -> None:
        for d in self.drivers.values():
            d.close()
        self.drivers.clear()
        self._impls.clear()


class HostSubject:
    """The C of host ``name`` with the face of ``impls.Subject`` (what harness.open_session
    and vectors.check_impl use): bitmap programs of the host's layout run on its driver;
    ram contexts of another layout (a recovery program's sender) on the host of
    ``sender_hosts`` that has it."""

    def __init__(self, name: str, pool: HostPool | None = None) -> None:
        self.host = name
        self.pool = pool or HostPool()
        self.layout = HOSTS[name].layout
        self.name = f"qemu_ref@{name}"
        self.widths = (self.layout.bits_per_long,)
        self.senders = sender_hosts()
        self.senders[self.layout] = name

    def supports(self, layout: Layout) -> bool:
        return layout == self.layout

    def missing(self, bits: int) -> list[str]:
        return []

    def ram_missing(self, bits: int) -> list[str]:
        return []

    def bitmap(self, layout: Layout) -> DriverImpl | None:
        return self.pool.impl(self.host) if layout == self.layout else None

    def bitmap_functions(self, layout: Layout) -> list[str]:
        impl = self.bitmap(layout)
        return [] if impl is None else [n for n in sorted(ModelImpl.functions) if impl.has(n)]

    def ram(self, layout: Layout) -> ContextFactory | None:
        host = self.senders.get(layout)
        return None if host is None else driver_factory(self.pool.driver(host))

    def close(self) -> None:
        self.pool.close()


def sender_hosts(names: Sequence[str] | None = None) -> dict[Layout, str]:
    """One available host per word layout (real hosts before emulated word widths)."""
    out: dict[Layout, str] = {}
    for n in names if names is not None else available_hosts():
        out.setdefault(HOSTS[n].layout, n)
    return out


LAYERS = ("bitmap", "ram", "recovery")


def fuzz_host(
    name: str,
    seconds: float,
    seed: int = 0,
    max_programs: int | None = None,
    max_ops: int = 24,
    max_words: int = 64,
    keep_going: bool = False,
    layers: Sequence[str] = LAYERS,
    pool: HostPool | None = None,
    senders: dict[Layout, str] | None = None,
) -> dict[str, Any]:
    """Random decoded programs on host ``name`` against the model of its layout.

    Layers take turns: bitmap programs (fuzz.gen), ram programs (fuzz.gen_ram) and recovery
    programs whose stream is sent by the C of another host (one per word layout, see
    ``sender_hosts``) and reloaded by this host's. Stops after ``seconds`` (or
    ``max_programs``) or at the first divergence, which is minimized and returned as a
    JSON program (``keep_going``: count diverging programs and go on; the first one is
    reported). A driver that dies on an operation the model accepted is a divergence too
    (a crash); the drivers are restarted. ``pool`` may bring other builds of the drivers
    (it is closed at the end), ``senders`` other recovery senders by layout.
    """
    if reason := host_status(name):
        raise HostError(f"host {name}: {reason}")
    layout = HOSTS[name].layout
    rng = random.Random(seed)
    start = time.monotonic()
    per_layer = {layer: {"programs": 0, "ops": 0} for layer in layers}
    summary: dict[str, Any] = {
        "host": name,
        "layout": f"{layout.bits_per_long}-bit {'big' if layout.big_endian else 'little'}-endian",
        "seed": seed,
        "programs": 0,
        "ops": 0,
        "layers": per_layer,
        "diverging_programs": 0,
        "crashes": 0,
        "divergence": None,
    }
    senders = sender_hosts() if senders is None else senders
    summary["senders"] = sorted(set(senders.values()))
    pool = HostPool() if pool is None else pool
    try:
        names = [n for n in sorted(ModelImpl.functions) if pool.impl(name).has(n)]
        while time.monotonic() - start < seconds:
            if max_programs is not None and summary["programs"] >= max_programs:
                break
            layer = layers[summary["programs"] % len(layers)]
            data = rng.randbytes(rng.randrange(8, 400))
            if layer == "bitmap":
                program, next_op = decode_bitmap_program(data, layout, max_ops, max_words, names)
            else:
                program, next_op = decode_ram_program(
                    data, layout, layer=layer, senders=list(senders), max_ops=max_ops
                )
            sender = None
            if layer == "recovery":
                s = program.setup["sender"]
                sender = senders[Layout(int(s["bits_per_long"]), bool(s["big_endian"]))]
            recorder = _Recorder(next_op)
            summary["programs"] += 1
            per_layer[layer]["programs"] += 1
            try:
                session = pool.session(program, name, sender)
                kept, divergence = run_stream(program, recorder, session)
            except DriverError:
                summary["crashes"] += 1
                summary["diverging_programs"] += 1
                pool.close()
                if summary["divergence"] is None:
                    crashed = program.with_ops(_model_kept(program, recorder.seen))
                    summary["divergence"] = _report(crashed, pool, name, sender)
                if not keep_going:
                    break
                continue
            summary["ops"] += len(kept.ops)
            per_layer[layer]["ops"] += len(kept.ops)
            if divergence is not None:
                summary["diverging_programs"] += 1
                if summary["divergence"] is None:
                    summary["divergence"] = _report(kept, pool, name, sender)
                if not keep_going:
                    break
            if summary["programs"] % 50 == 0:
                pool.reset()  # drop the buffers, blocks and maps of finished programs
    finally:
        pool.close()
    summary["seconds"] = round(time.monotonic() - start, 2)
    return summary


def _model_kept(program: Program, ops: list[Op]) -> list[Op]:
    """The operations the model accepts, in order (those a session passed to the driver)."""
    kept: list[Op] = []
    for op in ops:
        if model_run(program.with_ops([*kept, op])).rejected is None:
            kept.append(op)
    return kept


def _report(program: Program, pool: HostPool, name: str, sender: str | None) -> dict[str, Any]:
    """Minimize a diverging (or crashing) program; its description and JSON."""

    def outcome(p: Program) -> str | None:
        try:
            divergence = pool.first_divergence(p, name, sender)
        except DriverError as err:
            pool.close()  # restarted on next use
            return f"crash: {err}"
        return None if divergence is None else str(divergence.describe())

    small = minimize(program, lambda p: outcome(p) is not None)
    description = outcome(small) or "no longer reproduces (flaky?)"
    return {"description": description, "program": small.to_json(), "sender": sender}


# --- the recovery stream between hosts ------------------------------------------------------


@dataclass
class BlockPlan:
    """A block as both sides see it; ``source_used`` differs when the source resized it."""

    idstr: str
    used_length: int
    max_length: int
    source_used: int


@dataclass
class RecoveryPlan:
    """One migration's blocks, the pages the destination received, and a damaged stream."""

    page_bits: int
    blocks: list[BlockPlan]
    sets: list[tuple[str, int, int, int]]  # (kind, block, page, count)
    corrupt: int | None = None  # block whose stream loses its end mark on the way


def random_plan(rng: random.Random) -> RecoveryPlan:
    """Blocks whose page counts straddle 32- and 64-bit words, and received pages in them.

    Pages past used_length (up to max_length) may be received too: their bits sit in the
    last word of the map, so 64-bit hosts send them where 32-bit hosts send padding. One
    block in eight has another size on the source and one plan in six a damaged end mark:
    those streams must be rejected by every host, as the model rejects them.
    """
    bits = rng.choice((12, 12, 12, 10, 13, 14, 16))
    unit = max(4096, 1 << bits)  # lengths are multiples of max(host page, target page)
    per_unit = unit >> bits
    blocks = []
    for k in range(rng.randint(1, 3)):
        pages = rng.choice((1, 2, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, rng.randint(1, 300)))
        units = max(1, -(-pages // per_unit))
        extra = rng.choice((0, 0, 1, rng.randint(1, 40)))
        source = units if rng.randrange(8) else max(1, units + rng.choice((-1, 1, 2)))
        blocks.append(BlockPlan(f"blk{k}.ram", units * unit, (units + extra) * unit, source * unit))
    sets = []
    for _ in range(rng.randint(0, 12)):
        b = rng.randrange(len(blocks))
        npages = blocks[b].max_length >> bits
        page = rng.randrange(npages)
        count = rng.randint(1, npages - page)
        sets.append((rng.choice(("set", "range", "offset", "range")), b, page, count))
    corrupt = rng.randrange(len(blocks)) if rng.randrange(6) == 0 else None
    return RecoveryPlan(bits, blocks, sets, corrupt)


def _map_image(m: Any) -> bytes | None:
    return None if m is None else bytes(m.image())


def _contexts(plan: RecoveryPlan, driver: Driver, side: Side) -> tuple[Any, Any, list[Any]]:
    """A driver context and a model context of the driver's layout, with the plan's blocks."""
    tp = TargetPage.fixed(plan.page_bits)
    ctx = DriverRamContext(driver, tp, side=side, checked=False)
    model = RamContext(tp, side=side, layout=ctx.layout, pointer_bits=ctx.pointer_bits)
    pairs = []
    for b in plan.blocks:
        used = b.used_length if side is Side.DESTINATION else b.source_used
        size = max(b.max_length, used)
        pairs.append(
            (ctx.ram_block_add(b.idstr, used, size), model.ram_block_add(b.idstr, used, size))
        )
    return ctx, model, pairs


def _destination(plan: RecoveryPlan, driver: Driver) -> tuple[list[bytes], list[str]]:
    """Run the plan on the driver's destination and on the model; the streams, mismatches."""
    ctx, model, pairs = _contexts(plan, driver, Side.DESTINATION)
    model.ramblock_recv_map_init()
    ctx.ramblock_recv_map_init()
    size = 1 << plan.page_bits
    problems: list[str] = []
    for kind, k, page, count in plan.sets:
        (crb, mrb) = pairs[k]
        for c, rb in ((model, mrb), (ctx, crb)):
            if kind == "set":
                c.ramblock_recv_bitmap_set(rb, rb.host + page * size)
            elif kind == "offset":
                c.ramblock_recv_bitmap_set_offset(rb, page * size)
            else:
                c.ramblock_recv_bitmap_set_range(rb, rb.host + page * size, count)
    streams = []
    for (crb, mrb), b in zip(pairs, plan.blocks, strict=True):
        if _map_image(crb.receivedmap) != _map_image(mrb.receivedmap):
            problems.append(f"{driver.name}: receivedmap of {b.idstr} differs from the model")
        sent = ctx.ramblock_recv_bitmap_send(b.idstr)
        expected = model.ramblock_recv_bitmap_send(b.idstr)
        if sent != expected:
            problems.append(
                f"{driver.name}: stream of {b.idstr} differs from the model: "
                f"{sent[0].hex()} ret {sent[1]} != {expected[0].hex()} ret {expected[1]}"
            )
        streams.append(sent[0])
    ctx.ram_load_cleanup()
    return streams, problems


def _reload(
    plan: RecoveryPlan, driver: Driver, streams: list[bytes], sender: str, counts: dict[str, int]
) -> list[str]:
    """Reload each block's stream on the driver's source and on the model; mismatches.

    A stream the model accepts must be accepted (0) with the same dirty bitmap; a stream
    the model rejects must be rejected with the same return value.
    """
    ctx, model, pairs = _contexts(plan, driver, Side.SOURCE)
    model.ram_list_init_bitmaps()
    ctx.ram_list_init_bitmaps()
    problems = []
    for k, ((crb, mrb), stream, b) in enumerate(zip(pairs, streams, plan.blocks, strict=True)):
        if k == plan.corrupt:
            stream = stream[:-1] + bytes([stream[-1] ^ 1])
        results: list[tuple[int, str]] = []
        for c, rb in ((model, mrb), (ctx, crb)):
            try:
                results.append((c.ram_dirty_bitmap_reload(rb, stream), ""))
            except RecoveryError as err:
                results.append((err.ret, err.reason))
        where = f"{sender} -> {driver.name}: {b.idstr}"
        if results[0] != results[1]:
            problems.append(f"{where}: reload gave {results[1]}, model {results[0]}")
        elif _map_image(crb.bmap) != _map_image(mrb.bmap):
            problems.append(f"{where}: bmap after reload differs from the model")
        key = "accepted" if results[1][0] == 0 else "rejected"
        counts[key] = counts.get(key, 0) + 1
    ctx.ram_save_cleanup()
    return problems


def check_recovery(
    plan: RecoveryPlan, drivers: dict[str, Driver], counts: dict[str, int]
) -> list[str]:
    """One plan on every driver as destination, each stream reloaded on every driver.

    Returns the mismatches with the model; ``counts`` gains pairs, accepted and rejected
    reloads, and identical_streams (1 if every host sent the same bytes).
    """
    problems: list[str] = []
    sent = {}
    for name, d in drivers.items():
        d.ask("reset")
        sent[name], bad = _destination(plan, d)
        problems += bad
    first = next(iter(sent.values()))
    counts["identical_streams"] = counts.get("identical_streams", 0) + all(
        s == first for s in sent.values()
    )
    for sender, streams in sent.items():
        for d in drivers.values():
            d.ask("reset")
            problems += _reload(plan, d, streams, sender, counts)
            counts["pairs"] = counts.get("pairs", 0) + 1
    return problems


def recovery_matrix(names: Sequence[str], samples: int = 4, seed: int = 0) -> dict[str, Any]:
    """Streams sent by every host's ram layer, reloaded by every host's (all pairs).

    Each destination's maps and streams and each source's reload result and dirty bitmap
    are compared with the model of that host's layout. The summary counts host pairs,
    block reloads accepted and rejected (in agreement with the model), plans whose
    streams were byte-identical on all hosts, and lists every mismatch (empty when all
    hosts agree with the model).
    """
    rng = random.Random(seed)
    start = time.monotonic()
    drivers: dict[str, Driver] = {}
    problems: list[str] = []
    counts = {"pairs": 0, "accepted": 0, "rejected": 0, "identical_streams": 0}
    try:
        for name in names:
            drivers[name] = host_driver(name)
            if not drivers[name].info.get("ram"):
                raise HostError(f"host {name}: driver built without the ram layer")
        for _ in range(samples):
            problems += check_recovery(random_plan(rng), drivers, counts)
    except PreconditionError as err:
        problems.append(f"plan outside QEMU's domain (a bug of the plan): {err}")
    finally:
        for d in drivers.values():
            d.close()
    return {
        "hosts": list(names),
        "samples": samples,
        **counts,
        "problems": problems,
        "seconds": round(time.monotonic() - start, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recvmap.fuzz.hosts [HOST...]``: build, fuzz briefly, cross-check recovery."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m recvmap.fuzz.hosts", description=main.__doc__)
    ap.add_argument("hosts", nargs="*", help="default: every available host")
    ap.add_argument("--seconds", type=float, default=10.0, help="fuzzing time per host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=4, help="recovery plans (all pairs each)")
    args = ap.parse_args(argv)
    names = args.hosts or available_hosts()
    for n in HOSTS:
        if n not in names:
            print(f"# {n}: not run: {host_status(n) or 'not selected'}")
    status = 0
    for n in names:
        s = fuzz_host(n, args.seconds, args.seed)
        print(json.dumps(s))
        status |= s["divergence"] is not None
    m = recovery_matrix(names, args.samples, args.seed)
    print(json.dumps(m))
    return status | bool(m["problems"])


if __name__ == "__main__":
    sys.exit(main())
