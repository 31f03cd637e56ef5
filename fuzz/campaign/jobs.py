# SPDX-License-Identifier: GPL-2.0-or-later
"""The jobs of a campaign: what ``recvmap fuzz`` was asked (``Config``), one harness process
per (layer, word width) (``Job``: its argv, its ``HarnessConfig``, what it reports), and the
plan that makes them (``plan``): every job from the first second, or ``--jobs N`` at a time in
rounds, each for its share of the time.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from recvmap.pymodel.words import Layout

from ..subjects.impls import Subject
from ..subjects.native import sanitizer_env
from .harness_env import HarnessConfig
from .launch import engine_of, harness_path
from .workers import fork_flags, read_stats, worker_path

LAYERS = ("bitmap", "ram", "recovery")
SECONDS = "{seconds}"  # in a job's argv: replaced by its time share when it starts
# "#N  NEW  cov: C ft: F" from a process; "#N: cov: C ft: F ..." from a fork-mode supervisor
_COV = re.compile(r"^#(\d+):?\s+(\w+\s+)?cov: (\d+)(?: ft: (\d+))?")
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second")


@dataclass
class Config:
    """What ``recvmap fuzz`` was asked to do."""

    targets: tuple[str, ...] = LAYERS
    arches: tuple[str, ...] | None = None
    word_bits: tuple[int, ...] | None = None
    max_time: float = 60.0
    runs: int | None = None
    seed: int | None = None
    corpus: Path | None = None
    out_dir: Path = Path("fuzz-out")
    impl: Path | None = None
    hosts: tuple[str, ...] = ()
    native: bool = False
    native_libs: dict[int, Path] = field(default_factory=dict)
    jobs: int = 0  # harness processes at once; 0: every job at once, time-sliced by the OS
    engine: str = "auto"  # "atheris", "random" or "auto"
    max_ops: int = HarnessConfig.max_ops
    timeout: float = HarnessConfig.timeout  # seconds one input may take: longer is a HANG
    workers: int = 1  # processes per job sharing its corpus (libFuzzer -fork; workers.py)
    release: str | None = None  # the QEMU release the model follows (None: the newest)
    # host -> a QEMU tree's driver replacing ours there (subjects.qemu_tree.command.HostDriver
    # as JSON), handed to the host job on its command line
    host_drivers: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Job:
    """One harness process."""

    name: str
    layer: str
    bits: int | None  # None: an emulated host job
    seed: int
    seconds: float
    base_env: dict[str, str]  # the process's environment besides the harness contract
    argv: list[str]
    stats_path: Path
    log_path: Path
    host: str | None = None
    config: HarnessConfig | None = None  # the harness's (None: an emulated host job)
    out: IO[bytes] | None = None  # the harness's stdout: the library may print there
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    started: float = 0.0
    ended: float = 0.0
    returncode: int | None = None
    runs: int = 0
    cov: int = 0
    features: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False  # ended by us (--max-time, another job's finding): never a finding
    _offset: int = 0

    @property
    def env(self) -> dict[str, str]:
        """The environment the job's process gets."""
        return self.base_env if self.config is None else self.config.to_env(self.base_env)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.returncode is None

    @property
    def programs(self) -> int:
        return max(self.runs, int(self.stats.get("programs", 0)))

    @property
    def ops(self) -> int:
        return int(self.stats.get("ops", 0))

    @property
    def elapsed(self) -> float:
        if not self.started:
            return 0.0
        return (self.ended or time.monotonic()) - self.started

    def poll(self) -> None:
        """Read new libFuzzer lines and the statistics file; notice the exit."""
        if self.proc is None:
            return
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            chunk = b""
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            m = _COV.match(line)
            if m:
                self.runs = max(self.runs, int(m[1]))
                self.cov = max(self.cov, int(m[3]))
                self.features = max(self.features, int(m[4] or 0))
            m = _DONE.match(line)
            if m:
                self.runs = max(self.runs, int(m[1]))

        self.stats = read_stats(self.stats_path) or self.stats
        if self.returncode is None and self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self.ended = time.monotonic()
            for f in (self.log, self.out):
                if f is not None:
                    f.close()
            self.poll()  # the last lines

    def tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class CampaignError(RuntimeError):
    """The campaign cannot start (bad library, no harness ...): one clear line."""


def plan(cfg: Config, subject: Subject, workdir: Path) -> tuple[list[Job], list[str]]:
    """The jobs to run and the notes on what is skipped and why."""
    notes: list[str] = []
    widths = [b for b in subject.widths if cfg.word_bits is None or b in cfg.word_bits]
    if cfg.word_bits and not widths:
        raise CampaignError(
            f"{subject.name} has {'/'.join(map(str, subject.widths))}-bit words, "
            f"not {'/'.join(map(str, cfg.word_bits))}"
        )
    cells = []
    for layer in cfg.targets:
        for bits in widths:
            layout = Layout(bits, False)
            if layer == "bitmap" and not subject.bitmap_functions(layout):
                notes.append(f"{layer}/{bits}: skipped, the library has no bitmap function")
            elif layer != "bitmap" and not (
                subject.ram_runs(layout, layer)
                if hasattr(subject, "ram_runs")
                else subject.ram(layout) is not None
            ):
                missing = ", ".join(subject.ram_missing(bits)) or "?"
                notes.append(f"{layer}/{bits}: skipped, the library lacks {missing}")
            else:
                cells.append((layer, bits))
    host_cells = [("host", h) for h in cfg.hosts]
    if not cells and not host_cells:
        raise CampaignError("nothing to fuzz: " + ("; ".join(notes) or "no layer selected"))
    units: list[tuple[str, Any]] = list(cells) + host_cells
    while len(units) < cfg.jobs and cells:  # keep both cores busy with a second seed
        units.append(cells[len(units) % len(cells)])
    rounds = -(-len(units) // max(1, cfg.jobs or len(units)))
    seconds = max(1.0, cfg.max_time / rounds)
    base_seed = cfg.seed if cfg.seed is not None else int(time.time()) % 100000
    tmp = workdir / "tmp"  # the harnesses' temporary files: removed with the run's folder
    tmp.mkdir(exist_ok=True)
    jobs = []
    for i, (layer, arg) in enumerate(units):
        name = f"{layer}/{arg}" if layer != "host" else f"host/{arg}"
        if sum(1 for u in units[:i] if u == (layer, arg)):
            name += f"#{sum(1 for u in units[:i] if u == (layer, arg)) + 1}"
        slug = name.replace("/", "-").replace("#", "-")
        stats = workdir / f"{slug}.stats.json"
        log = workdir / f"{slug}.log"
        seed = base_seed + i
        if layer == "host":
            argv = [
                sys.executable,
                "-m",
                "recvmap.fuzz.campaign.campaign",
                "host",
                str(arg),
                SECONDS,
                str(seed),
                str(stats),
                str(cfg.out_dir),
            ]
            if str(arg) in cfg.host_drivers:
                argv.append(json.dumps(cfg.host_drivers[str(arg)]))
            jobs.append(
                Job(
                    name,
                    "host",
                    None,
                    seed,
                    seconds,
                    dict(os.environ),
                    argv,
                    stats,
                    log,
                    host=str(arg),
                )
            )
            continue
        config = job_config(cfg, layer, int(arg), stats)
        argv = harness_argv(cfg, layer, int(arg), seconds, seed, workdir)
        env = {**job_env(cfg), "TMPDIR": str(tmp)}  # libFuzzer's fork-mode folders, too
        jobs.append(Job(name, layer, int(arg), seed, seconds, env, argv, stats, log, None, config))
    return jobs, notes


def job_config(
    cfg: Config, layer: str, bits: int, stats: Path | None, base: HarnessConfig | None = None
) -> HarnessConfig:
    """The harness configuration of a job of ``layer`` on ``bits``-bit words: ``base`` (by
    default this process's environment, so RECVMAP_MAX_WORDS or RECVMAP_HOSTS set by the
    user reach the harness) with what the campaign was asked."""
    hc = HarnessConfig.from_env() if base is None else base
    hc = hc.replace(
        word_bits=bits, stats=stats, out_dir=cfg.out_dir.resolve(), max_ops=cfg.max_ops,
        timeout=cfg.timeout, stats_per_process=hc.stats_per_process or cfg.workers > 1,
    )  # fmt: skip
    if layer == "recovery" and cfg.impl is None:
        # the receiver has ``bits``-bit words; the sender may have either width
        hc = hc.replace(word_bits=None, receiver_bits=bits)
    if cfg.impl is not None:
        hc = hc.replace(impl=cfg.impl.resolve())
    if cfg.arches:
        hc = hc.replace(arches=tuple(cfg.arches))
    if cfg.release:
        hc = hc.replace(release=cfg.release)
    if engine_of(cfg.engine) == "random":
        hc = hc.replace(engine="random")
    if cfg.native:
        hc = hc.replace(native=tuple(sorted(cfg.native_libs.items())))
    return hc


def job_env(cfg: Config) -> dict[str, str]:
    """A harness process's environment besides its configuration: this process's, with
    the sanitizer runtime's in native mode and fork mode's PATH (``workers``)."""
    env = dict(os.environ)
    if cfg.native:
        env.update(sanitizer_env())
    return worker_path(env, cfg.workers)


def harness_argv(
    cfg: Config, layer: str, bits: int, seconds: float, seed: int, workdir: Path
) -> list[str]:
    argv = [sys.executable, str(harness_path(layer))]
    corpus = (cfg.corpus or workdir / "corpus") / f"{layer}-{bits}"
    corpus.mkdir(parents=True, exist_ok=True)
    argv += [str(corpus), str(seed_inputs(workdir / f"seeds-{layer}-{bits}-{seed}", seed))]
    argv += [
        "-len_control=0",
        f"-max_total_time={SECONDS}",
        f"-seed={libfuzzer_seed(seed)}",
        "-max_len=1024",
        f"-timeout={int(cfg.timeout) + 5}",  # the harness's watchdog names the hang first
        "-rss_limit_mb=4096",
        f"-artifact_prefix={workdir}/",
        "-print_final_stats=1",
    ]
    if cfg.runs is not None:
        argv.append(f"-runs={cfg.runs}")

    return argv + fork_flags(cfg.workers)


def libfuzzer_seed(seed: int) -> int:
    """The -seed libFuzzer gets for a job's seed: the same, when it is one libFuzzer keeps
    (1 .. 2**32-1); else folded into that range (libFuzzer cuts a seed to 32 bits and takes
    0 as "pick one at random", so --seed 0 or 2**32 would not reproduce)."""
    return seed if 0 < seed < 2**32 else seed % (2**32 - 1) + 1


def seed_inputs(folder: Path, seed: int, count: int = 16) -> Path:
    """A few random inputs long enough for whole programs: libFuzzer starts from tiny
    inputs, which decode to one or two operations."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"seed-{i:02d}").write_bytes(rng.randbytes(rng.randrange(64, 800)))
    return folder
