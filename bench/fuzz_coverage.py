#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Coverage of QEMU's rules the bitmap harness reaches under atheris in a time budget.

Runs ``fuzz/campaign/harness_bitmap.py`` under atheris as ``recvmap fuzz`` runs it (same
libFuzzer flags, the same 16 random seed inputs, an empty corpus folder) for ``--seconds``
of wall time (the CPU time it got is printed too), then replays the corpus libFuzzer kept
in a fresh process under ``sys.settrace`` and counts the distinct arcs (line to next line,
per function) executed in the model's ``bitops.py`` and ``bitmap.py``: the rules of QEMU
the search reached. Also prints the operations compared (the harness's own statistics).
One row per seed; the budget is wall time, so say the machine's load with the figures.

    bench/fuzz_coverage.py [--seconds 60] [--seeds 1,2] [--word-bits 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from recvmap.fuzz.campaign.harness import Harness
from recvmap.fuzz.campaign.harness_env import HarnessConfig
from recvmap.fuzz.campaign.jobs import seed_inputs
from recvmap.fuzz.campaign.launch import harness_path
from recvmap.fuzz.engine import DivergenceError
from recvmap.fuzz.subjects.impls import Subject
from recvmap.pymodel import bitmap, bitops


def replay_arcs(corpus: Path, bits: int) -> int:
    """Arcs of pymodel/bitops.py and pymodel/bitmap.py executed by the corpus's inputs."""
    files = {bitmap.__file__, bitops.__file__}
    arcs: set[tuple[str, int, int]] = set()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename not in files:
            return None
        last = [frame.f_lineno]

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "line":
                arcs.add((frame.f_code.co_filename, last[0], frame.f_lineno))
                last[0] = frame.f_lineno
            elif event == "return":
                arcs.add((frame.f_code.co_filename, last[0], -frame.f_code.co_firstlineno))
            return local

        return local

    harness = Harness("bitmap", Subject(None, bits), out_dir=tempfile.gettempdir())
    for path in sorted(corpus.iterdir()):
        data = path.read_bytes()
        sys.settrace(tracer)
        try:
            harness.one_input(data)
        except (DivergenceError, AssertionError):
            pass
        finally:
            sys.settrace(None)
    return len(arcs)


def fuzz(seconds: float, seed: int, bits: int) -> dict[str, Any]:
    """One atheris run of the bitmap harness; its statistics and the arcs its corpus reaches."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        corpus.mkdir()
        seeds = seed_inputs(work / "seeds", seed)
        stats = work / "stats.json"
        config = HarnessConfig(word_bits=bits, stats=stats, out_dir=work / "out")
        env = config.to_env(os.environ)
        argv = [sys.executable, str(harness_path("bitmap")), str(corpus), str(seeds)]
        argv += ["-len_control=0", f"-max_total_time={int(seconds)}", f"-seed={seed}"]
        argv += ["-max_len=1024", f"-artifact_prefix={work}/", "-print_final_stats=1"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        s = json.loads(stats.read_text()) if stats.exists() else {}
        child = subprocess.run(
            [sys.executable, __file__, "--replay", str(corpus), str(bits)],
            capture_output=True,
            text=True,
            check=True,
        )
        return {
            "seed": seed,
            "programs": s.get("programs"),
            "ops": s.get("ops"),
            "cpu_seconds": cpu,
            "corpus": len(list(corpus.iterdir())),
            "arcs": int(child.stdout.split()[-1]),
        }


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--replay":
        print(replay_arcs(Path(sys.argv[2]), int(sys.argv[3])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--word-bits", type=int, choices=(64, 32), default=64)
    args = p.parse_args()
    print(f"bitmap harness under atheris, {args.seconds:g} s wall time per run, load {_load()}")
    print(f"{'seed':>5} {'cpu s':>6} {'programs':>9} {'ops':>9} {'corpus':>7} {'rule arcs':>10}")
    for seed in (int(s) for s in args.seeds.split(",")):
        r = fuzz(args.seconds, seed, args.word_bits)
        print(
            f"{r['seed']:>5} {r['cpu_seconds']:>6.1f} {r['programs']:>9} {r['ops']:>9} "
            f"{r['corpus']:>7} {r['arcs']:>10}"
        )
    return 0


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
