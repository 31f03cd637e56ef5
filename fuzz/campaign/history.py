# SPDX-License-Identifier: GPL-2.0-or-later
"""``recvmap history REPO [REV-RANGE]``: judge the commits of a QEMU git repository.

The repository side (``subjects.qemu_tree.walk``) lists the commits worth judging, each
with the rules its history gives it. Here each one is materialised into a temporary
folder (``git archive``, removed afterwards), built (the tree build cache is keyed by
content, so a commit whose compiled files did not change is not rebuilt), and fuzzed for
``per_commit_time`` seconds over every layer its code has, against the model under its
rules. One line per commit:

    <commit> <upstream> <git describe>: clean | DIVERGES | CRASH | HANG | CANNOT BUILD | NOT RUN

with the first differing operation and the reproducer of a finding, or the one line why a
commit cannot be built or judged. A summary ends the walk; ``first_bad`` stops at the first
finding. ``bisect`` judges HEAD only and returns git bisect run's codes (0 good, 1 bad, 125
cannot be judged).

Known QEMU bugs. A change of the release table marked ``bug`` (814bb08f177a: a discard on
the source dereferenced NULL) fixed a crash that the old rules leave outside the model's
domain. A regression suite must see such a crash, so by default each commit is judged by
its rules PLUS every bug fix: the model expects the fixed behaviour, a commit that still
has the bug is a finding, and its line names the fix ("known QEMU bug, fixed by ...").
``as_released`` judges exactly by the commit's own rules instead (``recvmap fuzz
--qemu-tree`` does that too).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from recvmap.pymodel.releases import CHANGES, Change, Rules, rules_of

from ..program import Program
from ..subjects.qemu_tree.build import BuildError, build_tree, origins
from ..subjects.qemu_tree.command import driver_layers, ram_part_problem
from ..subjects.qemu_tree.repo import GitError, HistoryRules, Repo
from ..subjects.qemu_tree.tree import QemuTree, TreeError
from ..subjects.qemu_tree.walk import PREDATES, CommitPlan, plan_walk
from .campaign import run
from .jobs import CampaignError, Config
from .result import Result

BAD = ("DIVERGES", "CRASH", "HANG")  # findings: the commit is bad
UNJUDGED = ("CANNOT BUILD", "NOT RUN")  # neither good nor bad (git bisect run: 125)
GOOD, FINDING, SKIP = 0, 1, 125  # git bisect run's exit codes
KNOWN = "known QEMU bug, fixed by "


class HistoryError(Exception):
    """The repository or range cannot be walked (one line; the command exits 2)."""


@dataclass(frozen=True)
class Options:
    """What ``recvmap history`` was asked to do."""

    per_commit_time: float = 10.0
    out_dir: Path = Path("history-out")
    first_bad: bool = False
    as_released: bool = False  # judge by the commit's own rules only (no known-bug hunting)
    seed: int | None = None
    timeout: float = 5.0
    quiet: bool = False
    list_only: bool = False


@dataclass
class Verdict:
    """What one commit came to."""

    commit: str
    upstream: str
    where: str  # git describe
    rules: str  # the commit's own rules (name)
    status: str  # clean, DIVERGES, CRASH, HANG, CANNOT BUILD, NOT RUN
    detail: str = ""
    reproducer: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        return self.status in BAD

    def line(self) -> str:
        head = f"{self.commit[:12]} {self.upstream[:12]} {self.where}: {self.status}"
        if self.detail:
            head += f": {self.detail}"
        if self.reproducer:
            head += f"; reproducer {self.reproducer}"
        layers = "+".join(self.extra.get("layers", ())) or "no layer"
        return f"{head} [{self.seconds:.1f} s, {layers}, rules {self.rules}]"


def judged_rules(own: Rules, as_released: bool) -> Rules:
    """The rules a commit is judged by: its own, plus the fixes of known QEMU bugs (see the
    module's doc) unless ``as_released``."""
    if as_released:
        return own
    return rules_of(own.applied | {c.key for c in CHANGES if c.bug})


def known_bug(own: Rules, functions: Sequence[str], text: str = "") -> Change | None:
    """The bug fix the commit lacks that explains a finding in ``functions`` (or ``text``)."""
    for c in CHANGES:
        if c.bug and not own.has(c.key):
            if any(f in c.functions for f in functions) or any(f in text for f in c.functions):
                return c
    return None


def _ops_of(vector: str | None) -> list[str]:
    """The operation names of a reproducer's program (the last one first)."""
    if not vector:
        return []
    try:
        data = json.loads(Path(vector).read_text())
        groups = data.get("testGroups") or []
        program = groups[0]["tests"][0]["program"] if groups else data.get("program", data)
        return [op.name for op in reversed(Program.from_json(program).ops)]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return []


def verdict_of(result: Result, own: Rules) -> tuple[str, str, str]:
    """(status, detail, reproducer) of a campaign's result."""
    for kind, items in (("DIVERGES", result.divergences), ("CRASH", result.crashes)):
        if items:
            d = items[0]
            if kind == "DIVERGES":
                detail = str(d.get("description", ""))
            else:
                detail = f"exit status {d.get('returncode')} in {d.get('job')}"
            ops = _ops_of(d.get("vector"))
            if kind == "CRASH" and ops:
                detail = f"{ops[0]}: {detail}"
            bug = known_bug(own, ops, str(d.get("tail", "")) + detail)
            if bug is not None:
                detail += f"; {KNOWN}{bug.commit} ({bug.release})"
            return kind, detail, str(d.get("vector") or d.get("artifact") or "")
    if result.hangs:
        h = result.hangs[0]
        return "HANG", f"an input ran longer than {h.get('timeout')} s", str(h.get("vector") or "")
    if result.errors:  # recvmap's failure: the commit is not judged (never bad)
        return "NOT RUN", f"recvmap failed: {result.errors[0]['error']}", ""
    if result.did_not_run:
        return "NOT RUN", f"{', '.join(result.did_not_run)} compared no program", ""
    return "clean", "", ""


def judge_commit(
    repo: Repo, commit: str, rules: HistoryRules, opts: Options, describe: str = ""
) -> Verdict:
    """Materialise, build and fuzz one commit; its verdict."""
    start = time.monotonic()
    upstream, _subject = repo.describe(commit)
    where = describe or _describe(repo, commit)
    own = rules.rules
    name = own.name if own is not None else "none (predates the received-page bitmap)"
    v = Verdict(commit, upstream, where, name, "NOT RUN")
    if own is None:
        v.detail = "predates the received-page bitmap (no f9494614898f in its history)"
        return v
    tmp = Path(tempfile.mkdtemp(prefix="recvmap-history-"))
    try:
        repo.materialise(commit, tmp)
        tree = QemuTree.open(tmp, own, rules.text)
        lib = build_tree(tree)
        found = origins(tree)
        problem = ram_part_problem(tree)
        layers = driver_layers(found)
        judge = judged_rules(own, opts.as_released).name
        v.extra = {"layers": layers, "library": str(lib), "release": judge}
        if problem is not None:
            v.status, v.detail = "CANNOT BUILD", f"ram part: {problem}"
            return v
        cfg = Config(
            targets=tuple(layers),
            max_time=opts.per_commit_time,
            seed=opts.seed,
            out_dir=opts.out_dir / commit[:12],
            impl=lib,
            timeout=opts.timeout,
            release=judge,
        )
        result = run(cfg, sys.stderr, quiet=True)
        v.status, v.detail, v.reproducer = verdict_of(result, own)
        if KNOWN in v.detail and judge != own.name:
            _beyond_the_known_bug(v, cfg, own, opts.per_commit_time)
    except (TreeError, BuildError, GitError) as err:
        v.status, v.detail = "CANNOT BUILD", str(err).splitlines()[0] if str(err) else "?"
    except CampaignError as err:
        v.status, v.detail = "NOT RUN", str(err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        v.seconds = time.monotonic() - start
    return v


def _beyond_the_known_bug(v: Verdict, cfg: Config, own: Rules, seconds: float) -> None:
    """A known QEMU bug stops the campaign at once, and would hide any other finding of
    the commit: fuzz it again under its own rules (the known crash out of the domain) for
    a whole per-commit time, as long as a commit without the bug gets. Another finding
    takes the verdict's place (the known bug is named after it); else the line says the
    commit is otherwise clean."""
    again = dataclasses.replace(cfg, release=own.name, max_time=seconds)
    status, detail, reproducer = verdict_of(run(again, sys.stderr, quiet=True), own)
    if status in BAD:
        fix = v.detail.split(KNOWN, 1)[1]
        v.status, v.detail, v.reproducer = status, f"{detail}; also the {KNOWN}{fix}", reproducer
    elif status == "clean":
        v.detail += f"; otherwise clean under its own rules ({seconds:.0f} s)"


def _describe(repo: Repo, commit: str) -> str:
    try:
        return repo.git("describe", "--tags", "--always", commit).strip()
    except GitError:
        return commit[:12]


def open_repo(path: Path) -> Repo:
    if not path.is_dir():
        raise HistoryError(f"{path}: no such folder")
    repo = Repo.at(path)
    if repo is None:
        raise HistoryError(f"{path}: not the top folder of a git repository")
    return repo


def plan(repo: Repo, spec: Sequence[str]) -> list[CommitPlan]:
    try:
        return plan_walk(repo, list(spec) or ["HEAD"])
    except GitError as err:
        raise HistoryError(f"{' '.join(spec) or 'HEAD'}: {err}") from None


class Progress:
    """``[N/M] commit ... ~T left`` on stderr, one line per commit started."""

    def __init__(self, out: TextIO, total: int, quiet: bool) -> None:
        self.out, self.total, self.quiet = out, total, quiet
        self.times: list[float] = []
        self.start = time.monotonic()

    def starting(self, n: int, commit: str) -> None:
        if self.quiet:
            return
        left = ""
        if self.times:
            each = sum(self.times) / len(self.times)
            left = f", about {_duration(each * (self.total - n + 1))} left"
        self.out.write(f"[{n}/{self.total}] {commit[:12]}{left}\n")
        self.out.flush()


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def walk(repo: Repo, spec: Sequence[str], opts: Options, out: TextIO, err: TextIO) -> int:
    """The walk: one line per judged commit, then the summary. Exit status 1 on a finding."""
    plans = plan(repo, spec)
    todo = [p for p in plans if p.judge]
    skipped = len(plans) - len(todo)
    predate = sum(1 for p in plans if p.why == PREDATES)
    out.write(
        f"rules: by history (git, per commit); {len(plans)} commits in {' '.join(spec) or 'HEAD'}, "
        f"{len(todo)} to judge ({skipped - predate} bring no new in-scope definitions or "
        f"rules, {predate} predate the received-page bitmap)"
        + ("" if opts.as_released else "; known QEMU bugs are looked for")
        + "\n"
    )
    if opts.list_only:
        each = opts.per_commit_time + 4.0
        for p in todo:
            rules = p.rules.rules.name if p.rules.rules else "none"
            out.write(f"{p.commit[:12]} {_describe(repo, p.commit)} [rules {rules}]\n")
        out.write(
            f"estimate: about {_duration(each * len(todo))} at --per-commit-time "
            f"{opts.per_commit_time:g}\n"
        )
        return GOOD
    progress = Progress(err, len(todo), opts.quiet)
    verdicts: list[Verdict] = []
    for n, p in enumerate(todo, 1):
        progress.starting(n, p.commit)
        v = judge_commit(repo, p.commit, p.rules, opts)
        progress.times.append(v.seconds)
        verdicts.append(v)
        out.write(v.line() + "\n")
        out.flush()
        if opts.first_bad and v.bad:
            break
    out.write(summary(verdicts, len(plans), time.monotonic() - progress.start) + "\n")
    return FINDING if any(v.bad for v in verdicts) else GOOD


def summary(verdicts: Sequence[Verdict], listed: int, seconds: float) -> str:
    counts = {s: sum(1 for v in verdicts if v.status == s) for s in ("clean", *BAD, *UNJUDGED)}
    findings = sum(counts[s] for s in BAD)
    known = sum(1 for v in verdicts if KNOWN in v.detail and "; also the " not in v.detail)
    parts = [f"{k} {n}" for k, n in counts.items() if n and k != "clean"]
    text = (
        f"summary: {len(verdicts)} commits judged of {listed} listed: {counts['clean']} clean, "
        f"{findings} findings"
    )
    if known:
        text += f" ({known} known QEMU bugs)"
    if parts:
        text += f" [{', '.join(parts)}]"
    return text + f"; {_duration(seconds)}"


def bisect(repo: Repo, opts: Options, out: TextIO) -> int:
    """``--bisect``: judge HEAD; git bisect run's exit codes (0 good, 1 bad, 125 skip)."""
    try:
        commit = repo.commit("HEAD")
        rules = repo.rules_at(commit)
    except GitError as err:
        raise HistoryError(f"HEAD: {err}") from None
    out.write(f"rules: {rules.text}\n")
    v = judge_commit(repo, commit, rules, opts)
    out.write(v.line() + "\n")
    if v.bad:
        return FINDING
    return GOOD if v.status == "clean" else SKIP
