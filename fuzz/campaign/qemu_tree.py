# SPDX-License-Identifier: GPL-2.0-or-later
"""``recvmap fuzz --qemu-tree``: campaigns on QEMU trees, and two trees judged by the model.

The trees are opened and built on the subject side (``subjects.qemu_tree.command.resolve``,
a ``TreePlan``); here one tree is simply the campaign's ``--impl`` at the tree's rules, and
two trees are the patch-review mode: each tree is fuzzed against the model at its own rules
for half the time, then every divergence's minimized reproducer is replayed on both trees. A tree
that replays it like the model agrees with the spec; the report names the one that does
not (tree A is master, tree B master plus a patch). When every tree disagrees, the model
may be wrong at that release.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..subjects.impls import Subject
from ..subjects.qemu_tree.command import PlannedTree, TreePlan
from ..vectors.files import load_file, replay
from .campaign import run
from .jobs import Config
from .result import Result, summary


def fuzz_trees(
    cfg: Config, trees: Sequence[PlannedTree], out: TextIO, quiet: bool
) -> tuple[list[Result], list[dict[str, Any]]]:
    """Each tree against the model at its rules for its share of the time; every
    divergence's reproducer judged on every tree. The results, and the judgements."""
    results = []
    share = cfg.max_time / len(trees)
    for t in trees:
        one = dataclasses.replace(cfg, impl=t.lib, max_time=share, release=t.judge)
        results.append(run(one, out, quiet))
    judged = []
    for r in results:
        for d in r.divergences + [c for c in r.crashes if c.get("vector")]:
            verdicts = judge(Path(d["vector"]), trees)
            judged.append({"vector": d["vector"], "verdicts": verdicts})
    return results, judged


def judge(vector: Path, trees: Sequence[PlannedTree]) -> list[tuple[str, str]]:
    """(status, message) of a reproducer on each tree at its rules: pass = agrees with
    the spec, fail = disagrees, skip = cannot run it (a function or release it lacks)."""
    out = []
    for t in trees:
        subject = Subject(t.lib)
        verdicts = [replay(case, subject, release=t.judge) for case in load_file(vector)]
        bad = [v for v in verdicts if v.status == "fail"] or [
            v for v in verdicts if v.status == "skip"
        ]
        out.append((bad[0].status, bad[0].message) if bad else ("pass", ""))
    return out


def render_verdict(planned: Sequence[PlannedTree], judged: list[dict[str, Any]]) -> str:
    trees = [p.tree for p in planned]
    labels = [chr(ord("A") + i) for i in range(len(trees))]
    lines = ["", "two trees, the model as referee:"]
    lines += [
        f"  {lab}: {p.tree.root} ({p.tree.release}), judged by the model at {p.judge}"
        for lab, p in zip(labels, planned, strict=True)
    ]
    if not judged:
        lines.append("no divergence: every tree agrees with the spec on every program run")
    for j in judged:
        lines.append(f"reproducer {j['vector']}:")
        wrong = []
        for lab, t, (status, message) in zip(labels, trees, j["verdicts"], strict=True):
            if status == "pass":
                lines.append(f"  {lab} ({t.root}): agrees with the spec")
            elif status == "skip":
                lines.append(f"  {lab} ({t.root}): cannot run it: {message}")
            else:
                wrong.append(f"{lab} ({t.root})")
                lines.append(f"  {lab} ({t.root}): DISAGREES with the spec: {message}")
        if len(wrong) == 1:
            lines.append(f"  verdict: {wrong[0]} disagrees with the spec")
        elif wrong:
            lines.append(
                "  verdict: every tree disagrees with the spec: the model may be wrong at "
                "this release, or the behaviour changed before these trees"
            )
    return "\n".join(lines)


def fuzz(cfg: Config, plan: TreePlan, quiet: bool) -> list[Result]:
    """``recvmap fuzz --qemu-tree ...`` once ``resolve`` has built everything: the
    campaigns' results, summaries printed (the command writes reports and exit status).
    The first lines say how each tree's rules were chosen."""
    for t in plan.trees:
        print(t.rules_line)
    for t in plan.trees:
        print(t.describe())
    if len(plan.trees) == 1:
        results = [run(cfg, sys.stderr, quiet=quiet)]
        print(summary(results[0]))
        for d in results[0].divergences + results[0].crashes:
            if d.get("vector"):
                t = plan.trees[0]
                print(
                    f"on the tree: recvmap replay --qemu-tree {t.tree.root} --release {t.judge} "
                    f"{d['vector']}"
                )
    else:
        results, judged = fuzz_trees(cfg, plan.trees, sys.stderr, quiet)
        for r in results:
            print()
            print(summary(r))
        print(render_verdict(plan.trees, judged))
    return results
