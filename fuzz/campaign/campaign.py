# SPDX-License-Identifier: GPL-2.0-or-later
"""A bounded fuzzing campaign: the harnesses as subprocesses over the whole matrix.

One job per (layer, word width) runs an atheris harness (``harness_<layer>.py``) as its own
process (atheris.Fuzz never returns: libFuzzer exits the process). By default all jobs run
from the first second, time-sliced by the OS over the cores (``--jobs N`` runs N at a time,
in rounds, each for its share of the time budget). Inside a job the fuzzer's bytes
pick the architecture, its target page bits, the host, its page or hugepage sizes and the
recovery sender's word width, so every job covers the whole table. The campaign reads each
job's libFuzzer output (``cov:`` and run counts) and the statistics file the harness keeps
(operations compared, cells of the matrix visited), shows one live progress line and ends
with a summary table. A divergence stops the campaign: its minimized program is a vector
file in the output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from recvmap.pymodel import arch
from recvmap.pymodel.words import Layout
from recvmap.qemu_ref import LibraryError

from ..program.decode_ram import migrating_targets
from ..subjects.impls import Subject
from ..subjects.native import sanitizer_env
from .harness_env import HarnessConfig
from .launch import engine_of, harness_path
from .workers import worker_path

LAYERS = ("bitmap", "ram", "recovery")
_NOISE = re.compile(r"^(0x|\\|Base64:|stat::|MS: |INFO: |NOTE: |\s+Combine |#\d+\s)")
SECONDS = "{seconds}"  # in a job's argv: replaced by its time share when it starts
STARTUP = 1.5  # seconds a harness needs before fuzzing (imports, instrumentation)
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
        from .workers import read_stats

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
        env = job_env(cfg)
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
        f"-seed={seed}",
        "-max_len=1024",
        f"-timeout={int(cfg.timeout) + 5}",  # the harness's watchdog names the hang first
        "-rss_limit_mb=4096",
        f"-artifact_prefix={workdir}/",
        "-print_final_stats=1",
    ]
    if cfg.runs is not None:
        argv.append(f"-runs={cfg.runs}")
    from .workers import fork_flags

    return argv + fork_flags(cfg.workers)


def seed_inputs(folder: Path, seed: int, count: int = 16) -> Path:
    """A few random inputs long enough for whole programs: libFuzzer starts from tiny
    inputs, which decode to one or two operations."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"seed-{i:02d}").write_bytes(rng.randbytes(rng.randrange(64, 800)))
    return folder


@dataclass
class Result:
    """The campaign's outcome: jobs, divergences, crashes, notes."""

    jobs: list[Job]
    notes: list[str]
    elapsed: float
    seed: int
    impl: str
    divergences: list[dict[str, Any]] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    hangs: list[dict[str, Any]] = field(default_factory=list)
    # inputs that outran --timeout but completed when re-run alone: not findings
    slow: list[dict[str, Any]] = field(default_factory=list)
    skipped_symbols: dict[str, list[str]] = field(default_factory=dict)
    interrupted: int | None = None  # the signal that stopped the campaign
    release: str | None = None  # the QEMU release the model stood for (Config.release)

    @property
    def clean(self) -> bool:
        return not self.divergences and not self.crashes and not self.hangs

    @property
    def did_not_run(self) -> list[str]:
        """Jobs that compared nothing: never "clean" (a cold cache, a broken start ...).
        A job ended by a slow input ran it (and was started again)."""
        slow = {h["job"] for h in self.slow}
        return [j.name for j in self.jobs if j.ops == 0 and j.programs == 0 and j.name not in slow]

    @property
    def status(self) -> str:
        if self.divergences:
            return "divergence"
        if self.crashes:
            return "crash"
        if self.hangs:
            return "hang"
        if self.interrupted is not None:
            return "interrupted"
        return "did not run" if self.did_not_run else "clean"

    def totals(self) -> dict[str, Any]:
        ops = sum(j.ops for j in self.jobs)
        busy = sum(j.elapsed for j in self.jobs)
        return {
            "programs": sum(j.programs for j in self.jobs),
            "ops": ops,
            "ops_per_second": round(ops / self.elapsed) if self.elapsed else 0,
            "ops_per_core_second": round(ops / busy) if busy else 0,
            "coverage": sum(j.cov for j in self.jobs),
        }

    def matrix(self) -> dict[str, list[str]]:
        seen: dict[str, set[str]] = {
            "targets": set(),
            "hosts": set(),
            "page_sizes": set(),
            "widths": set(),
        }
        for j in self.jobs:
            for k, v in j.stats.get("cells", {}).items():
                seen.setdefault(k, set()).update(v)
        return {k: sorted(v) for k, v in seen.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "did_not_run": self.did_not_run,
            "interrupted": None
            if self.interrupted is None
            else signal.Signals(self.interrupted).name,
            "impl": self.impl,
            "seed": self.seed,
            "elapsed": round(self.elapsed, 2),
            "totals": self.totals(),
            "jobs": [job_json(j) for j in self.jobs],
            "matrix": self.matrix(),
            "missing_cells": missing_cells(self.matrix()),
            "divergences": self.divergences,
            "crashes": self.crashes,
            "hangs": self.hangs,
            "slow": self.slow,
            "skipped_symbols": self.skipped_symbols,
            "notes": self.notes,
        }


def job_json(j: Job) -> dict[str, Any]:
    return {
        "name": j.name,
        "layer": j.layer,
        "word_bits": j.bits,
        "host": j.host,
        "seed": j.seed,
        "seconds": round(j.elapsed, 2),
        "programs": j.programs,
        "ops": j.ops,
        "ops_per_second": round(j.ops / j.elapsed) if j.elapsed else 0,
        "coverage": j.cov,
        "features": j.features,
        "returncode": j.returncode,
        "cells": j.stats.get("cells", {}),
    }


def all_cells() -> dict[str, set[str]]:
    """Every (target, page bits), host and page size of the arch table a campaign should hit."""
    targets = {
        f"{t.name}:{b}"
        for t in arch.TARGETS
        if t.name in migrating_targets()
        for b in t.page_bits_choices()
    }
    return {
        "targets": targets,
        "hosts": {h.name for h in arch.HOSTS},
        "page_sizes": {str(p) for h in arch.HOSTS for p in h.page_sizes},
    }


def missing_cells(seen: dict[str, list[str]]) -> dict[str, list[str]]:
    if not seen.get("hosts"):
        return {}
    return {k: sorted(v - set(seen.get(k, []))) for k, v in all_cells().items()}


class Progress:
    """The live line: operations/s, programs, coverage, elapsed."""

    def __init__(self, stream: TextIO, total: float, quiet: bool = False) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total = total
        self.quiet = quiet
        self.last_print = 0.0
        self.last_line = ""
        self.window: list[tuple[float, int]] = []

    def update(self, jobs: Sequence[Job], elapsed: float, final: bool = False) -> None:
        if self.quiet:
            return
        ops = sum(j.ops for j in jobs)
        now = time.monotonic()
        self.window = [(t, o) for t, o in self.window if now - t < 3.0] + [(now, ops)]
        t0, o0 = self.window[0]
        rate = (ops - o0) / (now - t0) if now - t0 > 0.5 else (ops / elapsed if elapsed else 0)
        running = sum(1 for j in jobs if j.running)
        done = sum(1 for j in jobs if j.returncode is not None)
        line = (
            f"[{elapsed:5.1f}s/{self.total:.0f}s] jobs {running} running, {done}/{len(jobs)} done"
            f" | {rate:,.0f} ops/s | programs {sum(j.programs for j in jobs):,}"
            f" | ops {ops:,} | cov {sum(j.cov for j in jobs):,}"
        )
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
            self.stream.flush()
        elif (final or now - self.last_print >= 10.0) and line != self.last_line:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_print = now
            self.last_line = line


def _start(job: Job, seconds: float, stop_at: float | None = None) -> None:
    """Start a job with ``seconds`` of fuzzing (libFuzzer counts whole seconds); the
    campaign stops it at ``stop_at`` (time.monotonic()), so a divergence it finds is
    minimized and written a second before (RECVMAP_DEADLINE, on the wall clock)."""
    job.seconds = seconds
    if stop_at is not None and job.config is not None:
        wall = time.time() + (stop_at - time.monotonic()) - 1.0
        job.config = job.config.replace(deadline=round(wall, 3))
    whole = str(max(1, int(seconds)))
    job.argv = [a.replace(SECONDS, whole) for a in job.argv]
    job.log = open(job.log_path, "wb")  # noqa: SIM115 - closed when the job ends
    # libFuzzer's lines (cov:, Done) come on stderr; whatever the library prints on stdout
    # goes to a file nobody parses, so it cannot pose as the fuzzer's statistics.
    job.out = open(job.log_path.with_suffix(".stdout"), "wb")  # noqa: SIM115
    job.started = time.monotonic()
    job.proc = subprocess.Popen(
        job.argv,
        env=job.env,
        stdout=job.out,
        stderr=job.log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(job: Job) -> None:
    """End a job we started: SIGTERM to its own process group, then SIGKILL."""
    _stop_all([job])


def _stop_all(jobs: Sequence[Job], grace: float = 1.0) -> None:
    """End every running job within about ``grace`` + a moment: SIGTERM to each process
    group at once, SIGKILL to the groups still there after ``grace`` seconds (a library
    stuck in C ignores SIGTERM's Python handler), and reap them all."""
    live = [j for j in jobs if j.proc is not None and j.returncode is None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for j in live:
            try:
                os.killpg(j.proc.pid, sig)  # type: ignore[union-attr]
            except (ProcessLookupError, PermissionError):
                pass
        end = time.monotonic() + grace
        for j in live:
            try:
                j.proc.wait(max(0.01, end - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                pass
        live = [j for j in live if j.proc.poll() is None]  # type: ignore[union-attr]
        if not live:
            break
    for j in jobs:
        if j.proc is not None:
            try:
                os.killpg(j.proc.pid, signal.SIGKILL)  # grandchildren of an exited job
            except (ProcessLookupError, PermissionError):
                pass
            j.poll()


WRITE_RESERVE = 2.0  # seconds kept for writing a reproducer after a confirmation
MAX_RESTARTS = 3  # a job stopped by this many slow inputs is not started again
RESTART_MIN = 3.0  # seconds of --max-time a restarted job needs to compare anything


@dataclass
class _Running:
    """What classifying an ended job needs of the running campaign: its time limits (a
    finding is confirmed, minimized and written by ``finish_by``) and its job lists (a job
    ended by a slow input starts again)."""

    cfg: Config
    workdir: Path
    deadline: float  # --max-time
    finish_by: float  # --max-time + --timeout + 2: the campaign's hard end
    jobs: list[Job]
    pending: list[Job]
    restarts: dict[str, int] = field(default_factory=dict)
    slow_inputs: set[str] = field(default_factory=set)  # sha256 of inputs found SLOW


def _finish(job: Job, result: Result, running: _Running | None = None) -> None:
    """Classify an ended job: clean, divergence (a vector file), crash, hang or slow."""
    if job.returncode in (0, None):
        return
    vector = job.stats.get("divergence")
    if vector:
        result.divergences.append(
            {
                "job": job.name,
                "vector": vector,
                "description": job.stats.get("description", ""),
                "replay": job.stats.get("replay") or f"recvmap replay {vector}",
            }
        )
        return
    if job.stats.get("hang"):
        _suspected_hang(job, result, running)
        return
    if job.returncode == -signal.SIGTERM or job.returncode == -signal.SIGKILL:
        return  # stopped by us after another job's divergence
    artifacts = re.findall(r"Test unit written to (\S+)", job.tail(60))
    crash = {
        "job": job.name,
        "returncode": job.returncode,
        "artifact": artifacts[-1] if artifacts else None,
        "log": str(job.log_path),
        "tail": "\n".join(line for line in job.tail(40).splitlines() if not _NOISE.match(line)),
        "vector": None,
    }
    if artifacts:
        _reproducer(job, crash, Path(artifacts[-1]), "crash", running)
        if crash.get("error"):
            crash["tail"] += f"\n({crash.pop('error')})"
    result.crashes.append(crash)


def _suspected_hang(job: Job, result: Result, running: _Running | None) -> None:
    """A job whose watchdog saw an input outrun --timeout: re-run the input alone.

    Still running after the re-run's budget (``alone.confirm_budget``, cut to what is left
    of --max-time) is a HANG. An input that completes alone is SLOW, not a finding: it
    is listed with its time and reproducer, and the job starts again with another seed.
    """
    from .alone import STARTUP as ALONE_STARTUP
    from .alone import confirm_budget, input_argv, rerun_alone
    from .harness import HANG_EXIT

    timeout = float(job.stats.get("timeout") or (running.cfg.timeout if running else 5.0))
    full = confirm_budget(timeout)
    budget = full
    if running is not None:  # everything ends by finish_by, the reproducer written too
        room = running.finish_by - time.monotonic() - WRITE_RESERVE - ALONE_STARTUP
        budget = min(full, room)
    entry: dict[str, Any] = {
        "job": job.name,
        "input": job.stats["hang"],
        "timeout": timeout,
        "log": str(job.log_path),
        "vector": None,
        "replay": None,
        "alone_budget": round(max(0.0, budget), 2),
    }
    if budget < timeout:  # not even --timeout is left: the suspicion is all there is
        entry["confirmed"] = False
        entry["alone"] = (
            f"not re-run: --max-time left {max(0.0, budget):.1f} s for it, less than --timeout"
        )
        _reproducer(job, entry, Path(entry["input"]), "hang", running)
        result.hangs.append(entry)
        return
    assert job.config is not None  # only a harness job suspects a hang
    env = job.config.replace(timeout=budget).to_env(job.base_env)
    try:
        rerun = rerun_alone(input_argv(job.layer, job.stats["hang"]), budget + ALONE_STARTUP, env)
    except BaseException:  # a signal stops the campaign: say what was being checked
        result.notes.append(
            f"{job.name}: an input outran --timeout {timeout:g} s; stopped while re-running "
            f"it alone, not confirmed: {entry['input']}"
        )
        raise
    if rerun.finished and rerun.returncode == 0:
        took = rerun.input_seconds
        entry["seconds"] = None if took is None else round(took, 3)
        kept = Path(entry["input"])
        if kept.name.startswith("hang-"):  # the harness named it before it was confirmed
            renamed = kept.with_name("slow-" + kept.name[len("hang-") :])
            try:
                kept.replace(renamed)
                entry["input"] = str(renamed)
            except OSError:
                pass
        _reproducer(job, entry, Path(entry["input"]), "slow", running)
        result.slow.append(entry)
        if running is not None:
            try:
                running.slow_inputs.add(
                    hashlib.sha256(Path(entry["input"]).read_bytes()).hexdigest()
                )
            except OSError:
                pass
            _restart(job, result, running)
        return
    if not rerun.finished and not rerun.started:
        entry["confirmed"] = False
        entry["alone"] = f"the re-run did not reach the input within {ALONE_STARTUP:g} s"
    elif not rerun.finished or rerun.returncode == HANG_EXIT:
        ran = rerun.input_ran or 0.0  # the input's own time: a slow start is not counted
        entry["confirmed"] = budget >= full and ran >= full - 0.5
        entry["alone"] = f"still running after {ran:.1f} s alone"
        if ran < timeout:  # its start took the time: alone, it did not outrun --timeout
            entry["alone"] += f", stopped before --timeout {timeout:g} s: not confirmed"
        elif budget < full:
            entry["alone"] += (
                f" (the full check, {full:g} s, was cut short by --max-time: a HANG at "
                f"--timeout {timeout:g} s, not confirmed at {full:g} s)"
            )
    else:
        lines = [x for x in rerun.stderr.splitlines() if x.strip()]
        entry["confirmed"] = False
        entry["alone"] = f"alone it ended with exit status {rerun.returncode}" + (
            f": {lines[-1].strip()[:200]}" if lines else ""
        )
    _reproducer(job, entry, Path(entry["input"]), "hang", running)
    result.hangs.append(entry)


def _restart(job: Job, result: Result, running: _Running) -> None:
    """Start ``job``'s harness again after a slow input ended it, with another seed."""
    base = job.name.split("+", 1)[0]
    n = running.restarts.get(base, 0) + 1
    left = running.deadline - time.monotonic()
    if job.bits is None or job.layer == "host":
        return
    if n > MAX_RESTARTS:
        result.notes.append(f"{base}: not started again after {MAX_RESTARTS} slow inputs")
        return
    if left < RESTART_MIN:
        result.notes.append(f"{job.name}: ended by a slow input with no time left to restart")
        return
    running.restarts[base] = n
    name = f"{base}+{n}"
    slug = name.replace("/", "-").replace("#", "-").replace("+", "-r")
    seed = job.seed + 1000 * n
    stats = running.workdir / f"{slug}.stats.json"
    log = running.workdir / f"{slug}.log"
    config = job_config(running.cfg, job.layer, job.bits, stats)
    config = config.replace(skip=tuple(sorted(running.slow_inputs)))  # its corpus may hold them
    argv = harness_argv(running.cfg, job.layer, job.bits, left, seed, running.workdir)
    env = job_env(running.cfg)
    new = Job(name, job.layer, job.bits, seed, left, env, argv, stats, log, None, config)
    running.jobs.append(new)
    running.pending.insert(0, new)
    result.notes.append(f"{job.name} ended by a slow input: started again as {name}, seed {seed}")


def _reproducer(
    job: Job, entry: dict[str, Any], artifact: Path, kind: str, running: _Running | None
) -> None:
    """Write the reproducer of a finding into ``entry`` (vector, replay), within the time
    --max-time leaves (at least a second): a forked child does the work and
    is killed when the time is up; what was cut short is said in ``entry``."""
    if job.config is None or job.config.native:
        return
    from ..engine import isolated

    left = None
    if running is not None:
        left = max(1.0, running.finish_by - time.monotonic())
    deadline = None if left is None else time.monotonic() + left
    try:
        out = isolated(_reproducer_child, job, artifact, kind, deadline, timeout=left)
    except Exception as err:  # noqa: BLE001 - the finding itself is still reported
        out = ("fail", f"{type(err).__name__}: {err}")
    if isinstance(out, dict):
        entry["vector"], entry["replay"] = out["vector"], out["replay"]
        if out["cut"]:
            entry["cut_short"] = out["cut"]
        return
    message = str(out[1]) if isinstance(out, tuple) and len(out) > 1 else str(out)
    if message.startswith("HANG") and left is not None:
        message = f"writing it was cut short by --max-time after {left:.1f} s"
    entry["error"] = f"no reproducer: {message}; the input is kept: {artifact}"


def _reproducer_child(
    job: Job, artifact: Path, kind: str, deadline: float | None
) -> dict[str, Any]:
    path, replay, cut = crash_reproducer(job, artifact, kind, deadline)
    return {"vector": str(path), "replay": replay, "cut": cut}


def crash_reproducer(
    job: Job, artifact: Path, kind: str = "crash", deadline: float | None = None
) -> tuple[Path, str, list[str]]:
    """The program of an input that crashed a harness, minimized, as a vector file.

    The input is decoded as the harness did, its in-domain operations chosen by the model
    alone; the minimization replays candidates in forked children, so crashing is safe.
    A hang or slow input (``kind``) is not minimized: each candidate would cost the timeout.
    Past ``deadline`` (time.monotonic()) the minimization stops with the smallest program
    so far and the vector's release range is not widened further. Returns the vector file,
    the command that replays it and what was cut short.
    """
    from ..engine import Divergence, isolated, minimize, model_session, run_stream
    from ..vectors.files import replay_command, subject_record, write_divergence
    from . import harness as hmod

    assert job.config is not None  # a harness job
    h = hmod.Harness.from_config(job.layer, job.config)
    program, next_op, _ = h.decode(artifact.read_bytes())  # the guard page side too
    kept, _ = run_stream(program, next_op, model_session(program))
    cut: list[str] = []

    def left() -> float:
        return 30.0 if deadline is None else min(30.0, deadline - time.monotonic() - 1.0)

    def fails(p: Any) -> bool:
        if left() <= 0:
            if "minimization" not in cut:
                cut.append("minimization")
            return False
        return bool(isolated(_diverges, p, h.subject, timeout=left()))

    timeout = job.stats.get("timeout")
    if kind == "hang":
        small = kept
        outcome: Any = f"HANG: no result within {timeout} s"
        comment = f"{h.subject.name} hung: no result within {timeout} s (--timeout)"
    elif kind == "slow":
        small = kept
        outcome = f"SLOW: more than {timeout} s, completes alone"
        comment = f"{h.subject.name} was slow: more than {timeout} s (--timeout), completes alone"
    else:
        small = minimize(kept, fails) if fails(kept) else kept
        outcome = isolated(_diverges, small, h.subject, timeout=max(1.0, left()))
        comment = None
    last = small.ops[-1] if small.ops else None
    divergence = Divergence(len(small.ops) - 1, last, "crash", None, outcome)  # type: ignore[arg-type]
    record = subject_record(h.subject)
    path = write_divergence(
        small,
        divergence,
        h.subject.name,
        job.config.out_dir,
        kind,
        record,
        comment=comment,
        deadline=None if deadline is None else deadline - 0.5,
        cut=cut,
    )
    slow = None
    if kind == "slow":  # replay's default --timeout would call it a HANG
        from .alone import confirm_budget

        slow = confirm_budget(float(timeout or 5.0))
    return path, replay_command(path, record, slow), cut


def _diverges(program: Any, subject: Any) -> bool:
    from ..engine import first_divergence

    return first_divergence(program, subject)[1] is not None


def run(cfg: Config, out: TextIO = sys.stderr, quiet: bool = False) -> Result:
    """Run the campaign; the caller prints the summary."""
    try:
        subject = Subject(cfg.impl, cfg.word_bits[0] if cfg.impl and cfg.word_bits else None)
        for bits in subject.widths:
            subject.library(bits)
    except LibraryError as err:
        raise CampaignError(str(err)) from None
    if cfg.native:
        from ..subjects.native import native_libraries

        cfg.native_libs = native_libraries(subject.widths)
        subject.name = "qemu_ref (clang: ASan, UBSan, libFuzzer edges)"
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="recvmap-fuzz-"))
    try:
        jobs, notes = plan(cfg, subject, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    skipped = {str(b): subject.missing(b) for b in subject.widths if subject.missing(b)}
    result = Result(
        jobs,
        notes,
        0.0,
        jobs[0].seed if jobs else 0,
        subject.name,
        skipped_symbols=skipped,
        release=cfg.release,
    )
    progress = Progress(out, cfg.max_time, quiet)
    start = time.monotonic()
    deadline = start + cfg.max_time
    # A job past the deadline is stopped once its current input had time to be a HANG.
    hard_deadline = deadline + cfg.timeout + 2.0
    pending = list(jobs)
    running = _Running(cfg, workdir, deadline, hard_deadline, jobs, pending)
    # Fair scheduling: by default every (layer, word width) job starts at once and the OS
    # shares the cores among them, so a bug only one layer reaches is found as early as
    # one in the first layer (in rounds, the last layer started at half time).
    limit = cfg.jobs or len(jobs)
    previous = _on_signals(signal.SIGTERM, signal.SIGHUP)
    try:
        while pending or any(j.running for j in jobs):
            while pending and sum(1 for j in jobs if j.running) < limit:
                rounds = -(-len(pending) // limit)  # this job's round and those after it
                share = (deadline - time.monotonic()) / rounds - STARTUP
                seconds = max(1.0, share)
                stop_at = min(time.monotonic() + seconds + cfg.timeout + 5, hard_deadline)
                _start(pending.pop(0), seconds, stop_at)
            time.sleep(0.25)
            now = time.monotonic()
            for j in jobs:
                was_running = j.running
                j.poll()
                if was_running and not j.running:
                    _finish(j, result, running)
                elif j.running and (j.elapsed > j.seconds + cfg.timeout + 5 or now > hard_deadline):
                    _stop(j)  # libFuzzer ignored its time limit
                    _finish(j, result, running)
            if now > hard_deadline and pending:
                notes.append(f"--max-time reached: {len(pending)} job(s) not started")
                pending.clear()
            progress.update(jobs, now - start)
            if not result.clean:
                pending.clear()
                _stop_all(jobs)
    except (KeyboardInterrupt, Interrupted) as stop:
        _quiet_signals()  # a second Ctrl-C must not cut the cleanup short
        result.interrupted = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        pending.clear()
        _stop_all(jobs)
        notes.append(
            f"interrupted by {signal.Signals(result.interrupted).name} after "
            f"{time.monotonic() - start:.1f} s: the summary so far"
        )
    finally:
        _quiet_signals()
        _stop_all(jobs)
        _restore_signals(previous)
    result.elapsed = time.monotonic() - start
    progress.update(jobs, result.elapsed, final=True)
    if result.clean:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        notes.append(f"logs kept in {workdir}")
    return result


class Interrupted(BaseException):
    """A signal asked the campaign to stop (SIGTERM from a CI timeout, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _on_signals(*signums: int) -> dict[int, Any]:
    """Turn ``signums`` into Interrupted in the main thread; the previous handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return {s: signal.signal(s, _raise_interrupted) for s in signums}


def _quiet_signals() -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)


def _restore_signals(previous: dict[int, Any]) -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- the summary ------------------------------------------------------------------------


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cells(j: Job) -> str:
    c = j.stats.get("cells", {})
    if j.proc is None:
        return "-"
    if j.layer == "bitmap":
        return "word arrays of 1..64 words"
    if j.layer == "host":
        return str(j.stats.get("layout", ""))
    pairs = f", senders {' '.join(c['pairs'])}" if c.get("pairs") else ""
    return (
        f"{len(c.get('targets', []))} target/page bits, {len(c.get('hosts', []))} hosts, "
        f"{len(c.get('page_sizes', []))} page sizes{pairs}"
    )


def summary(result: Result) -> str:
    rows = [["job", "words", "seconds", "programs", "ops", "ops/s", "cov", "matrix", "result"]]
    for j in result.jobs:
        status = "not run" if j.proc is None else "clean"
        if any(d["job"] == j.name for d in result.divergences):
            status = "DIVERGENCE"
        elif any(c["job"] == j.name for c in result.crashes):
            status = "CRASH"
        elif any(h["job"] == j.name for h in result.hangs):
            status = "HANG"
        elif any(h["job"] == j.name for h in result.slow):
            status = "slow input"
        elif j.name in result.did_not_run:
            status = "did not run"
        elif j.returncode not in (0, None) and status == "clean":
            status = "stopped"
        words = "/".join(j.stats.get("cells", {}).get("widths", [])) or (str(j.bits or "-"))
        rows.append(
            [
                j.name,
                words,
                f"{j.elapsed:.1f}",
                f"{j.programs:,}",
                f"{j.ops:,}",
                f"{j.ops / j.elapsed:,.0f}" if j.elapsed else "0",
                f"{j.cov:,}",
                _cells(j),
                status,
            ]
        )
    t = result.totals()
    rows.append(
        [
            "total",
            "",
            f"{result.elapsed:.1f}",
            f"{t['programs']:,}",
            f"{t['ops']:,}",
            f"{t['ops_per_second']:,}",
            f"{t['coverage']:,}",
            "",
            {"clean": "clean", "did not run": "DID NOT RUN"}.get(result.status, "FAILED")
            if result.interrupted is None or not result.clean
            else "INTERRUPTED",
        ]
    )
    lines = [
        f"recvmap fuzz: {result.impl} against the model, seed {result.seed}",
        "",
        _table(rows, {2, 3, 4, 5, 6}),
    ]
    m = result.matrix()
    if m.get("hosts"):
        miss = missing_cells(m)
        lines.append("")
        lines.append(
            f"matrix: {len(m['targets'])} (target, page bits) of {len(all_cells()['targets'])}, "
            f"{len(m['hosts'])} hosts of {len(arch.HOSTS)}, {len(m['page_sizes'])} page sizes "
            f"of {len(all_cells()['page_sizes'])}, word widths {'/'.join(m['widths'])}"
        )
        for k, v in miss.items():
            if v:
                lines.append(f"  not reached: {k}: {', '.join(v)}")
    if m.get("emulated"):
        lines.append(f"emulated hosts (qemu-user, fuzz.campaign.hosts): {', '.join(m['emulated'])}")
    for bits, names in sorted(result.skipped_symbols.items()):
        lines.append(f"skipped ({bits}-bit library lacks them): {', '.join(names)}")
    lines += [f"note: {n}" for n in result.notes]
    for d in result.divergences:
        lines += [
            "",
            f"DIVERGENCE in {d['job']}: {d['description']}",
            f"minimized reproducer: {d['vector']}",
            f"replay it: {d.get('replay') or 'recvmap replay ' + d['vector']}",
        ]
    for h in result.hangs:
        lines += [
            "",
            f"HANG in {h['job']}: an input ran longer than {h['timeout']} s (--timeout)"
            + (f"; re-run alone: {h['alone']}" if h.get("alone") else ""),
            f"input: {h['input']}",
        ]
        lines += _reproducer_lines(h, "hang")
    for h in result.slow:
        took = "?" if h.get("seconds") is None else f"{h['seconds']:.1f}"
        lines += [
            "",
            f"SLOW in {h['job']}: an input outran --timeout {h['timeout']:g} s; alone it "
            f"completes in {took} s; not a finding",
            f"input: {h['input']}",
        ]
        lines += _reproducer_lines(h, "slow input")
    if result.did_not_run and result.clean:
        lines += ["", f"did not run: {', '.join(result.did_not_run)} compared no program"]
    for c in result.crashes:
        lines += ["", f"CRASH in {c['job']} (exit status {c['returncode']}); log {c['log']}"]
        if c.get("artifact"):
            lines.append(f"input: {c['artifact']}")
        if c.get("vector"):
            lines += [
                f"minimized reproducer: {c['vector']}",
                f"replay it: {c.get('replay') or 'recvmap replay ' + c['vector']}",
            ]
        lines += ["  " + x for x in c["tail"].splitlines()]
    return "\n".join(lines)


def _reproducer_lines(h: dict[str, Any], what: str) -> list[str]:
    lines = []
    if h.get("vector"):
        lines += [f"{what} reproducer: {h['vector']}", f"replay it: {h['replay']}"]
    elif h.get("error"):
        lines.append(h["error"])
    if h.get("cut_short"):
        lines.append(f"cut short by --max-time: {', '.join(h['cut_short'])}")
    return lines


# --- an emulated host as a job (campaign.hosts) -----------------------------------------


def host_job(name: str, seconds: float, seed: int, stats: Path, out_dir: Path) -> int:
    """Run ``campaign.hosts.fuzz_host`` and keep its summary where the campaign reads stats."""
    from ..program import Program
    from ..subjects.qemu_tree.command import host_overrides
    from ..vectors.files import make_test, vector_file, write_vector_file
    from .hosts import fuzz_host

    s = fuzz_host(name, seconds, seed, **host_overrides(name))  # a QEMU tree's driver, if any
    stats_obj: dict[str, Any] = {
        "layer": "host",
        "programs": s.get("programs", 0),
        "ops": s.get("ops", 0),
        "layout": s.get("layout", ""),
        "cells": {"emulated": [name]},
    }
    code = 0
    div = s.get("divergence")
    if div:
        program = Program.from_json(div["program"])
        test = make_test(program, f"host {name} diverged: {div['description']}", ["Divergence"])
        path = write_vector_file(
            out_dir / f"divergence-host-{name}-{seed}.json", vector_file([test])
        )
        stats_obj.update(divergence=str(path), description=div["description"])
        code = 1
    stats.write_text(json.dumps(stats_obj))
    return code


def _main(argv: list[str]) -> int:
    if len(argv) == 6 and argv[0] == "host":
        return host_job(argv[1], float(argv[2]), int(argv[3]), Path(argv[4]), Path(argv[5]))
    print(
        "usage: python -m recvmap.fuzz.campaign.campaign host NAME SECONDS SEED STATS OUTDIR",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
