# SPDX-License-Identifier: GPL-2.0-or-later
"""The table of docs/history.md, from the output of a ``recvmap history`` sweep.

    git clone -q ../shared/qemu-history/qemu.bundle qemu
    recvmap history qemu --per-commit-time 10 --out history-out > history.txt
    python docs/history_table.py qemu history.txt > table.md

One row per judged commit: the bundle's commit, its upstream id, the first release that
contains it (the oldest ``vX.Y.Z`` tag whose history holds it), the verdict (its first
words, up to the first ``:`` or ``;``) and the seconds it was judged for; then the totals.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

LINE = re.compile(
    r"^(?P<commit>[0-9a-f]{12}) (?P<upstream>[0-9a-f]{12}) (?P<describe>\S+): "
    r"(?P<verdict>.*) \[(?P<seconds>[\d.]+) s, (?P<layers>[^,]+), rules (?P<rules>[^\]]+)\]$"
)
RELEASE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def first_release(repo: Path, commit: str) -> str:
    """The oldest release tag (no release candidate) whose history contains ``commit``."""
    tags = subprocess.run(
        ["git", "-C", str(repo), "tag", "--contains", commit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    releases = [t for t in tags if RELEASE.match(t)]
    if not releases:
        return "(none)"
    return min(releases, key=lambda t: tuple(int(x) for x in RELEASE.findall(t)[0]))


def short(verdict: str) -> str:
    """The verdict's first words: ``clean``, ``CRASH: ram_discard_range`` ..."""
    if verdict.startswith("clean"):
        return "clean"
    head = verdict.split(";", 1)[0]
    parts = head.split(":")
    return ":".join(parts[:2]).strip()


def main(repo: Path, output: Path) -> int:
    rows = []
    summary = ""
    for raw in output.read_text().splitlines():
        m = LINE.match(raw)
        if m is None:
            if raw.startswith("summary:"):
                summary = raw
            continue
        rows.append(m)
    print("| # | commit | upstream | first release | verdict | seconds | layers | rules |")
    print("|---:|---|---|---|---|---:|---|---|")
    counts: collections.Counter[str] = collections.Counter()
    for n, m in enumerate(rows, 1):
        verdict = short(m["verdict"])
        counts[verdict.split(":")[0]] += 1
        bug = " (known bug)" if "known QEMU bug" in m["verdict"] else ""
        print(
            f"| {n} | {m['commit']} | {m['upstream']} | {first_release(repo, m['commit'])} "
            f"| {verdict}{bug} | {float(m['seconds']):.1f} | {m['layers']} | {m['rules']} |"
        )
    total = sum(float(m["seconds"]) for m in rows)
    print()
    print(
        f"{len(rows)} commits judged: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"; {total / 60:.1f} minutes of judging."
    )
    if summary:
        print(f"\nThe sweep's own last line: `{summary}`")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python docs/history_table.py REPO HISTORY_OUTPUT", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
