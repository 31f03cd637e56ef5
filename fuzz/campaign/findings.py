# SPDX-License-Identifier: GPL-2.0-or-later
"""What an ended job found: clean, a divergence (its vector file), a crash, a hang or a slow
input. A suspected hang is re-run alone (``alone``) before it is a HANG; a job ended by a
slow input starts again; a crash's or hang's input becomes a minimized reproducer, written
in a forked child within what --max-time leaves.
"""

from __future__ import annotations

import hashlib
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Divergence, first_divergence, isolated, minimize, model_session, run_stream
from ..vectors.files import replay_command, subject_record, write_divergence
from .alone import STARTUP as ALONE_STARTUP
from .alone import confirm_budget, input_argv, rerun_alone
from .harness import HANG_EXIT, Harness
from .jobs import Config, Job, harness_argv, job_config, job_env
from .result import Result

_NOISE = re.compile(r"^(0x|\\|Base64:|stat::|MS: |INFO: |NOTE: |\s+Combine |#\d+\s)")
WRITE_RESERVE = 2.0  # seconds kept for writing a reproducer after a confirmation
MAX_RESTARTS = 3  # a job stopped by this many slow inputs is not started again
RESTART_MIN = 3.0  # seconds of --max-time a restarted job needs to compare anything


@dataclass
class Running:
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


def finish(job: Job, result: Result, running: Running | None = None) -> None:
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


def _suspected_hang(job: Job, result: Result, running: Running | None) -> None:
    """A job whose watchdog saw an input outrun --timeout: re-run the input alone.

    Still running after the re-run's budget (``alone.confirm_budget``, cut to what is left
    of --max-time) is a HANG. An input that completes alone is SLOW, not a finding: it
    is listed with its time and reproducer, and the job starts again with another seed.
    """

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


def _restart(job: Job, result: Result, running: Running) -> None:
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
    job: Job, entry: dict[str, Any], artifact: Path, kind: str, running: Running | None
) -> None:
    """Write the reproducer of a finding into ``entry`` (vector, replay), within the time
    --max-time leaves (at least a second): a forked child does the work and
    is killed when the time is up; what was cut short is said in ``entry``."""
    if job.config is None or job.config.native:
        return

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

    assert job.config is not None  # a harness job
    h = Harness.from_config(job.layer, job.config)
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
        slow = confirm_budget(float(timeout or 5.0))
    return path, replay_command(path, record, slow), cut


def _diverges(program: Any, subject: Any) -> bool:

    return first_divergence(program, subject)[1] is not None
