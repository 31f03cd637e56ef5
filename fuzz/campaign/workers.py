# SPDX-License-Identifier: GPL-2.0-or-later
"""Scale out: several processes on one corpus, and corpus merging.

``recvmap fuzz --workers N`` runs each job in libFuzzer's fork mode (``-fork=N``): the job's
harness process becomes a supervisor that runs N worker processes at a time, each fuzzing a
slice of the job's corpus and handing its new inputs back to the one corpus folder (with
``--corpus DIR``, DIR/<layer>-<bits>, which later runs and ``recvmap corpus merge`` reuse). A
worker that finds a divergence or crashes ends the job as a single process would.

Each worker is a new harness process; it keeps its own statistics file (``STATS.<pid>``, the
``RECVMAP_STATS_PER_PROCESS`` switch of the harness's ``HarnessConfig``), and ``read_stats``
adds them up for the campaign. ``merge`` is ``recvmap corpus merge``: libFuzzer's
``-merge=1`` through the layer's harness, so the inputs kept are those that add coverage
of the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import lifeline
from .harness_env import HarnessConfig
from .launch import atheris_available, harness_path

_SUMMED = ("programs", "ops", "dropped")


def read_stats(path: Path) -> dict[str, Any]:
    """The statistics of a job: its file, plus every worker's ``path.<pid>`` added up."""
    files = [path] if path.exists() else []
    files += sorted(path.parent.glob(path.name + ".*[0-9]"))
    merged: dict[str, Any] = {}
    cells: dict[str, set[str]] = {}
    for f in files:
        try:
            s = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for k, v in s.items():
            if k in _SUMMED:
                merged[k] = merged.get(k, 0) + int(v)
            elif k == "cells":
                for name, values in v.items():
                    cells.setdefault(name, set()).update(values)
            elif k == "elapsed":
                merged[k] = max(float(merged.get(k, 0.0)), float(v))
            elif k not in merged or k in ("divergence", "description", "detail"):
                merged[k] = v
    if files and cells:
        merged["cells"] = {k: sorted(v) for k, v in cells.items()}
    if len(files) > 1:
        merged["workers"] = len(files) - (1 if path.exists() else 0)
    return merged


WORKER_MB = 150  # a harness process's memory, measured 50-110 MB (libFuzzer's rss:)


def available_mb() -> int | None:
    """MemAvailable of /proc/meminfo in MB (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cap(workers: int, jobs_at_once: int) -> tuple[int, str | None]:
    """The workers per job this machine can take, and why fewer than ``workers`` (None:
    not capped): at most one per core, and ``jobs_at_once`` jobs of them, each with its
    supervisor, in half the memory available."""
    if workers <= 1:
        return workers, None
    n = min(workers, cores())
    why = f"{cores()} cores"
    mb = available_mb()
    if mb is not None:
        fit = max(1, (mb // 2) // (WORKER_MB * max(1, jobs_at_once)) - 1)
        if fit < n:
            n, why = fit, f"{mb} MB available, {WORKER_MB} MB a process, {jobs_at_once} jobs"
    return n, (None if n == workers else why)


def fork_flags(workers: int) -> list[str]:
    """libFuzzer's fork mode for ``workers`` processes (none for one)."""
    if workers <= 1:
        return []
    return [f"-fork={workers}", "-ignore_crashes=0", "-ignore_timeouts=0", "-ignore_ooms=0"]


def worker_path(env: dict[str, str], workers: int) -> dict[str, str]:
    """Fork mode starts workers by the harness script's own name: its ``#!`` python must be
    this one, so this interpreter's folder leads PATH (each worker keeps its own stats:
    ``HarnessConfig.stats_per_process``)."""
    if workers <= 1:
        return env
    return {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}


# --- recvmap corpus merge ---------------------------------------------------------------


@dataclass
class MergeResult:
    before: int  # inputs offered (files in the input folders)
    kept: int  # files in the output folder afterwards
    added: int  # of them new to the output folder
    how: str  # "libFuzzer -merge=1" or "content (no atheris)"
    log: str = ""
    left_out: int = 0  # entries of the input folders that are no input (corpus_files)


INPUT_MAX = 1 << 20  # bytes of a corpus input: libFuzzer's largest -max_len default


def corpus_files(folders: Sequence[Path]) -> tuple[list[Path], int]:
    """The inputs of corpus folders: their regular files of at most INPUT_MAX bytes (a
    FIFO, a device or a larger file is no fuzzer's input: libFuzzer read a 10 GB file whole,
    2.5 GB of memory), and how many other entries were left out."""
    files, left_out = [], 0
    for d in folders:
        for f in sorted(d.iterdir()) if d.is_dir() else []:
            try:
                st = f.stat()
            except OSError:
                left_out += 1
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size <= INPUT_MAX:
                files.append(f)
            elif not stat.S_ISDIR(st.st_mode):
                left_out += 1
    return files, left_out


class MergeError(RuntimeError):
    """The merge itself failed: one line, naming the log that was kept."""


def merge(
    layer: str,
    out: Path,
    inputs: Sequence[Path],
    env: dict[str, str],
    timeout: float = 600.0,
) -> MergeResult:
    """Merge the corpus folders ``inputs`` into ``out`` (created if missing). Only regular
    files of at most INPUT_MAX bytes are inputs (``corpus_files``)."""
    harness = harness_path(layer)
    out.mkdir(parents=True, exist_ok=True)
    before_out = {f.name for f in out.iterdir() if f.is_file()}
    files, left_out = corpus_files(inputs)
    offered = len(files)
    if not atheris_available() or HarnessConfig.from_env(env).engine == "random":
        for f in files:
            with open(f, "rb") as data:
                name = hashlib.file_digest(data, "sha1").hexdigest()
            if not (out / name).exists():
                shutil.copyfile(f, out / name)
        how, log = "content (no atheris: identical inputs folded, none judged by coverage)", ""
    else:
        # the merge's inner process is started by the script's name: its python is ours
        env = {
            **env,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
        # libFuzzer reads every file of its folders whole: it gets links to the inputs only
        stage = Path(tempfile.mkdtemp(prefix="recvmap-merge-"))
        lifeline.remove_on_death(stage)
        for i, f in enumerate(files):
            (stage / str(i)).symlink_to(f.resolve())
        argv = [sys.executable, str(harness), "-merge=1", str(out), str(stage)]
        with tempfile.TemporaryFile() as capture:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=capture,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            lifeline.adopt(proc.pid)
            try:
                status: int | str = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                status = f"still running after {timeout:g} s"
            finally:
                lifeline.release(proc.pid)
                shutil.rmtree(stage, ignore_errors=True)
                lifeline.keep(stage)
            capture.seek(0)
            log = capture.read().decode(errors="replace")
        if status != 0:
            what = f"exit status {status}" if isinstance(status, int) else status
            raise MergeError(f"libFuzzer merge failed ({what}); its log: {_keep(log)}")
        if offered and not any(f.is_file() for f in out.iterdir()):
            raise MergeError(
                f"libFuzzer merge kept nothing of {offered} inputs; its log: {_keep(log)}"
            )
        how = "libFuzzer -merge=1 (inputs that add coverage of the model)"
    after = {f.name for f in out.iterdir() if f.is_file()}
    return MergeResult(offered, len(after), len(after - before_out), how, log, left_out)


def _keep(log: str) -> str:
    """Write a failed merge's log where the user can read it; its path."""
    fd, name = tempfile.mkstemp(prefix="recvmap-merge-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(log)
    return name
