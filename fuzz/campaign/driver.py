# SPDX-License-Identifier: GPL-2.0-or-later
"""The replay driver's command line: replay programs or vector files on a host's driver.

python -m recvmap.fuzz.campaign.driver tests/vectors/x.json --host s390x [--compare]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine import first_divergence, run
from ..program import Program
from ..subjects.hosts import HOSTS, HostSubject
from ..subjects.impls import ModelImpl
from ..subjects.remote import Driver, DriverImpl, for_layout, program_script, replay
from ..vectors.files import load_file


def main(argv: Sequence[str] | None = None) -> int:
    """Batch mode: replay programs (bare JSON programs or vector files) on a host's driver.

    Bitmap programs print every return value and the final memory images (``--compare``
    also runs them against the model); ram and recovery programs are compared with the
    model. A program for the other byte order of the host's word width runs as is.
    """
    ap = argparse.ArgumentParser(
        prog="python -m recvmap.fuzz.campaign.driver", description=main.__doc__
    )
    ap.add_argument("programs", nargs="+", type=Path, help="JSON programs or vector files")
    ap.add_argument("--host", default="native", choices=sorted(HOSTS))
    ap.add_argument("--compare", action="store_true", help="also compare with the model")
    ap.add_argument("--script", action="store_true", help="print the driver lines only")
    args = ap.parse_args(argv)
    status = 0
    subject = HostSubject(args.host)
    try:
        for path in args.programs:
            for case in load_file(path):
                program = for_layout(case.program, subject.layout)
                if program is None:
                    print(f"# {case.name}: skipped: {case.program.layout} on {subject.layout}")
                    continue
                if case.test["result"] == "invalid":
                    program = program.with_ops(program.ops[:-1])  # never run the invalid op
                if args.script and program.layer == "bitmap":
                    print("\n".join(program_script(program)))
                elif program.layer == "bitmap":
                    driver = subject.pool.driver(args.host)
                    status |= _print_replay(case.name, program, driver, args.compare)
                else:
                    divergence = first_divergence(program, subject)[1]  # type: ignore[arg-type]
                    verdict = "same as the model" if divergence is None else "DIVERGENCE"
                    print(f"# {case.name} on {args.host}: {verdict}")
                    if divergence is not None:
                        print(divergence.describe())
                        status = 1
    finally:
        subject.close()
    return status


def _show(value: Any) -> str:
    return "void" if value is None else str(int(value)) if isinstance(value, bool) else str(value)


def _print_replay(name: str, program: Program, driver: Driver, compare: bool) -> int:
    print(f"# {name} on {driver.name} ({driver.layout})")
    if compare:
        impl = DriverImpl(driver, own=False)
        outcome = run(program, ModelImpl(program.layout, program.release), impl)
        if outcome.divergence is not None:
            print(f"DIVERGENCE: {outcome.divergence.describe()}")
            return 1
        print(f"same as the model: {outcome.ops_compared} operations")
    result = replay(program, driver)
    for i, (op, value) in enumerate(zip(program.ops, result.results, strict=True)):
        print(f"#{i} {op} -> {_show(value)}")
    for k, image in enumerate(result.images):
        print(f"@{k} {image.hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
