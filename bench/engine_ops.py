#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Differential operations per second of the engine, with and without atheris, side by side.

An operation counts when it ran on the model AND on the C reference and both the return
values and the memory images of every array were compared (out-of-domain operations the
model rejects are not counted), per second of CPU time of the one process (so other work on
the machine does not skew the figure). Programs are what the fuzzer runs: three arrays of N bits
with decoded initial words, 24 decoded operations biased to word boundaries, a fresh
session per program. "without atheris": the in-process loop on random bytes, one core.
"with atheris": the same per-input work as libFuzzer's TestOneInput, the model instrumented
as the harnesses instrument it, in a child process (atheris.Fuzz exits its process), started
as ``recvmap fuzz`` starts a harness: an empty corpus folder and 16 random seed inputs
(libFuzzer alone starts from the empty input, whose mutations stay short programs).
Targets: at least 100,000 operations/s without atheris and 50,000 with atheris, at every size.

    bench/engine_ops.py [--seconds 3] [--sizes 64,256,1024,4096] [--word-bits 64] [--impl LIB]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recvmap.fuzz.campaign.launch import atheris, atheris_available, instrumentation

CHILD = sys.argv[1:2] == ["--child"]  # the atheris run: the model instrumented as it loads
with instrumentation() if CHILD else contextlib.nullcontext():  # what the harnesses instrument
    from recvmap.fuzz.engine import Session, run_stream
    from recvmap.fuzz.program import ArraySpec, Program
    from recvmap.fuzz.program.decode_bitmap import Source, _signatures, decode_op, decode_words
    from recvmap.fuzz.subjects.impls import ModelImpl, Subject
    from recvmap.pymodel.words import Layout

TARGET = 100_000  # compared operations per CPU second without atheris (issue 11)
ATHERIS_TARGET = 50_000  # with atheris


def make_runner(nbits: int, bits: int) -> Any:
    """One fuzzer input -> one program on model and C; returns the operations compared."""
    layout = Layout(bits, False)
    subject = Subject(os.environ.get("RECVMAP_IMPL") or None, bits)
    impl, model = subject.bitmap(layout), ModelImpl(layout)
    assert impl is not None
    sigs, names = _signatures(subject.bitmap_functions(layout))
    nwords = max(1, nbits // bits)

    def one(data: bytes) -> int:
        src = Source(data)
        arrays = [ArraySpec(nwords, decode_words(src, bits, nwords)) for _ in range(3)]
        program = Program(layout, arrays)
        count = [0]

        def next_op() -> Any:
            if count[0] >= 24 or (count[0] > 0 and src.exhausted()):  # as the harness does
                return None
            count[0] += 1
            return decode_op(src, sigs, names, arrays, bits)

        kept, divergence = run_stream(program, next_op, Session(program, model, impl))
        if divergence is not None:
            raise AssertionError(divergence.describe())
        return len(kept.ops)

    return one


def without_atheris(nbits: int, bits: int, seconds: float, seed: int) -> dict[str, float]:
    one = make_runner(nbits, bits)
    rng = random.Random(seed)
    ops = programs = 0
    start, cpu = time.perf_counter(), time.process_time()
    while time.process_time() - cpu < seconds:
        ops += one(rng.randbytes(rng.randrange(200, 800)))
        programs += 1
    used = time.process_time() - cpu
    return {
        "ops": ops,
        "programs": programs,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": used,
        "ops_per_second": ops / used,
    }


def child(nbits: int, bits: int, seconds: float, stats: str) -> None:
    """Under atheris (the model instrumented as the module loaded: CHILD), fuzz for
    ``seconds``."""
    one = make_runner(nbits, bits)
    state = {"ops": 0, "programs": 0, "start": 0.0, "last": 0.0}

    def test_one_input(data: bytes) -> None:
        now = time.process_time()
        if not state["start"]:
            state["start"] = now
        state["ops"] += one(data)
        state["programs"] += 1
        if now - state["last"] > 0.2:
            state["last"] = now
            Path(stats).write_text(json.dumps({**state, "seconds": now - state["start"]}))

    atheris.Setup(
        [
            *sys.argv,  # the script, an empty corpus folder and the seed inputs
            f"-max_total_time={max(1, int(seconds))}",
            "-len_control=0",
            "-max_len=800",
            "-seed=1",
            "-print_final_stats=0",
        ],
        test_one_input,
    )
    atheris.Fuzz()


def with_atheris(nbits: int, bits: int, seconds: float) -> dict[str, float] | None:
    if not atheris_available():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        seeds, corpus = Path(tmp) / "seeds", Path(tmp) / "corpus"
        seeds.mkdir()
        corpus.mkdir()
        rng = random.Random(nbits)
        for i in range(16):
            (seeds / str(i)).write_bytes(rng.randbytes(rng.randrange(200, 800)))
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(nbits),
                str(bits),
                str(seconds),
                str(stats),
                str(corpus),
                str(seeds),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        try:
            s = json.loads(stats.read_text())
        except (OSError, ValueError):
            return None
    return {
        "ops": s["ops"],
        "programs": s["programs"],
        "seconds": s["seconds"],
        "ops_per_second": s["ops"] / s["seconds"] if s["seconds"] else 0.0,
    }


def measure(
    sizes: list[int], bits: int, seconds: float, atheris: bool = True
) -> list[dict[str, Any]]:
    """One row per size: the figures without atheris and (if asked and installed) with it."""
    rows = []
    for nbits in sizes:
        plain = without_atheris(nbits, bits, seconds, nbits)
        fuzzed = with_atheris(nbits, bits, seconds) if atheris else None
        rows.append({"nbits": nbits, "without_atheris": plain, "with_atheris": fuzzed})
    return rows


def verdict(rows: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether every size meets both targets, and a line saying so."""
    worst = min(r["without_atheris"]["ops_per_second"] for r in rows)
    fuzzed = [r["with_atheris"]["ops_per_second"] for r in rows if r["with_atheris"]]
    worst_fuzzed = min(fuzzed) if fuzzed else None
    ok = worst >= TARGET and (worst_fuzzed is None or worst_fuzzed >= ATHERIS_TARGET)
    text = f"targets >= {TARGET:,} ops/s without atheris (slowest {worst:,.0f})"
    if worst_fuzzed is not None:
        text += f", >= {ATHERIS_TARGET:,} with atheris (slowest {worst_fuzzed:,.0f})"
    return ok, text + (": met" if ok else ": NOT met")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        nbits, bits, seconds, stats, corpus, seeds = sys.argv[2:8]
        sys.argv = [sys.argv[0], corpus, seeds]
        child(int(nbits), int(bits), float(seconds), stats)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    p.add_argument("--sizes", default="64,256,1024,4096", help="bitmap sizes in bits")
    p.add_argument("--word-bits", type=int, choices=(64, 32), default=64)
    p.add_argument("--no-atheris", action="store_true", help="skip the atheris column")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    p.add_argument("--impl", type=Path, help="a library with QEMU's symbols (default: ours)")
    args = p.parse_args()
    if args.impl:
        os.environ["RECVMAP_IMPL"] = str(args.impl.resolve())
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"differential ops per CPU second, one core (model + C + memory compare), "
        f"{args.word_bits}-bit words, {args.seconds:g} s each"
    )
    print(f"{'bits':>6} {'words':>5} {'without atheris':>16} {'with atheris':>13} {'ratio':>6}")
    rows = []
    for nbits in sizes:
        row = measure([nbits], args.word_bits, args.seconds, not args.no_atheris)[0]
        plain, fuzzed = row["without_atheris"], row["with_atheris"]
        ratio = (
            f"{plain['ops_per_second'] / fuzzed['ops_per_second']:.1f}x"
            if fuzzed and fuzzed["ops_per_second"]
            else "-"
        )
        with_text = f"{fuzzed['ops_per_second']:,.0f}" if fuzzed else "-"
        print(
            f"{nbits:>6} {max(1, nbits // args.word_bits):>5} "
            f"{plain['ops_per_second']:>16,.0f} {with_text:>13} {ratio:>6}",
            flush=True,
        )
        rows.append(row)
    ok, text = verdict(rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"word_bits": args.word_bits, "rows": rows}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
