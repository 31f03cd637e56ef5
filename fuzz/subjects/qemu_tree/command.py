# SPDX-License-Identifier: GPL-2.0-or-later
"""``--qemu-tree`` on the subject side: open, build and describe trees for the command.

- ``recvmap qemu-tree DIR``: ``show``/``render``, the release and where each ABI function
  comes from (``file:line``, ``glue (inline in ...)``, ``absent``).
- ``recvmap fuzz --qemu-tree DIR``: ``prepare`` builds every tree (and, with ``--host``,
  each host's replay driver from the first tree, and the drivers of the recovery senders
  of other layouts, handed to the host jobs through ``RECVMAP_QEMU_TREE_DRIVERS`` and
  ``host_overrides``); the campaign side is
  ``recvmap.fuzz.campaign.qemu_tree`` (one tree as ``--impl``, or two trees judged).
- ``recvmap replay --qemu-tree DIR --host NAME``: ``tree_host_subject``, the tree's
  drivers (``tree_pool``) as a replay subject.
- ``referee_release(tree)``: the ONE place that chooses the model's release for a tree.

Problems are ``TreeUsageError`` (one line); the command turns them into exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import parse_release
from recvmap.qemu_ref.loader import abi

from ..hosts import (
    HOSTS,
    HostError,
    HostPool,
    HostSubject,
    available_hosts,
    host_status,
    sender_hosts,
)
from ..impls import OPTIONAL_RAM
from .build import BuildError, build_tree, origins
from .ram import ram_problem
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
    """The release the model judges ``tree`` at: the tree's own (``"v" + VERSION``).

    None when the model does not know it (newer than its newest release, or before the
    received-page bitmap): then the model's default, newest, rules judge, and the report
    says so.
    """
    try:
        return str(parse_release(tree.release).name)
    except PreconditionError:
        return None


def referee_text(tree: QemuTree) -> str:
    """How the report names the judge of ``tree``."""
    release = referee_release(tree)
    if release is not None:
        return f"the model at {release}"
    return f"the model's newest rules ({tree.release} is outside the releases it knows)"


def ram_part_problem(tree: QemuTree) -> str | None:
    """Why the tree's ram functions were left out of its build (one line), if they were."""
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


def tree_hosts() -> list[str]:
    """The hosts a tree's driver can be built for here: available, with their own
    ``unsigned long`` (not our C's emulated word widths)."""
    return [n for n in available_hosts() if not HOSTS[n].cflags]


def host_problem(name: str) -> str | None:
    """Why a tree's code cannot run on host ``name`` here (None: it can)."""
    if name not in HOSTS:
        return f"unknown host; choose from {', '.join(HOSTS)}"
    if HOSTS[name].cflags:
        return (
            f"emulates {HOSTS[name].layout.text} words on our C only; QEMU's code has its "
            "host's own unsigned long (choose from " + ", ".join(tree_hosts()) + ")"
        )
    return host_status(name)


def tree_pool(tree: QemuTree, executables: dict[str, Path] | None = None) -> Any:
    """A ``hosts.HostPool`` whose every driver is the TREE's, built for its host on first
    use (cached), so a recovery stream's sender of another layout is the tree's code too."""

    def build(host: str) -> Path:
        try:
            return build_tree(tree, host=host)
        except BuildError as err:
            raise HostError(f"QEMU tree {tree.root} for host {host}: {err}") from None

    return HostPool(executables, builder=build)


def tree_senders() -> dict[Any, str]:
    """The host of each word layout a tree's recovery stream sender can run on here (no
    32-bit big-endian one: QEMU's code has no emulated word width)."""
    return sender_hosts(tree_hosts())


def tree_host_subject(tree: QemuTree, name: str) -> Any:
    """The tree's own code on host ``name`` as a replay subject (``hosts.HostSubject``).

    Every driver is the tree's (``tree_pool``): a recovery program's stream sender of
    another word layout runs on the tree's driver of a host of that layout, never on our
    C. A layout no host here can build (32-bit big-endian) has no sender: its programs are
    skipped with the layout named.
    """
    label = f"qemu-{tree.release}"
    return HostSubject(name, tree_pool(tree), senders=tree_senders(), label=label, path=tree.root)


def driver_env(
    drivers: dict[str, Path],
    layers: dict[str, list[str]],
    release: str | None = None,
    tree: Path | None = None,
) -> str:
    """The value of ``RECVMAP_QEMU_TREE_DRIVERS`` for host jobs."""
    return json.dumps(
        {
            h: {"exe": str(p), "layers": layers[h], "release": release, "tree": str(tree or "")}
            for h, p in drivers.items()
        }
    )


def host_overrides(name: str) -> dict[str, Any]:
    """fuzz_host keyword arguments for host ``name`` when a tree's driver replaces ours:
    the tree's driver of ``name``, and the tree's drivers of other hosts as the recovery
    stream senders of other layouts (``tree_pool``)."""
    spec = json.loads(os.environ.get(DRIVERS_ENV, "{}")).get(name)
    if not spec:
        return {}

    out: dict[str, Any] = {
        "pool": HostPool({name: Path(spec["exe"])}),
        "layers": tuple(spec["layers"]),
        "release": spec.get("release"),
    }
    if spec.get("tree"):
        out["pool"] = tree_pool(open_tree(spec["tree"]), {name: Path(spec["exe"])})
        out["senders"] = {**tree_senders(), HOSTS[name].layout: name}
    return out


def driver_layers(tree: QemuTree) -> list[str]:
    """The layers a tree's driver can run: bitmap, and each ram layer it has the functions of.

    A release lacks some ram functions (v2.12.0 the recovery stream, releases before v9.1.0
    ramblock_recv_bitmap_set_offset); a layer runs when all it cannot do without are there
    (``OPTIONAL_RAM``), and the model at the tree's release never calls the others.
    """
    names = {o.function for o in origins(tree) if o.kind != "absent"}

    ram = {d.name for d in abi() if d.header == "qemu_ref_ram.h"}
    missing = ram - names
    layers = ["bitmap"]
    if ram and len(missing) < len(ram):
        layers += [layer for layer in ("ram", "recovery") if missing <= OPTIONAL_RAM[layer]]
    return layers


# --- the recvmap command's entry points (fuzz/cli.py calls these) --------------------------


def tree_library(path: Path, command: str) -> tuple[Path, str | None]:
    """The library built from the tree at ``path`` and the release to judge it at."""
    try:
        tree = open_tree(path)
        return library(tree), referee_release(tree)
    except TreeUsageError as err:
        raise TreeUsageError(f"{command}: --qemu-tree: {err}") from None


def show(path: Path) -> int:
    """``recvmap qemu-tree DIR``."""
    try:
        tree = open_tree(path)
        text = render(tree)
    except TreeUsageError as err:
        raise TreeUsageError(f"recvmap qemu-tree: {err}") from None
    sys.stdout.write(text)
    return 0


def prepare(args: Any, hosts: tuple[str, ...]) -> list[QemuTree]:
    """Check and build every ``--qemu-tree`` of ``recvmap fuzz`` before anything runs.

    One tree becomes the campaign's ``--impl`` (and, with ``--host``, each host's driver);
    two trees are fuzzed against each other. Any problem is a usage error (exit 2).
    """
    if args.impl is not None or args.native:
        raise TreeUsageError(
            "recvmap fuzz: --qemu-tree builds the library; it excludes --impl and --native"
        )
    if len(args.qemu_tree) > 2:
        raise TreeUsageError("recvmap fuzz: --qemu-tree: give one tree, or two to compare them")
    if hosts and len(args.qemu_tree) > 1:
        raise TreeUsageError("recvmap fuzz: --host: with one --qemu-tree at a time")
    try:
        trees = [open_tree(p) for p in args.qemu_tree]
        libs = [library(t) for t in trees]
        drivers = {h: host_driver(trees[0], h) for h in hosts}
    except TreeUsageError as err:
        raise TreeUsageError(f"recvmap fuzz: --qemu-tree: {err}") from None
    ram_layers = [t for t in getattr(args, "target", ()) if t != "bitmap"]
    for t in trees:
        problem = ram_part_problem(t)
        if problem is not None and ram_layers:
            raise TreeUsageError(
                f"recvmap fuzz: --qemu-tree {t.root}: {problem} "
                f"(--target bitmap runs the bitmap layer without it)"
            )
    args.tree_libs = libs
    if args.release is None and len(trees) == 1:
        args.release = referee_release(trees[0])  # the model judges the tree at its release
    if drivers:
        layers = driver_layers(trees[0])
        if "recovery" in layers and "recovery" in getattr(args, "target", ()):
            try:  # the senders of other layouts, built now rather than in the timed jobs
                for h in set(tree_senders().values()) - set(drivers):
                    host_driver(trees[0], h)
            except TreeUsageError as err:
                raise TreeUsageError(f"recvmap fuzz: --qemu-tree: {err}") from None
        os.environ[DRIVERS_ENV] = driver_env(
            drivers, {h: layers for h in drivers}, args.release, trees[0].root
        )
    args.impl = libs[0]
    return trees
