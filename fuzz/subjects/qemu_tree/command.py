# SPDX-License-Identifier: GPL-2.0-or-later
"""``--qemu-tree``: what the ``recvmap`` command does with QEMU trees.

- ``recvmap qemu-tree DIR``: ``render(tree)``, the release and where each ABI function
  comes from (``file:line``, ``glue (inline in ...)``, ``absent``).
- ``recvmap fuzz --qemu-tree DIR``: the tree built into a library (``library``) is the
  campaign's ``--impl``; with ``--host`` each host's replay driver is built from the tree
  too and handed to the host jobs (``RECVMAP_QEMU_TREE_DRIVERS``, read by
  ``host_overrides``).
- ``recvmap fuzz --qemu-tree A --qemu-tree B``: ``fuzz_trees``, each tree against the model
  (half the time each), then every divergence's reproducer replayed on both trees: the
  report says which tree agrees with the spec (patch review: A is master, B has the patch).
- ``referee_release(tree)``: the ONE place that chooses the model's release for a tree.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .build import BuildError, build_tree, origins
from .tree import QemuTree, TreeError

DRIVERS_ENV = "RECVMAP_QEMU_TREE_DRIVERS"


class TreeUsageError(Exception):
    """A tree cannot be used (not a tree, missing file, does not compile): one line."""


def open_tree(path: str | Path) -> QemuTree:
    try:
        return QemuTree.open(path)
    except TreeError as err:
        raise TreeUsageError(str(err)) from None


def library(tree: QemuTree) -> Path:
    """The tree's library for this machine (built now, or found in the cache)."""
    try:
        return build_tree(tree)
    except BuildError as err:
        raise TreeUsageError(str(err)) from None


def host_driver(tree: QemuTree, host: str) -> Path:
    try:
        return build_tree(tree, host=host)
    except BuildError as err:
        raise TreeUsageError(str(err)) from None


def referee_release(tree: QemuTree) -> str | None:
    """The release the model judges ``tree`` at; None: the model's default (newest) rules.

    The model does not take a release yet (it comes with recvmap.pymodel.releases); until
    then every tree is judged by the newest rules, and a divergence of an older tree may
    be a rule that changed since (``render_verdict`` says so).
    """
    return None


def ram_part_problem(tree: QemuTree) -> str | None:
    """Why the tree's ram functions were left out of its build (one line), if they were."""
    try:
        from .ram import ram_problem
    except ImportError:
        return None
    problem = ram_problem(tree.root)
    return None if problem is None else str(problem)


def render(tree: QemuTree) -> str:
    """``recvmap qemu-tree DIR``: the release and the origin of every ABI function."""
    found = origins(tree)
    width = max(len(o.function) for o in found)
    lines = [f"QEMU tree {tree.root}", f"release {tree.release} (VERSION)", ""]
    lines += [f"  {o.function:<{width}}  {o.where}" for o in found]
    counts = {k: sum(1 for o in found if o.kind == k) for k in ("tree", "glue", "absent")}
    lines += [
        "",
        f"{counts['tree']} from the tree, {counts['glue']} glue (wrappers of its static inline "
        f"helpers, or recvmap's own), {counts['absent']} absent (not exported: skipped)",
    ]
    if (problem := ram_part_problem(tree)) is not None:
        lines.append(f"ram and recovery layers skipped: {problem}")
    return "\n".join(lines) + "\n"


# --- hosts ------------------------------------------------------------------------------------


def driver_env(drivers: dict[str, Path], layers: dict[str, list[str]]) -> str:
    """The value of ``RECVMAP_QEMU_TREE_DRIVERS`` for host jobs."""
    return json.dumps({h: {"exe": str(p), "layers": layers[h]} for h, p in drivers.items()})


def host_overrides(name: str) -> dict[str, Any]:
    """fuzz_host keyword arguments for host ``name`` when a tree's driver replaces ours."""
    spec = json.loads(os.environ.get(DRIVERS_ENV, "{}")).get(name)
    if not spec:
        return {}
    from recvmap.fuzz.subjects.hosts import HostPool

    return {"pool": HostPool({name: Path(spec["exe"])}), "layers": tuple(spec["layers"])}


def driver_layers(tree: QemuTree) -> list[str]:
    """The layers a tree's driver can run: bitmap, and the ram layers when it has them."""
    names = {o.function for o in origins(tree) if o.kind != "absent"}
    from recvmap.qemu_ref.loader import abi

    ram = [d.name for d in abi() if d.header == "qemu_ref_ram.h"]
    return ["bitmap", "ram", "recovery"] if ram and all(n in names for n in ram) else ["bitmap"]


# --- two trees ----------------------------------------------------------------------------


def fuzz_trees(
    cfg: Any, trees: Sequence[QemuTree], libs: Sequence[Path], out: TextIO, quiet: bool
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Each tree against the model for its share of the time; every divergence judged.

    Returns the campaign results and, per divergence, which tree agrees with the spec.
    """
    from recvmap.fuzz.campaign.campaign import run

    results = []
    share = cfg.max_time / len(trees)
    for lib in libs:
        results.append(run(dataclasses.replace(cfg, impl=lib, max_time=share), out, quiet))
    judged = []
    for r in results:
        for d in r.divergences + [c for c in r.crashes if c.get("vector")]:
            judged.append({"vector": d["vector"], "verdicts": judge(Path(d["vector"]), libs)})
    return results, judged


def judge(vector: Path, libs: Sequence[Path]) -> list[tuple[str, str]]:
    """(status, message) of a reproducer on each library: pass = agrees with the spec."""
    from recvmap.fuzz.subjects.impls import Subject
    from recvmap.fuzz.vectors.files import load_file, replay

    out = []
    for lib in libs:
        subject = Subject(lib)
        statuses = [replay(case, subject) for case in load_file(vector)]
        bad = [v for v in statuses if v.status != "pass"]
        out.append((bad[0].status, bad[0].message) if bad else ("pass", ""))
    return out


def render_verdict(trees: Sequence[QemuTree], judged: list[dict[str, Any]]) -> str:
    labels = [chr(ord("A") + i) for i in range(len(trees))]
    lines = [
        "",
        "two trees, the model as referee ("
        + ", ".join(
            f"{lab}: {t.root} {t.release}, judged at "
            f"{referee_release(t) or 'the model default (newest rules)'}"
            for lab, t in zip(labels, trees, strict=True)
        )
        + ")",
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


# --- the recvmap command's entry points (fuzz/cli.py calls these) --------------------------


def _usage(message: str) -> Exception:
    from recvmap.fuzz.cli import UsageError

    return UsageError(message)


def tree_library(path: Path, command: str) -> Path:
    """The library built from the tree at ``path``; a bad tree is a usage error (exit 2)."""
    try:
        return library(open_tree(path))
    except TreeUsageError as err:
        raise _usage(f"{command}: --qemu-tree: {err}") from None


def show(path: Path) -> int:
    """``recvmap qemu-tree DIR``."""
    import sys

    try:
        tree = open_tree(path)
        text = render(tree)
    except TreeUsageError as err:
        raise _usage(f"recvmap qemu-tree: {err}") from None
    sys.stdout.write(text)
    return 0


def prepare(args: Any, hosts: tuple[str, ...]) -> list[QemuTree]:
    """Check and build every ``--qemu-tree`` of ``recvmap fuzz`` before anything runs.

    One tree becomes the campaign's ``--impl`` (and, with ``--host``, each host's driver);
    two trees are fuzzed against each other. Any problem is a usage error (exit 2).
    """
    if args.impl is not None or args.native:
        raise _usage(
            "recvmap fuzz: --qemu-tree builds the library; it excludes --impl and --native"
        )
    if len(args.qemu_tree) > 2:
        raise _usage("recvmap fuzz: --qemu-tree: give one tree, or two to compare them")
    if hosts and len(args.qemu_tree) > 1:
        raise _usage("recvmap fuzz: --host: with one --qemu-tree at a time")
    try:
        trees = [open_tree(p) for p in args.qemu_tree]
        libs = [library(t) for t in trees]
        drivers = {h: host_driver(trees[0], h) for h in hosts}
    except TreeUsageError as err:
        raise _usage(f"recvmap fuzz: --qemu-tree: {err}") from None
    ram_layers = [t for t in getattr(args, "target", ()) if t != "bitmap"]
    for t in trees:
        problem = ram_part_problem(t)
        if problem is not None and ram_layers:
            raise _usage(
                f"recvmap fuzz: --qemu-tree {t.root}: {problem} "
                f"(--target bitmap runs the bitmap layer without it)"
            )
    args.tree_libs = libs
    if drivers:
        layers = driver_layers(trees[0])
        os.environ[DRIVERS_ENV] = driver_env(drivers, {h: layers for h in drivers})
    args.impl = libs[0]
    return trees


def fuzz(cfg: Any, trees: list[QemuTree], args: Any) -> int:
    """``recvmap fuzz --qemu-tree ...`` once ``prepare`` has built everything."""
    import sys

    from recvmap.fuzz.campaign.campaign import run, summary

    libs: list[Path] = args.tree_libs
    for t, lib in zip(trees, libs, strict=True):
        found = origins(t)
        n = {k: sum(1 for o in found if o.kind == k) for k in ("tree", "glue", "absent")}
        print(
            f"QEMU tree {t.root} ({t.release}) built into {lib}: {n['tree']} functions "
            f"from the tree, {n['glue']} glue, {n['absent']} absent "
            f"(recvmap qemu-tree {t.root} lists them); judged at "
            f"{referee_release(t) or 'the model default (newest rules)'}"
        )
    if len(trees) == 1:
        result = run(cfg, sys.stderr, quiet=args.quiet)
        print(summary(result))
        results = [result]
    else:
        results, judged = fuzz_trees(cfg, trees, libs, sys.stderr, args.quiet)
        for r in results:
            print()
            print(summary(r))
        print(render_verdict(trees, judged))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = [r.to_json() for r in results]
        args.json.write_text(json.dumps(payload[0] if len(payload) == 1 else payload) + "\n")
    return 0 if all(r.clean for r in results) else 1
