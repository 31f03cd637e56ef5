#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Building a QEMU tree into an implementation: cold build and cached rebuild, side by side.

"cold": ``build_tree`` into an empty build cache (a temporary ``RECVMAP_CACHE``): the
dependency scan, compiling QEMU's util/bitmap.c and util/bitops.c and our wrapper unit,
linking, and renaming into place. "cached": the same call again with nothing changed: the
dependency scan and the content hash of every file used, then the cached library is
returned. Wall-clock seconds, best of ``--repeat`` (the machine is shared: the best run is
the one least disturbed). Targets: cold under 10 s, cached under 1 s. ``--host NAME`` also
times the replay driver cross-built for an emulated host.

A tree is "built" only when all of it is: a library that does not load, or whose ram part
was left out (a ram function the release has is missing or does not compile: the line
``recvmap qemu-tree`` prints), is a failure, printed in full below the table (exit 1).

    bench/qemu_tree_build.py [TREE...] [--repeat 3] [--host s390x]

Without TREE: every tree of the shared test data (``../shared/qemu-trees`` beside the
checkout, or ``$RECVMAP_QEMU_TREES``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from recvmap.fuzz.subjects.qemu_tree.build import BuildError, build_tree
from recvmap.fuzz.subjects.qemu_tree.ram import ram_problem
from recvmap.qemu_ref.loader import LibraryError, load

COLD_TARGET = 10.0
CACHED_TARGET = 1.0


def default_trees() -> list[Path]:
    repo = Path(__file__).resolve().parent.parent
    root = Path(os.environ.get("RECVMAP_QEMU_TREES") or repo.parent / "shared" / "qemu-trees")
    return sorted(
        (p for p in root.glob("v*") if (p / "VERSION").is_file()),
        key=lambda p: tuple(int(x) for x in p.name.lstrip("v").split(".")),
    )


def problem_of(tree: Path, built: Path, host: str | None) -> str | None:
    """Why the build of ``tree`` is not whole (None: it is): its ram part was left out, or
    the library does not load."""
    problem = ram_problem(tree)
    if problem is not None:
        return f"ram part left out: {problem}"
    if host is None:
        try:
            load(built, partial=True)
        except (LibraryError, OSError) as err:
            return f"does not load: {err}"
    return None


def timed(tree: Path, host: str | None, repeat: int) -> tuple[float, float, str | None]:
    """(best cold seconds, best cached seconds, what failed) of building ``tree``."""
    cold, cached = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="recvmap-bench-cache-") as cache:
            os.environ["RECVMAP_CACHE"] = cache
            t0 = time.perf_counter()
            try:
                first = build_tree(tree, host=host)
            except BuildError as err:
                return time.perf_counter() - t0, 0.0, str(err)
            t1 = time.perf_counter()
            again = build_tree(tree, host=host)
            t2 = time.perf_counter()
            assert again == first, "a cached rebuild must return the same build"
            cold.append(t1 - t0)
            cached.append(t2 - t1)
            problem = problem_of(tree, first, host)
    return min(cold), min(cached), problem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--host", action="append", default=[], help="also an emulated host")
    args = ap.parse_args(argv)
    trees = args.trees or default_trees()
    if not trees:
        print("no QEMU tree given and none found (set RECVMAP_QEMU_TREES)", file=sys.stderr)
        return 2
    saved = os.environ.get("RECVMAP_CACHE")
    rows = [("tree", "build", "built", "cold s", "cached s", "cold < 10 s", "cached < 1 s")]
    failures = []
    ok = True
    try:
        for tree in trees:
            for host in [None, *args.host]:
                cold, cached, problem = timed(tree, host, args.repeat)
                good = (problem is None, cold < COLD_TARGET, cached < CACHED_TARGET)
                ok &= all(good)
                what = "library" if host is None else f"driver@{host}"
                if problem is not None:
                    failures.append(f"{tree.name} {what}: {problem}")
                rows.append(
                    (
                        tree.name,
                        what,
                        "yes" if good[0] else "NO",
                        f"{cold:.2f}",
                        f"{cached:.3f}" if good[0] else "-",
                        "yes" if good[1] else "NO",
                        "yes" if good[2] else "NO",
                    )
                )
    finally:
        if saved is None:
            os.environ.pop("RECVMAP_CACHE", None)
        else:
            os.environ["RECVMAP_CACHE"] = saved
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, r in enumerate(rows):
        print(
            "  ".join(
                c.rjust(w) if i in (3, 4) else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"best of {args.repeat}, wall-clock seconds on {os.cpu_count()} cores")
    for line in failures:
        print(f"NOT BUILT {line}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
