# SPDX-License-Identifier: GPL-2.0-or-later
"""A bounded fuzzing campaign: the harnesses as subprocesses over the whole matrix.

This module is the scheduler (``run``); the jobs and their plan are ``jobs``, what an
ended job found ``findings``, the outcome and its summary ``result``.

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

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from recvmap.qemu_ref import LibraryError

from ..program import Program
from ..subjects.impls import Subject
from ..subjects.native import native_libraries
from ..subjects.qemu_tree.command import HostDriver, host_overrides
from ..vectors.files import make_test, replay_command, vector_file, write_vector_file
from . import lifeline
from .findings import Running, finish
from .hosts import fuzz_host
from .jobs import SECONDS, CampaignError, Config, Job, plan
from .result import Result

STARTUP = 1.5  # seconds a harness needs before fuzzing (imports, instrumentation)
WORKDIR_PREFIX = "recvmap-fuzz-"  # a run's temporary folder, in the system's


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
    lifeline.adopt(job.proc.pid)  # its whole group dies with us, however we die


def _stop(job: Job) -> None:
    """End a job we started: SIGTERM to its own process group, then SIGKILL."""
    _stop_all([job])


def _stop_all(jobs: Sequence[Job], grace: float = 1.0) -> None:
    """End every running job within about ``grace`` + a moment: SIGTERM to each process
    group at once, SIGKILL to the groups still there after ``grace`` seconds (a library
    stuck in C ignores SIGTERM's Python handler), and reap them all."""
    live = [j for j in jobs if j.proc is not None and j.returncode is None]
    for j in live:
        if j.proc.poll() is None:  # type: ignore[union-attr]
            j.stopped = True  # what it says on its way out is not a finding
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
            if j.returncode is not None:
                lifeline.release(j.proc.pid)


def run(cfg: Config, out: TextIO = sys.stderr, quiet: bool = False) -> Result:
    """Run the campaign; the caller prints the summary."""
    try:
        subject = Subject(cfg.impl, cfg.word_bits[0] if cfg.impl and cfg.word_bits else None)
        for bits in subject.widths:
            subject.library(bits)
    except LibraryError as err:
        raise CampaignError(str(err)) from None
    if cfg.native:
        cfg.native_libs = native_libraries(subject.widths)
        subject.name = "qemu_ref (clang: ASan, UBSan, libFuzzer edges)"
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    lifeline.sweep(Path(tempfile.gettempdir()), WORKDIR_PREFIX)  # runs killed outright
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    lifeline.claim(workdir)  # removed if we die before the end
    try:
        jobs, notes = plan(cfg, subject, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        lifeline.keep(workdir)
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
    running = Running(cfg, workdir, deadline, hard_deadline, jobs, pending)
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
                    finish(j, result, running)
                elif j.running and (j.elapsed > j.seconds + cfg.timeout + 5 or now > hard_deadline):
                    _stop(j)  # libFuzzer ignored its time limit
                    finish(j, result, running)
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
        lifeline.keep(workdir)
    else:
        shutil.rmtree(workdir / "tmp", ignore_errors=True)  # libFuzzer's, not logs
        lifeline.unclaim(workdir)
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
    if threading.current_thread() is not threading.main_thread():
        return {}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return {s: signal.signal(s, _raise_interrupted) for s in signums}


def _quiet_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)


def _restore_signals(previous: dict[int, Any]) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for s, handler in previous.items():
            signal.signal(s, handler)


def host_job(
    name: str,
    seconds: float,
    seed: int,
    stats: Path,
    out_dir: Path,
    driver: dict[str, Any] | None = None,
) -> int:
    """Run ``campaign.hosts.fuzz_host`` and keep its summary where the campaign reads stats.
    ``driver``: a QEMU tree's driver replacing ours (``HostDriver`` as JSON)."""
    overrides = host_overrides(HostDriver.from_json(driver)) if driver else {}
    s = fuzz_host(name, seconds, seed, **overrides)
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
        if driver is None:  # our C on the host: replay --host runs it there
            stats_obj["replay"] = replay_command(path, host=name)
        else:  # a QEMU tree's driver: its minimization re-ran it in a fresh driver
            stats_obj["confirmed_by"] = "the host job's minimization, on a fresh driver"
        code = 1
    stats.write_text(json.dumps(stats_obj))
    return code


def _main(argv: list[str]) -> int:
    if len(argv) in (6, 7) and argv[0] == "host":
        driver = json.loads(argv[6]) if len(argv) == 7 else None
        return host_job(argv[1], float(argv[2]), int(argv[3]), Path(argv[4]), Path(argv[5]), driver)
    print(
        "usage: python -m recvmap.fuzz.campaign.campaign host NAME SECONDS SEED STATS OUTDIR "
        "[DRIVER-JSON]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
