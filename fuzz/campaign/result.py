# SPDX-License-Identifier: GPL-2.0-or-later
"""The campaign's outcome (``Result``: jobs, divergences, crashes, hangs, slow inputs, notes),
the matrix it reached, and the summary table ``recvmap fuzz`` prints.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from recvmap.pymodel import arch

from ..program.decode_ram import migrating_targets
from .jobs import Job


@dataclass
class Result:
    """The campaign's outcome: jobs, divergences, crashes, notes."""

    jobs: list[Job]
    notes: list[str]
    elapsed: float
    seed: int
    impl: str
    divergences: list[dict[str, Any]] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    hangs: list[dict[str, Any]] = field(default_factory=list)
    # inputs that outran --timeout but completed when re-run alone: not findings
    slow: list[dict[str, Any]] = field(default_factory=list)
    # suspected findings a re-run alone did not confirm: listed, never findings
    unconfirmed: list[dict[str, Any]] = field(default_factory=list)
    # recvmap's own failures (a harness that ended with no input to blame): exit status 3
    errors: list[dict[str, Any]] = field(default_factory=list)
    skipped_symbols: dict[str, list[str]] = field(default_factory=dict)
    interrupted: int | None = None  # the signal that stopped the campaign
    release: str | None = None  # the QEMU release the model stood for (Config.release)

    @property
    def clean(self) -> bool:
        return not self.divergences and not self.crashes and not self.hangs

    @property
    def did_not_run(self) -> list[str]:
        """Jobs that compared nothing: never "clean" (a cold cache, a broken start ...).
        A job ended by a slow input ran it (and was started again)."""
        slow = {h["job"] for h in self.slow}
        return [j.name for j in self.jobs if j.ops == 0 and j.programs == 0 and j.name not in slow]

    @property
    def status(self) -> str:
        if self.divergences:
            return "divergence"
        if self.crashes:
            return "crash"
        if self.hangs:
            return "hang"
        if self.errors:
            return "error"
        if self.interrupted is not None:
            return "interrupted"
        return "did not run" if self.did_not_run else "clean"

    def totals(self) -> dict[str, Any]:
        ops = sum(j.ops for j in self.jobs)
        busy = sum(j.elapsed for j in self.jobs)
        return {
            "programs": sum(j.programs for j in self.jobs),
            "ops": ops,
            "ops_per_second": round(ops / self.elapsed) if self.elapsed else 0,
            "ops_per_core_second": round(ops / busy) if busy else 0,
            "coverage": sum(j.cov for j in self.jobs),
        }

    def matrix(self) -> dict[str, list[str]]:
        seen: dict[str, set[str]] = {
            "targets": set(),
            "hosts": set(),
            "page_sizes": set(),
            "widths": set(),
        }
        for j in self.jobs:
            for k, v in j.stats.get("cells", {}).items():
                seen.setdefault(k, set()).update(v)
        return {k: sorted(v) for k, v in seen.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "did_not_run": self.did_not_run,
            "interrupted": None
            if self.interrupted is None
            else signal.Signals(self.interrupted).name,
            "impl": self.impl,
            "seed": self.seed,
            "elapsed": round(self.elapsed, 2),
            "totals": self.totals(),
            "jobs": [job_json(j) for j in self.jobs],
            "matrix": self.matrix(),
            "missing_cells": missing_cells(self.matrix()),
            "divergences": self.divergences,
            "crashes": self.crashes,
            "hangs": self.hangs,
            "slow": self.slow,
            "unconfirmed": self.unconfirmed,
            "errors": self.errors,
            "skipped_symbols": self.skipped_symbols,
            "notes": self.notes,
        }


def job_json(j: Job) -> dict[str, Any]:
    return {
        "name": j.name,
        "layer": j.layer,
        "word_bits": j.bits,
        "host": j.host,
        "seed": j.seed,
        "seconds": round(j.elapsed, 2),
        "programs": j.programs,
        "ops": j.ops,
        "ops_per_second": round(j.ops / j.elapsed) if j.elapsed else 0,
        "coverage": j.cov,
        "features": j.features,
        "returncode": j.returncode,
        "cells": j.stats.get("cells", {}),
    }


def all_cells() -> dict[str, set[str]]:
    """Every (target, page bits), host and page size of the arch table a campaign should hit."""
    targets = {
        f"{t.name}:{b}"
        for t in arch.TARGETS
        if t.name in migrating_targets()
        for b in t.page_bits_choices()
    }
    return {
        "targets": targets,
        "hosts": {h.name for h in arch.HOSTS},
        "page_sizes": {str(p) for h in arch.HOSTS for p in h.page_sizes},
    }


def missing_cells(seen: dict[str, list[str]]) -> dict[str, list[str]]:
    if not seen.get("hosts"):
        return {}
    return {k: sorted(v - set(seen.get(k, []))) for k, v in all_cells().items()}


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cells(j: Job) -> str:
    c = j.stats.get("cells", {})
    if j.proc is None:
        return "-"
    if j.layer == "bitmap":
        return "word arrays of 1..64 words"
    if j.layer == "host":
        return str(j.stats.get("layout", ""))
    pairs = f", senders {' '.join(c['pairs'])}" if c.get("pairs") else ""
    return (
        f"{len(c.get('targets', []))} target/page bits, {len(c.get('hosts', []))} hosts, "
        f"{len(c.get('page_sizes', []))} page sizes{pairs}"
    )


def summary(result: Result) -> str:
    rows = [["job", "words", "seconds", "programs", "ops", "ops/s", "cov", "matrix", "result"]]
    # a job's result: the first kind of outcome it has, in this order
    outcomes = (
        ("DIVERGENCE", result.divergences),
        ("CRASH", result.crashes),
        ("HANG", result.hangs),
        ("ERROR (recvmap)", result.errors),
        ("not confirmed", result.unconfirmed),
        ("slow input", result.slow),
    )
    for j in result.jobs:
        status = "not run" if j.proc is None else "clean"
        found = next((s for s, items in outcomes if any(x["job"] == j.name for x in items)), None)
        if found is not None:
            status = found
        elif j.name in result.did_not_run:
            status = "did not run"
        elif j.returncode not in (0, None) and status == "clean":
            status = "stopped"
        words = "/".join(j.stats.get("cells", {}).get("widths", [])) or (str(j.bits or "-"))
        rows.append(
            [
                j.name,
                words,
                f"{j.elapsed:.1f}",
                f"{j.programs:,}",
                f"{j.ops:,}",
                f"{j.ops / j.elapsed:,.0f}" if j.elapsed else "0",
                f"{j.cov:,}",
                _cells(j),
                status,
            ]
        )
    t = result.totals()
    rows.append(
        [
            "total",
            "",
            f"{result.elapsed:.1f}",
            f"{t['programs']:,}",
            f"{t['ops']:,}",
            f"{t['ops_per_second']:,}",
            f"{t['coverage']:,}",
            "",
            {"clean": "clean", "did not run": "DID NOT RUN", "error": "ERROR (recvmap)"}.get(
                result.status, "FAILED"
            )
            if result.interrupted is None or not result.clean
            else "INTERRUPTED",
        ]
    )
    lines = [
        f"recvmap fuzz: {result.impl} against the model, seed {result.seed}",
        "",
        _table(rows, {2, 3, 4, 5, 6}),
    ]
    m = result.matrix()
    if m.get("hosts"):
        miss = missing_cells(m)
        lines.append("")
        lines.append(
            f"matrix: {len(m['targets'])} (target, page bits) of {len(all_cells()['targets'])}, "
            f"{len(m['hosts'])} hosts of {len(arch.HOSTS)}, {len(m['page_sizes'])} page sizes "
            f"of {len(all_cells()['page_sizes'])}, word widths {'/'.join(m['widths'])}"
        )
        for k, v in miss.items():
            if v:
                lines.append(f"  not reached: {k}: {', '.join(v)}")
    if m.get("emulated"):
        lines.append(f"emulated hosts (qemu-user, fuzz.campaign.hosts): {', '.join(m['emulated'])}")
    for bits, names in sorted(result.skipped_symbols.items()):
        lines.append(f"skipped ({bits}-bit library lacks them): {', '.join(names)}")
    lines += [f"note: {n}" for n in result.notes]
    for d in result.divergences:
        lines += [
            "",
            f"DIVERGENCE in {d['job']}: {d['description']}",
            f"minimized reproducer: {d['vector']}",
            f"replay it: {d.get('replay') or 'recvmap replay ' + d['vector']}",
        ]
        if d.get("alone"):
            lines.append(f"confirmed: {d['alone']}")
    for h in result.hangs:
        lines += [
            "",
            f"HANG in {h['job']}: an input ran longer than {h['timeout']} s (--timeout)"
            + (f"; re-run alone: {h['alone']}" if h.get("alone") else ""),
            f"input: {h['input']}",
        ]
        lines += _reproducer_lines(h, "hang")
    for h in result.slow:
        took = "?" if h.get("seconds") is None else f"{h['seconds']:.1f}"
        lines += [
            "",
            f"SLOW in {h['job']}: an input outran --timeout {h['timeout']:g} s; alone it "
            f"completes in {took} s; not a finding",
            f"input: {h['input']}",
        ]
        lines += _reproducer_lines(h, "slow input")
    if result.did_not_run and result.clean:
        lines += ["", f"did not run: {', '.join(result.did_not_run)} compared no program"]
    for c in result.crashes:
        lines += ["", f"CRASH in {c['job']} (exit status {c['returncode']}); log {c['log']}"]
        if c.get("alone"):
            lines.append(f"confirmed: {c['alone']}")
        if c.get("artifact"):
            lines.append(f"input: {c['artifact']}")
        if c.get("vector"):
            lines += [
                f"minimized reproducer: {c['vector']}",
                f"replay it: {c.get('replay') or 'recvmap replay ' + c['vector']}",
            ]
        lines += ["  " + x for x in c["tail"].splitlines()]
    for u in result.unconfirmed:
        what = u.get("description") or u.get("alone") or ""
        lines += [
            "",
            f"NOT CONFIRMED in {u['job']}: a suspected {u['kind']} a re-run alone did not "
            f"confirm; not a finding: {u.get('alone', '')}",
        ]
        if what and what != u.get("alone"):
            lines.append(f"suspected: {what}")
        if u.get("vector"):
            lines.append(f"kept: {u['vector']}")
    for e in result.errors:
        lines += ["", f"ERROR (recvmap, not the implementation): {e['error']}; log {e['log']}"]
        lines += ["  " + x for x in str(e.get("tail", "")).splitlines()[-8:]]
    return "\n".join(lines)


def _reproducer_lines(h: dict[str, Any], what: str) -> list[str]:
    lines = []
    if h.get("vector"):
        lines += [f"{what} reproducer: {h['vector']}", f"replay it: {h['replay']}"]
    elif h.get("error"):
        lines.append(h["error"])
    if h.get("cut_short"):
        lines.append(f"cut short by --max-time: {', '.join(h['cut_short'])}")
    return lines
