# SPDX-License-Identifier: GPL-2.0-or-later
"""What an ended job found: clean, a divergence (its vector file), a crash, a hang or a slow
input. A suspected hang is re-run alone (``alone``) before it is a HANG; a job ended by a
slow input starts again; a crash's or hang's input becomes a minimized reproducer, written
in a forked child within what --max-time leaves.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Divergence, first_divergence, isolated, minimize, model_session, run_stream
from ..engine.isolate import confirm_budget
from ..vectors.files import replay_command, subject_record, write_divergence
from .alone import STARTUP as ALONE_STARTUP
from .alone import input_argv, rerun_alone
from .exit_codes import FINDING
from .harness import Harness
from .jobs import Config, Job, harness_argv, job_config, job_env
from .record import record_path, running_input
from .result import Result

_NOISE = re.compile(r"^(0x|\\|Base64:|stat::|MS: |INFO: |NOTE: |\s+Combine |#\d+\s)")
WRITE_RESERVE = 2.0  # seconds kept for writing a reproducer after a confirmation
MAX_RESTARTS = 3  # a job stopped by this many slow inputs is not started again
RESTART_MIN = 3.0  # seconds of --max-time a restarted job needs to compare anything
# seconds a crash's or a divergence's re-run alone gets even past --max-time (it takes one
# or two: a fresh process, one input or one program)
CONFIRM_LEAST = 20.0


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
    """Classify an ended job: clean, divergence (a vector file), crash, hang or slow.

    Every finding is confirmed by a re-run alone before it is one (``result``'s
    divergences, crashes and hangs); what a re-run does not confirm is listed as
    ``unconfirmed``, never a finding. A job we stopped (at --max-time, or after another
    job's finding) is never a finding by its stop: libFuzzer ends such a job with "run
    interrupted" (exit status 72), not the library. A harness that ended badly without an
    input to blame is recvmap's failure (``errors``), never the library's crash.
    """
    if job.returncode is None:
        return
    if job.stats.get("divergence"):
        _divergence(job, result, running)
        return
    if job.stopped:
        return  # stopped by us: its input, if any, is no finding
    if job.stats.get("hang"):
        _suspected_hang(job, result, running)
        return
    running_input = _running_input(job)
    if job.returncode == 0 and running_input is None:
        return
    artifacts = re.findall(r"Test unit written to (\S+)", job.tail(60))
    tail = "\n".join(line for line in job.tail(40).splitlines() if not _NOISE.match(line))
    crash: dict[str, Any] = {
        "job": job.name,
        "returncode": job.returncode,
        "artifact": artifacts[-1] if artifacts else None,
        "log": str(job.log_path),
        "tail": tail,
        "vector": None,
    }
    if crash["artifact"] is None and running_input is not None and running is not None:
        kept = running.workdir / f"crash-{hashlib.sha1(running_input).hexdigest()}"
        kept.write_bytes(running_input)  # the input the process ended in, as libFuzzer would
        crash["artifact"] = str(kept)
    if crash["artifact"] is None or job.config is None:
        result.errors.append(
            {**crash, "error": f"{job.name}: the harness ended (exit status {job.returncode}) "
             "with no input to blame"}
        )  # fmt: skip
        return
    kind, how = _crash_alone(job, Path(crash["artifact"]), running)
    crash["alone"] = how
    if kind == "failed":
        result.errors.append({**crash, "error": f"{job.name}: recvmap failed on an input: {how}"})
        return
    if kind not in ("crashed", "diverged", "hung"):
        crash["confirmed"] = False
        result.unconfirmed.append({"kind": "crash", **crash})
        return
    crash["confirmed"] = True
    _reproducer(job, crash, Path(crash["artifact"]), "crash", running)
    if crash.get("error"):
        crash["tail"] += f"\n({crash.pop('error')})"
    result.crashes.append(crash)


def _running_input(job: Job) -> bytes | None:
    """The input the job's process was running when it ended (``record``), if any."""
    if job.config is None or job.config.stats is None:
        return None
    return running_input(record_path(job.config.stats))


def _budget(running: Running | None, least: float) -> float:
    """Seconds for a confirmation: what --max-time leaves, never less than ``least``."""
    if running is None:
        return least
    return max(least, running.finish_by - time.monotonic() - WRITE_RESERVE - ALONE_STARTUP)


def _crash_alone(job: Job, artifact: Path, running: Running | None) -> tuple[str, str]:
    """Re-run the input a job crashed on alone: how it ended (``alone.Rerun.ending``)."""
    assert job.config is not None
    timeout = float(job.config.timeout or 5.0)
    budget = _budget(running, CONFIRM_LEAST)
    env = job.config.replace(timeout=timeout).to_env(job.base_env)
    rerun = rerun_alone(input_argv(job.layer, artifact), budget + ALONE_STARTUP, env)
    kind, how = rerun.ending()
    if kind in ("running", "not started"):
        how = f"the re-run alone was still {'running' if kind == 'running' else 'starting'} "
        how += f"after {budget:.0f} s"
    elif kind == "completed":
        how = f"alone it {how}: the crash did not come back"
    else:
        how = f"alone: {how}"
    return kind, how


def _divergence(job: Job, result: Result, running: Running | None) -> None:
    """A job's divergence: confirmed by running the printed replay command in a fresh
    process (it must fail), which checks the reproducer too."""
    vector = job.stats["divergence"]
    entry = {
        "job": job.name,
        "vector": vector,
        "description": job.stats.get("description", ""),
        "replay": job.stats.get("replay") or replay_command(vector),
    }
    if job.stats.get("confirmed_by"):  # a QEMU tree's host driver: no replay command for it
        ok, how = True, str(job.stats["confirmed_by"])
    else:
        ok, how = confirm_replay(entry["replay"], _budget(running, CONFIRM_LEAST))
    entry["alone"] = how
    if ok:
        result.divergences.append(entry)
    else:
        result.unconfirmed.append({"kind": "divergence", **entry})


def confirm_replay(command: str, budget: float) -> tuple[bool, str]:
    """Run a reproducer's replay ``command`` as printed, alone, in a fresh process: (it
    fails, as a finding must; what it said)."""
    words = shlex.split(command)
    argv = [sys.executable, "-m", "recvmap.fuzz.cli", *words[1:]]  # words[0]: recvmap
    rerun = rerun_alone(argv, budget)
    fails = [x for x in rerun.stdout.splitlines() if x.startswith("FAIL ")]
    if not rerun.finished:
        return False, f"its replay alone did not end within {budget:.0f} s"
    if rerun.returncode == FINDING and fails:
        return True, f"its replay alone fails: {fails[0][:300]}"
    last = (rerun.stdout.strip().splitlines() or rerun.stderr.strip().splitlines() or ["-"])[-1]
    return False, f"its replay alone exits {rerun.returncode}: {last[:300]}"


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
    budget = max(budget, timeout + 0.5)  # a HANG is confirmed at --timeout at least
    entry["alone_budget"] = round(budget, 2)
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
    kind, how = rerun.ending()
    if kind == "completed":
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
    finding = False
    if kind == "not started":
        entry["confirmed"] = False
        entry["alone"] = f"the re-run did not reach the input within {ALONE_STARTUP:g} s"
    elif kind in ("running", "hung"):
        ran = rerun.input_ran or 0.0  # the input's own time: a slow start is not counted
        finding = ran >= timeout
        entry["confirmed"] = budget >= full and ran >= full - 0.5
        entry["alone"] = f"still running after {ran:.1f} s alone"
        if not finding:  # its start took the time: alone, it did not outrun --timeout
            entry["alone"] += f", stopped before --timeout {timeout:g} s: not confirmed"
        elif budget < full:
            entry["alone"] += (
                f" (the full check, {full:g} s, was cut short by --max-time: a HANG at "
                f"--timeout {timeout:g} s, not confirmed at {full:g} s)"
            )
    elif kind == "failed":
        result.errors.append(
            {**entry, "error": f"{job.name}: recvmap failed on an input alone: {how}"}
        )
        return
    else:  # alone it crashed or diverged: a finding, though not a hang
        entry["confirmed"] = False
        entry["alone"] = f"alone: {how}"
        finding = True
    _reproducer(job, entry, Path(entry["input"]), "hang", running)
    if finding:
        result.hangs.append(entry)
    else:
        result.unconfirmed.append({"kind": "hang", **entry})


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
    """``input_reproducer`` of a campaign job's input (its harness, its --timeout)."""
    assert job.config is not None  # a harness job
    h = Harness.from_config(job.layer, job.config)
    timeout = job.stats.get("timeout") or job.config.timeout
    return input_reproducer(h, artifact.read_bytes(), kind, timeout, deadline)


def input_reproducer(
    h: Harness,
    data: bytes,
    kind: str = "crash",
    timeout: float | None = None,
    deadline: float | None = None,
) -> tuple[Path, str, list[str]]:
    """The program of an input that crashed (or hung) harness ``h``, minimized, as a
    vector file in the harness's output folder.

    The input is decoded as the harness did (its guard page side too, on record in the
    program), its in-domain operations chosen by the model alone; candidates run in forked
    children, so crashing is safe. A crash is minimized to the programs that fail the same
    way (a signal, an end of the process, a process started ...), then cut after the first
    operation that fails: that one is blamed. A hang or slow input (``kind``) is not
    minimized: each candidate would cost the timeout. Past ``deadline``
    (time.monotonic()) the minimization stops with the smallest program so far and the
    release range is not widened further. Returns the vector file, the command that
    replays it and what was cut short. A program that does not fail when run again is
    written as it is, and says so.
    """
    program, next_op, _ = h.decode(data)  # the guard page side too
    kept, _ = run_stream(program, next_op, model_session(program))
    cut: list[str] = []

    def left() -> float:
        return 30.0 if deadline is None else min(30.0, deadline - time.monotonic() - 1.0)

    def outcome(p: Any) -> Any:
        return isolated(_diverges, p, h.subject, timeout=max(1.0, left()))

    if kind == "hang":
        small = kept
        result: Any = f"HANG: no result within {timeout} s"
        comment = f"{h.subject.name} hung: no result within {timeout} s (--timeout)"
    elif kind == "slow":
        small = kept
        result = f"SLOW: more than {timeout} s, completes alone"
        comment = f"{h.subject.name} was slow: more than {timeout} s (--timeout), completes alone"
    else:
        first = outcome(kept)
        how = _how(first)

        def fails(p: Any) -> bool:
            if left() <= 0:
                if "minimization" not in cut:
                    cut.append("minimization")
                return False
            return _how(outcome(p)) == how

        if how is None:  # it does not come back as a program: kept whole, said so
            small, result = kept, "did not fail when the decoded program ran again"
            comment = (
                f"{h.subject.name} crashed on the input this program was decoded from; "
                "the program alone did not fail again (which operation is not known)"
            )
        else:
            small = _first_failing(minimize(kept, fails), fails)
            result = first[1] if isinstance(first, tuple) else str(first)
            comment = None
    last = small.ops[-1] if small.ops else None
    divergence = Divergence(len(small.ops) - 1, last, "crash", None, result)  # type: ignore[arg-type]
    record = subject_record(h.subject)
    slow = None
    if kind == "slow":  # replay's default --timeout would call it a HANG
        slow = confirm_budget(float(timeout or 5.0))
    path = write_divergence(
        small,
        divergence,
        h.subject.name,
        h.out_dir,
        kind,
        record,
        comment=comment,
        deadline=None if deadline is None else deadline - 0.5,
        cut=cut,
        replay_timeout=slow,
    )
    return path, replay_command(path, record, slow), cut


def _how(outcome: Any) -> str | None:
    """The kind of a failing outcome of ``isolated(_diverges, ...)`` ("the implementation
    crashed (SIGSEGV)", "... ended the process (exit status 0)", "diverged" ...; None: it
    passed)."""
    if outcome is True:
        return "diverged"
    if isinstance(outcome, tuple) and outcome and outcome[0] == "fail":
        return str(outcome[1]).split(" on this program")[0]
    return None


def _first_failing(program: Any, fails: Any) -> Any:
    """``program`` cut after its first operation that fails (the shortest failing prefix,
    by bisection): the operation a crash report blames."""
    lo, hi = 1, len(program.ops)  # program.ops[:hi] fails
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(program.with_ops(program.ops[:mid])):
            hi = mid
        else:
            lo = mid + 1
    return program.with_ops(program.ops[:hi]) if program.ops else program


def _diverges(program: Any, subject: Any) -> bool:
    return first_divergence(program, subject)[1] is not None
