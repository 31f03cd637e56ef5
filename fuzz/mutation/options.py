# SPDX-License-Identifier: GPL-2.0-or-later
"""The options of ``recvmap mutants`` (``mutants.run`` does the work): the command line
builds its parser from here without importing the runner.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..campaign.options import DAY, SEED_MAX, help_range, number
from .generate import MUTABLE_FILES

LAYERS = ("bitmap", "ram", "recovery")
# the ranges of the numeric options (campaign.options)
BUDGET = number("--budget", float, 0, DAY, above=True)
TIMEOUT = number("--timeout", float, 0, 3600, above=True)
SEED = number("--seed", int, 0, SEED_MAX)
SAMPLE = number("--sample", int, -1, 1_000_000)
JOBS = number("--jobs", int, 1, 256)
SCORE = number("--min-score", float, 0, 1)
ORACLES = ("fuzz", "vectors", "abort", "stress", "asan")  # what may kill a mutant, in this order


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``recvmap mutants``: the mutation score of the fuzzer and its time to kill."""
    p = subparsers.add_parser(
        "mutants",
        help="measure the fuzzer on mutants of the C reference (mutation score, time to kill)",
        description="Build mutants of the C reference (hand-written and a fixed sample of "
        "systematic ones), fuzz each against the model with several seeds, and print "
        "per mutant killed/survived and time to kill, the mutation score, the median and "
        "95th percentile time to kill, and the survivors.",
    )
    configure_parser(p)
    return p  # type: ignore[no-any-return]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--budget",
        type=BUDGET,
        default=60.0,
        help=f"seconds of fuzzing per mutant and seed, {help_range(BUDGET)} (default 60)",
    )
    p.add_argument(
        "--seeds",
        default="1,2,3",
        help=f"comma-separated seeds, each {help_range(SEED)} (default 1,2,3)",
    )
    p.add_argument(
        "--sample",
        type=SAMPLE,
        default=200,
        help="systematic mutants to run: the first N of a fixed shuffle that "
        f"compile, {help_range(SAMPLE)} (default 200; 0: none, -1: all)",
    )
    p.add_argument(
        "--sample-seed",
        type=SEED,
        default=0,
        help=f"the shuffle's seed, {help_range(SEED)} (default 0)",
    )
    p.add_argument("--no-hand", action="store_true", help="leave out the hand-written mutants")
    p.add_argument("--only", nargs="+", metavar="KEY", help="just these mutants (keys)")
    p.add_argument("--files", help=f"comma-separated subset of {','.join(MUTABLE_FILES)}")
    p.add_argument("--operators", help="comma-separated operator classes")
    p.add_argument("--layers", default=",".join(LAYERS), help="layers fuzzed (default all)")
    p.add_argument(
        "--backend",
        choices=("inprocess", "cli"),
        default="inprocess",
        help="inprocess: the engine in a fresh process per seed (default); "
        "cli: `recvmap fuzz --impl LIB --max-time BUDGET --seed N`",
    )
    p.add_argument(
        "--hang-timeout",
        type=TIMEOUT,
        default=3.0,
        help="seconds without a heartbeat that make a suspected hang, "
        f"{help_range(TIMEOUT)}; its input is then re-run alone (--confirm-timeout) and "
        "only a hang there is a kill",
    )
    p.add_argument(
        "--confirm-timeout",
        type=TIMEOUT,
        default=60.0,
        help="seconds for re-running a suspected hang's or crash's input alone, "
        f"{help_range(TIMEOUT)} (default 60)",
    )
    p.add_argument(
        "--jobs",
        type=JOBS,
        default=1,
        help=f"mutants fuzzed at once, {help_range(JOBS)} (default 1)",
    )
    p.add_argument(
        "--check-equivalent",
        action="store_true",
        help="kept for old command lines: mutants argued equivalent are always fuzzed now "
        "(a kill refutes them)",
    )
    p.add_argument(
        "--oracles",
        default=",".join(ORACLES),
        help="what may kill a mutant: fuzz (the differential engine), vectors (a replay "
        "of the shipped vectors, scored as a pipeline of its own beside fuzzing), abort "
        "(QEMU's asserts fire, for mutants of an assert), stress (threads through "
        "the atomic helpers, qemu_ref/stress.c), asan (sanitized fuzzing); the "
        "others run on fuzzing survivors; default all",
    )
    p.add_argument(
        "--asan-budget",
        type=BUDGET,
        default=10.0,
        help=f"seconds of sanitized fuzzing per fuzzing survivor, {help_range(BUDGET)} "
        "(default 10)",
    )
    p.add_argument(
        "--stress-budget",
        type=BUDGET,
        default=10.0,
        help=f"seconds of the concurrency programs per fuzzing survivor, {help_range(BUDGET)} "
        "(default 10)",
    )
    p.add_argument("--json", type=Path, help="write every result and the figures here")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the kills recorded in --json FILE (same mutant, seeds and budget); "
        "everything else runs again",
    )
    p.add_argument(
        "--patch",
        type=Path,
        help='JSON {"file": [["old", "new"], ...]} applied to the reference and '
        "under every mutant (to measure on top of a pending fix)",
    )
    p.add_argument("--list", action="store_true", help="list the selected mutants and exit")
    p.add_argument(
        "--no-control", action="store_true", help="skip fuzzing the unmutated reference first"
    )
    p.add_argument(
        "--min-score",
        type=SCORE,
        default=0.95,
        help=f"exit 1 below this strict score, {help_range(SCORE)} (default 0.95)",
    )
    p.add_argument(
        "--max-median",
        type=BUDGET,
        default=5.0,
        help=f"exit 1 above this median time to kill, {help_range(BUDGET)} (default 5 s)",
    )
