# SPDX-License-Identifier: GPL-2.0-or-later
"""``--qemu-tree`` on the subject side: open, build and describe trees for the command.

- ``resolve(trees, hosts, release, layers) -> TreePlan``: every tree opened once (its
  rules chosen once, ``QemuTree.open``), built once, the model's judge of each, and, with
  hosts, each host's replay driver and the drivers of the recovery senders of other
  layouts (``HostDriver``, plain data the campaign hands to its host jobs). A pure function
  of its arguments: the command validates its options and hands plain values down.
- ``recvmap qemu-tree DIR``: ``show``/``render``, the rules and where each ABI function
  comes from (``file:line``, ``glue (inline in ...)``, ``absent``).
- ``recvmap replay --qemu-tree DIR --host NAME``: ``tree_host_subject``, the tree's
  drivers (``tree_pool``) as a replay subject.
- ``rules_line(tree, release)``: the first line a command prints, how the rules were
  chosen ("rules: by history (git, 14 of 17 changes present) = v9.0.0").

Problems are ``TreeUsageError`` (one line); the command turns them into exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recvmap.pymodel.releases import SEED, parse_rules
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
from .tree import Origin, QemuTree, TreeError

LAYERS = ("bitmap", "ram", "recovery")


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


def judge_of(tree: QemuTree, release: str | None = None) -> str:
    """The rules the model judges ``tree`` at (a name ``parse_rules`` reads): ``release``
    when given (--release), else the tree's own; a tree that predates the received-page
    bitmap is judged by the oldest rules the model has, the seed's."""
    if release is not None:
        return parse_rules(release).name
    return tree.rules.name if tree.rules is not None else SEED


def rules_line(tree: QemuTree, release: str | None = None) -> str:
    """How the rules were chosen, the first line of a command's output."""
    if release is not None:
        return f"rules: by --release {parse_rules(release).name} (the tree's own: {tree.how})"
    if tree.rules is None:
        return f"rules: {tree.how}; judged by the oldest the model has, the seed's ({SEED})"
    return f"rules: {tree.how}"


def ram_part_problem(tree: QemuTree) -> str | None:
    """Why the tree's ram functions were left out of its build (one line), if they were."""
    problem = ram_problem(tree.root)
    return None if problem is None else str(problem)


def render(tree: QemuTree) -> str:
    """``recvmap qemu-tree DIR``: the rules, the version and the origin of every ABI
    function."""
    found = origins(tree)
    width = max(len(o.function) for o in found)
    lines = [rules_line(tree), f"QEMU tree {tree.root}", f"version {tree.version} (VERSION)", ""]
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


def driver_layers(found: Sequence[Origin]) -> list[str]:
    """The layers a tree's driver can run: bitmap, and each ram layer it has the functions of.

    A tree lacks some ram functions (the seed the byte-offset test, v2.12.0 the recovery
    stream, releases before v9.1.0 ramblock_recv_bitmap_set_offset); a layer runs when all
    it cannot do without are there (``OPTIONAL_RAM``), and the model under the tree's rules
    never calls the others. ``found``: ``origins(tree)``.
    """
    names = {o.function for o in found if o.kind != "absent"}
    ram = {d.name for d in abi() if d.header == "qemu_ref_ram.h"}
    missing = ram - names
    layers = ["bitmap"]
    if ram and len(missing) < len(ram):
        layers += [layer for layer in ("ram", "recovery") if missing <= OPTIONAL_RAM[layer]]
    return layers


# --- the plan of a --qemu-tree run ---------------------------------------------------------


@dataclass(frozen=True)
class HostDriver:
    """A tree's replay driver on an emulated host, as a campaign host job needs it: the
    driver, the layers it runs, the rules the model judges it at, and the tree's drivers
    on other hosts that send the recovery streams of other word layouts."""

    host: str
    exe: Path
    layers: tuple[str, ...]
    release: str
    senders: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "exe": str(self.exe),
            "layers": list(self.layers),
            "release": self.release,
            "senders": {h: str(p) for h, p in self.senders.items()},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> HostDriver:
        senders = {str(h): Path(p) for h, p in obj.get("senders", {}).items()}
        return cls(
            str(obj["host"]), Path(obj["exe"]), tuple(obj["layers"]), obj["release"], senders
        )


@dataclass(frozen=True)
class PlannedTree:
    """One tree of a run: opened, built, and the rules the model judges it at."""

    tree: QemuTree
    lib: Path | None  # None: not built for this machine (replay on emulated hosts only)
    origins: tuple[Origin, ...]
    judge: str  # the rules' name (parse_rules)
    rules_line: str  # "rules: by ..."

    def describe(self) -> str:
        n = {k: sum(1 for o in self.origins if o.kind == k) for k in ("tree", "glue", "absent")}
        built = f" built into {self.lib}" if self.lib is not None else ""
        return (
            f"QEMU tree {self.tree.root} ({self.tree.release}){built}: {n['tree']} functions "
            f"from the tree, {n['glue']} glue, {n['absent']} absent (recvmap qemu-tree "
            f"{self.tree.root} lists them); judged by the model at {self.judge}"
        )


@dataclass(frozen=True)
class TreePlan:
    """What ``resolve`` decided: the trees and, by host, the first tree's drivers."""

    trees: tuple[PlannedTree, ...]
    drivers: dict[str, HostDriver] = field(default_factory=dict)


def resolve(
    trees: Sequence[Path],
    hosts: Sequence[str] = (),
    release: str | None = None,
    layers: Sequence[str] = LAYERS,
    library_too: bool = True,
) -> TreePlan:
    """Open, check and build every tree once; with ``hosts``, the first tree's driver of
    each host (and the drivers of the recovery senders of other layouts when the recovery
    layer is asked for). ``release`` overrides the rules the model judges at; ``layers``
    are the layers asked for (a tree whose ram part cannot be built is an error when a ram
    layer is asked for). ``library_too`` False: no library for this machine (a replay on
    emulated hosts only). Any problem is a TreeUsageError (one line)."""
    planned = []
    for path in trees:
        tree = open_tree(path)
        lib = library(tree) if library_too else None
        found = tuple(origins(tree))
        problem = ram_part_problem(tree)
        if problem is not None and any(layer != "bitmap" for layer in layers):
            raise TreeUsageError(
                f"{tree.root}: {problem} (--target bitmap runs the bitmap layer without it)"
            )
        judge = judge_of(tree, release)
        planned.append(PlannedTree(tree, lib, found, judge, rules_line(tree, release)))
    drivers: dict[str, HostDriver] = {}
    if hosts:
        first = planned[0]
        runs = tuple(driver_layers(first.origins))
        exes = {h: host_driver(first.tree, h) for h in hosts}
        senders: dict[str, Path] = {}
        if "recovery" in runs:  # built now, not in the timed jobs
            senders = {h: host_driver(first.tree, h) for h in set(tree_senders().values())}
        for h, exe in exes.items():
            drivers[h] = HostDriver(h, exe, runs, first.judge, {**senders, h: exe})
    return TreePlan(tuple(planned), drivers)


def host_overrides(driver: HostDriver) -> dict[str, Any]:
    """fuzz_host keyword arguments for a tree's driver on its host: that driver, and the
    tree's drivers of other hosts as the recovery stream senders of other layouts."""
    pool = HostPool(dict(driver.senders))
    senders = {HOSTS[h].layout: h for h in driver.senders if h in HOSTS}
    senders[HOSTS[driver.host].layout] = driver.host
    return {"pool": pool, "layers": driver.layers, "release": driver.release, "senders": senders}


# --- the recvmap command's entry points (fuzz/cli.py calls these) --------------------------


def show(path: Path) -> int:
    """``recvmap qemu-tree DIR``."""
    try:
        tree = open_tree(path)
        text = render(tree)
    except TreeUsageError as err:
        raise TreeUsageError(f"recvmap qemu-tree: {err}") from None
    sys.stdout.write(text)
    return 0
