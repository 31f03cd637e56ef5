# SPDX-License-Identifier: GPL-2.0-or-later
"""Real other hosts: the C reference and its replay driver cross-built and run under qemu-user.

The model claims the same semantics on every host QEMU runs on. This module builds our C
(qemu_ref/*.c plus the replay driver) with Debian's cross compilers (static, so no target
libraries are needed at run time), caches each build under ``build/hosts/NAME``, and runs
it as ``qemu-ARCH -L /usr/TRIPLET driver`` (binfmt_misc may be absent, and a wrong program
path makes qemu-user exit 1 without a word, so every path is checked first).

- ``available_hosts()`` / ``host_status(name)``: which hosts can run here, and why not.
- ``host_impl(name)``: an ``Implementation`` (``remote.DriverImpl``) on that host.
- ``HostPool`` / ``HostSubject``: running drivers by host (built on first use, by
  ``builder`` when the code is not ours: a QEMU tree's), and a host as a ``Subject``
  (``recvmap replay --host``).

The campaigns on these hosts (``fuzz_host``, ``recovery_matrix``) are in
``recvmap.fuzz.campaign.hosts``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout
from recvmap.qemu_ref.loader import package_file

from ..program import Program
from ..program.ram_setup import ContextFactory
from .impls import bitmap_functions
from .remote import Driver, DriverError, DriverImpl, driver_factory, for_layout

CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread")
HEADERS = ("qemu_ref.h", "qemu_ref_ram.h")  # those present make the ABI
SOURCES = ("bitops.c", "bitmap.c", "ram.c", "alloc.c")
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
    candidates.append(Path(__file__).resolve().parent.parent.parent / "qemu_ref")
    try:
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
    private = [p for p in (src / "alloc.h",) if p.is_file()]  # included by the sources
    key = _fingerprint(h, [*headers, *private, *sources, main_c, gen], flags)
    if exe.is_file() and stamp.is_file() and stamp.read_text() == key:
        return exe
    out_dir.mkdir(parents=True, exist_ok=True)
    # Several jobs (--host all) may want the same driver at once: one builds it under the
    # lock, in files named after its own pid, and renames them into place; the others
    # wait, then find the stamp and reuse the build.
    with open(out_dir / f"{program}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.is_file() and stamp.is_file() and stamp.read_text() == key:
            return exe
        private = out_dir / f".build-{program}-{os.getpid()}-{threading.get_ident()}"
        private.mkdir(exist_ok=True)
        try:
            table = private / "qref_dispatch.h"
            _run([sys.executable, str(gen), str(table), *map(str, headers)], "gen_dispatch.py")
            tmp = private / program
            _run(
                [h.cc, *flags, f"-I{private}", f"-I{src}", str(main_c), *map(str, sources)]
                + ["-o", str(tmp)],
                f"building {program} for {name}",
            )
            table.replace(out_dir / "qref_dispatch.h")
            tmp.replace(exe)
            (private / "key").write_text(key)
            (private / "key").replace(stamp)
        finally:
            shutil.rmtree(private, ignore_errors=True)
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


class HostPool:
    """Running drivers by host name, started on first use, with sessions for programs.

    A bitmap or ram program runs on one host; a recovery program runs its destination
    (``setup.sender``'s layout) on a sender host and its source on the host itself.
    """

    def __init__(
        self,
        executables: dict[str, Path] | None = None,
        builder: Callable[[str], Path] | None = None,
    ) -> None:
        self.executables = dict(executables or {})  # other builds (e.g. sanitized) by host
        self.builder = builder  # builds the driver of a host not in executables (a tree's)
        self.drivers: dict[str, Driver] = {}
        self._impls: dict[str, DriverImpl] = {}

    def driver(self, name: str) -> Driver:
        if name not in self.drivers:
            exe = self.executables.get(name)
            if exe is None and self.builder is not None:
                exe = self.executables[name] = self.builder(name)
            self.drivers[name] = host_driver(name) if exe is None else start_driver(name, exe)
        return self.drivers[name]

    def kill(self) -> None:
        """Kill every running driver now (a watchdog: the caller's exchange then fails)."""
        for d in list(self.drivers.values()):
            if d.proc.poll() is None:
                d.proc.kill()

    def impl(self, name: str) -> DriverImpl:
        if name not in self._impls:
            self._impls[name] = DriverImpl(self.driver(name), f"qemu_ref@{name}", own=False)
        return self._impls[name]

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
    """The C of host ``name`` with the face of ``impls.Subject`` (what engine.open_session
    and vectors.files.check_impl use): bitmap programs of the host's layout run on its driver;
    ram contexts of another layout (a recovery program's sender) on the host of
    ``senders`` (default ``sender_hosts``) that has it.

    ``label`` names the code (default ``qemu_ref``, ours); ``path`` is set when the code is
    not ours (a QEMU tree: compared at every release, where ours is compared at the newest
    only). ``adapt`` retargets a program of the other byte order to the host's; the
    drivers run in their own processes, so a replay needs no fork (``isolated``)."""

    guards = False  # no guard pages to alternate: the C runs in the driver process

    def __init__(
        self,
        name: str,
        pool: HostPool | None = None,
        *,
        senders: dict[Layout, str] | None = None,
        label: str = "qemu_ref",
        path: Path | None = None,
    ) -> None:
        self.host = name
        self.pool = pool or HostPool()
        self.layout = HOSTS[name].layout
        self.name = f"{label}@{name}"
        self.path = path
        self.widths = (self.layout.bits_per_long,)
        self.senders = sender_hosts() if senders is None else dict(senders)
        self.senders[self.layout] = name

    def adapt(self, program: Program) -> Program:
        """``program`` on this host: as it is, or retargeted to the host's byte order when
        only that differs (the same word values; a recovery sender keeps its layout and
        runs on its own host). ValueError naming both layouts when the width differs, and
        naming the layout when the code is a tree's and no host here runs QEMU's code with
        it (32-bit big-endian: the vector is not run in the other byte order either)."""
        out = for_layout(program, self.layout)
        if out is None:
            raise ValueError(
                f"{program.layout.text} words: host {self.host} runs "
                f"{self.layout.text} words (another host of that width runs it)"
            )
        if self.path is not None and program.layout not in self.senders:
            raise ValueError(
                f"{program.layout.text} words: no host here runs {self.name.split('@')[0]} "
                "with them (QEMU's code has its host's own unsigned long; our C emulates "
                "them: recvmap replay --host s390x-w32)"
            )
        return out

    def isolated(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """``fn(*args)`` with a watchdog: a driver that dies is a failing verdict (and is
        restarted on next use), one still busy after ``timeout`` seconds is killed (HANG)."""
        timer = None
        fired: list[bool] = []
        if timeout is not None:

            def expire() -> None:
                fired.append(True)
                self.pool.kill()

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            return fn(*args)
        except (DriverError, HostError) as err:
            self.pool.close()
            if fired:
                return "fail", f"HANG: {self.name} did not finish within {timeout} s"
            return "fail", f"{self.name} crashed on this program: {err}"
        finally:
            if timer is not None:
                timer.cancel()

    def supports(self, layout: Layout) -> bool:
        return layout == self.layout

    def missing(self, bits: int) -> list[str]:
        return []

    def ram_missing(self, bits: int) -> list[str]:
        return []

    def bitmap(self, layout: Layout) -> DriverImpl | None:
        return self.pool.impl(self.host) if layout == self.layout else None

    def bitmap_functions(self, layout: Layout) -> list[str]:
        return bitmap_functions(self.bitmap(layout))

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
