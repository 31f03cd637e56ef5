#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""All of bench/'s figures side by side in one run (``make bench``).

The model against C on a 2^28-bit map (``bitmap_ratios.py``: time per operation and their
ratio, memory) and the engine's compared operations per CPU second with and without atheris
(``engine_ops.py``), each against its target, with the machine's load average (the figures
are measured on a shared machine: model and C side by side in one process, CPU time for
the engine). ``--readme README.md`` rewrites the figures table of the README between its
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` marks.

    bench/figures.py [--seconds 3] [--repeat 5] [--readme README.md] [--no-atheris]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bitmap_ratios  # noqa: E402
import engine_ops  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def table(ratios: dict[str, object], engine: list[dict[str, object]], load: str) -> list[str]:
    """The figures as one Markdown table (what the README shows)."""
    lines = [
        f"Measured by `make bench` on {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load} (a shared machine). The model's accelerator: {ratios['accel']}.",
        "",
        "| figure | model | C | model/C | target |",
        "|---|---:|---:|---:|---|",
    ]
    for name, tm, tc in ratios["rows"]:  # type: ignore[attr-defined]
        ratio = tm / tc
        mark = "" if ratio <= bitmap_ratios.TARGET else " **over**"
        lines.append(
            f"| {name}, 2^{ratios['bits']} bits | {tm * 1e3:.2f} ms | {tc * 1e3:.2f} ms "
            f"| {ratio:.2f}{mark} | <= {bitmap_ratios.TARGET:g} |"
        )
    if ratios.get("stdlib_count"):  # the same count without the optional accelerator
        name, tm, tc = ratios["stdlib_count"]  # type: ignore[misc]
        lines.append(
            f"| {name}, 2^{ratios['bits']} bits | {tm * 1e3:.2f} ms | {tc * 1e3:.2f} ms "
            f"| {tm / tc:.2f} | informative: without the accelerator |"
        )
    mem = ratios["model_bytes"] / ratios["c_bytes"]  # type: ignore[operator]
    lines.append(
        f"| memory of a 2^{ratios['bits']}-bit map | {ratios['model_bytes'] / 2**20:.1f} MiB "  # type: ignore[operator]
        f"| {ratios['c_bytes'] / 2**20:.1f} MiB | {mem:.3f} | <= {bitmap_ratios.MEMORY_TARGET:g} |"  # type: ignore[operator]
    )
    lines += [
        "",
        "| map size | compared ops/s without atheris | with atheris | targets |",
        "|---:|---:|---:|---|",
    ]
    for row in engine:
        plain = row["without_atheris"]["ops_per_second"]  # type: ignore[index]
        fuzzed = row["with_atheris"]
        with_text = f"{fuzzed['ops_per_second']:,.0f}" if fuzzed else "-"  # type: ignore[index]
        lines.append(
            f"| {row['nbits']} bits | {plain:,.0f} | {with_text} "
            f"| >= {engine_ops.TARGET:,} / >= {engine_ops.ATHERIS_TARGET:,} |"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="engine: per measurement")
    ap.add_argument("--repeat", type=int, default=5, help="ratios: best of N")
    ap.add_argument("--sizes", default="64,256,1024,4096")
    ap.add_argument("--no-atheris", action="store_true")
    ap.add_argument("--readme", type=Path, help="rewrite this README's figures table")
    args = ap.parse_args()
    before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    ratios = bitmap_ratios.measure(repeat=args.repeat)
    sizes = [int(s) for s in args.sizes.split(",")]
    engine = engine_ops.measure(sizes, 64, args.seconds, not args.no_atheris)
    after = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = table(ratios, engine, f"{before} before, {after} after (1/5/15 min)")
    print("\n".join(lines))
    worst = max(tm / tc for _, tm, tc in ratios["rows"])
    mem = ratios["model_bytes"] / ratios["c_bytes"]
    engine_ok, engine_text = engine_ops.verdict(engine)
    ratios_ok = worst <= bitmap_ratios.TARGET and mem <= bitmap_ratios.MEMORY_TARGET
    print()
    print(
        f"model/C: worst time ratio {worst:.2f}, memory {mem:.3f}: "
        + ("met" if ratios_ok else "NOT met")
    )
    print(engine_text)
    if args.readme:
        text = args.readme.read_text()
        if BEGIN not in text or END not in text:
            print(f"{args.readme}: no {BEGIN} ... {END} marks", file=sys.stderr)
            return 2
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        args.readme.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail)
    return 0 if ratios_ok and engine_ok else 1


if __name__ == "__main__":
    sys.exit(main())
