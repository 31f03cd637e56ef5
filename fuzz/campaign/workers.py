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
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def count_files(folders: Sequence[Path]) -> int:
    return sum(1 for d in folders if d.is_dir() for f in d.iterdir() if f.is_file())


def merge(
    layer: str,
    out: Path,
    inputs: Sequence[Path],
    env: dict[str, str],
    timeout: float = 600.0,
) -> MergeResult:
    """Merge the corpus folders ``inputs`` into ``out`` (created if missing)."""
    harness = harness_path(layer)
    out.mkdir(parents=True, exist_ok=True)
    before_out = {f.name for f in out.iterdir() if f.is_file()}
    offered = count_files(inputs)
    if not atheris_available() or HarnessConfig.from_env(env).engine == "random":
        for d in inputs:
            for f in sorted(d.iterdir()) if d.is_dir() else []:
                if f.is_file():
                    data = f.read_bytes()
                    name = hashlib.sha1(data).hexdigest()
                    if not (out / name).exists():
                        shutil.copyfile(f, out / name)
        how, log = "content (no atheris: identical inputs folded, none judged by coverage)", ""
    else:
        # the merge's inner process is started by the script's name: its python is ours
        env = {
            **env,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
        argv = [sys.executable, str(harness), "-merge=1", str(out)]
        argv += [str(d) for d in inputs]
        proc = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        log = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(log.splitlines()[-15:])
            raise RuntimeError(f"libFuzzer merge failed (exit status {proc.returncode}):\n{tail}")
        if offered and not any(f.is_file() for f in out.iterdir()):
            tail = "\n".join(log.splitlines()[-15:])
            raise RuntimeError(f"libFuzzer merge kept nothing of {offered} inputs:\n{tail}")
        how = "libFuzzer -merge=1 (inputs that add coverage of the model)"
    after = {f.name for f in out.iterdir() if f.is_file()}
    return MergeResult(offered, len(after), len(after - before_out), how, log)
