# SPDX-License-Identifier: GPL-2.0-or-later
"""A QEMU tree's git history: which release changes it contains, and its commits.

The model's release changes (``pymodel.releases.CHANGES``) each name the upstream commit
that made them. A tree contains a change when a commit carrying it is an ancestor of the
tree's HEAD. A commit carries a change when it IS the upstream commit (QEMU's own
repository), when its message says ``Upstream-commit: <id>`` (a filtered history such as
../shared/qemu-history, whose commit ids are new), or when it says ``(cherry picked from
commit <id>)`` (a stable or backport branch). ``Repo.carriers`` builds that map once per
repository (one ``git log --grep`` over every ref, cached by the refs' state, in memory
and in the build cache).

- ``Repo.at(path)``: the repository whose top level is ``path`` (None: not a checkout);
- ``Repo.rules_at(rev)``: the rules of one commit (``HistoryRules``, with the one phrase
  the command prints: "by history (git, 14 of 17 changes present)");
- ``Repo.masks(commits)``: the changes of many commits at once (one pass over the graph,
  for ``recvmap history``);
- ``Repo.materialise(rev, dest)``: the files of a commit the tree build reads, written to
  ``dest`` (``git archive``; the caller removes ``dest``).

The seed commit itself (f9494614898f) is tracked like a change: a commit without it
predates the received-page bitmap.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recvmap.pymodel.releases import CHANGES, SEED, Rules, rules_of

from ..build import cache_dir

# What a tree build reads (top-level entries; those a commit lacks are left out).
TREE_PATHS = ("VERSION", "include", "util", "migration", "exec.c", "softmmu", "system")
_UPSTREAM = re.compile(r"^Upstream-commit: ([0-9a-f]{7,40})\s*$", re.M)
_CHERRY = re.compile(r"cherry picked from commit ([0-9a-f]{7,40})")
SEED_KEY = "seed"  # the seed commit, tracked with the changes


class GitError(RuntimeError):
    """A git command failed; the message is one line."""


def _ids() -> dict[str, str]:
    """Change key (and ``seed``) -> the upstream commit id (abbreviated) that carries it."""
    return {SEED_KEY: SEED, **{c.key: c.commit for c in CHANGES}}


@dataclass(frozen=True)
class HistoryRules:
    """The rules of one commit by its history: the changes present, those the repository
    does not know (a shallow clone), and the phrase saying so."""

    rules: Rules | None  # None: the commit predates the received-page bitmap
    present: frozenset[str]
    unknown: frozenset[str]

    @property
    def text(self) -> str:
        total = len(CHANGES)
        if self.rules is None:
            return f"by history (git): predates the received-page bitmap ({SEED} is no ancestor)"
        known = total - len(self.unknown)
        text = f"by history (git, {len(self.present)} of {total} changes present"
        if self.unknown:
            text += f"; {total - known} unknown to this repository"
        return text + f") = {self.rules.name}"


class Repo:
    """A git repository (its top-level folder), read with the ``git`` command."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def at(cls, path: str | Path) -> Repo | None:
        """The repository whose top level is ``path``; None when ``path`` is not one (a
        plain folder, a folder inside another repository, or git missing)."""
        root = Path(path).resolve()
        try:
            top = _run(root, "rev-parse", "--show-toplevel").strip()
        except GitError:
            return None
        return cls(root) if Path(top).resolve() == root else None

    def git(self, *args: str, input: str | None = None) -> str:
        return _run(self.root, *args, input=input)

    def commit(self, rev: str) -> str:
        """The full id of ``rev`` (GitError: no such commit)."""
        return self.git("rev-parse", "--verify", "-q", f"{rev}^{{commit}}").strip()

    # --- which commits carry each change ----------------------------------------------

    def state(self) -> str:
        """A digest of every ref: the carriers map is valid while it is unchanged."""
        refs = self.git("for-each-ref", "--format=%(objectname) %(refname)")
        head = self.git("rev-parse", "HEAD").strip()
        return hashlib.sha256(f"{refs}\n{head}".encode()).hexdigest()[:24]

    def carriers(self) -> dict[str, frozenset[str]]:
        """Change key (and ``seed``) -> the local commits that carry it."""
        return _carriers(self.root, self.state())

    def _find_carriers(self) -> dict[str, frozenset[str]]:
        ids = _ids()
        found: dict[str, set[str]] = {k: set() for k in ids}
        pattern = "|".join(sorted(set(ids.values())))
        log = self.git(
            "log",
            "--all",
            "-E",
            f"--grep=(Upstream-commit: |cherry picked from commit )({pattern})",
            "--format=%H%x00%B%x01",
        )
        for entry in log.split("\x01"):
            if "\x00" not in entry:
                continue
            commit, body = entry.strip().split("\x00", 1)
            named = _UPSTREAM.findall(body) + _CHERRY.findall(body)
            for key, upstream in ids.items():
                if any(n.startswith(upstream) or upstream.startswith(n) for n in named):
                    found[key].add(commit)
        # QEMU's own repository: the upstream ids are its own commits
        lines = "\n".join(f"{i}^{{commit}}" for i in ids.values()) + "\n"
        answer = self.git("cat-file", "--batch-check=%(objectname)", input=lines).splitlines()
        for (key, _), line in zip(ids.items(), answer, strict=False):
            if re.fullmatch(r"[0-9a-f]{40}", line.strip()):
                found[key].add(line.strip())
        return {k: frozenset(v) for k, v in found.items()}

    # --- the rules of commits -----------------------------------------------------------

    def rules_at(self, rev: str = "HEAD") -> HistoryRules:
        """The rules of ``rev``: a change applies when a commit carrying it is an ancestor."""
        commit = self.commit(rev)
        carriers = self.carriers()
        present, unknown = set(), set()
        for key, commits in carriers.items():
            if not commits:
                unknown.add(key)
            elif any(self._is_ancestor(c, commit) for c in commits):
                present.add(key)
        return _history_rules(frozenset(present), frozenset(unknown))

    def _is_ancestor(self, ancestor: str, commit: str) -> bool:
        proc = subprocess.run(
            ["git", "-C", str(self.root), "merge-base", "--is-ancestor", ancestor, commit],
            capture_output=True,
        )
        return proc.returncode == 0

    def masks(self, commits: Iterable[str]) -> dict[str, frozenset[str]]:
        """The changes (and ``seed``) present in each of ``commits`` and their ancestors:
        one pass over the graph, parents before children."""
        carried: dict[str, set[str]] = {}
        for key, cs in self.carriers().items():
            for c in cs:
                carried.setdefault(c, set()).add(key)
        wanted = "\n".join(commits) + "\n"
        graph = self.git(
            "rev-list", "--stdin", "--topo-order", "--reverse", "--parents", input=wanted
        )
        out: dict[str, frozenset[str]] = {}
        for line in graph.splitlines():
            commit, *parents = line.split()
            keys = set(carried.get(commit, ()))
            for p in parents:
                keys |= out.get(p, frozenset())
            out[commit] = frozenset(keys)
        return out

    def unknown_changes(self) -> frozenset[str]:
        return frozenset(k for k, cs in self.carriers().items() if not cs)

    # --- commits and their files --------------------------------------------------------

    def rev_list(self, spec: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """(commit, parents) of a revision range, oldest first (GitError: a bad range)."""
        out = self.git("rev-list", "--topo-order", "--reverse", "--parents", *spec, "--")
        return [(c, tuple(ps)) for c, *ps in (line.split() for line in out.splitlines())]

    def describe(self, commit: str) -> tuple[str, str]:
        """(upstream id or the commit itself, subject) of a commit."""
        body = self.git("log", "-1", "--format=%B", commit)
        up = _UPSTREAM.findall(body)
        subject = body.strip().splitlines()[0] if body.strip() else ""
        return (up[-1] if up else commit), subject

    def materialise(self, rev: str, dest: Path) -> None:
        """Write the files of ``rev`` a tree build reads into the folder ``dest``."""
        names = set(self.git("ls-tree", "--name-only", rev).split())
        paths = [p for p in TREE_PATHS if p in names]
        proc = subprocess.run(
            ["git", "-C", str(self.root), "archive", "--format=tar", rev, "--", *paths],
            capture_output=True,
        )
        if proc.returncode:
            raise GitError(_first(proc.stderr.decode(errors="replace"), "git archive"))
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            tar.extractall(dest, filter="data")


def _history_rules(present: frozenset[str], unknown: frozenset[str]) -> HistoryRules:
    if SEED_KEY not in present and SEED_KEY not in unknown:
        return HistoryRules(None, frozenset(), frozenset(unknown))
    changes = frozenset(k for k in present if k != SEED_KEY)
    return HistoryRules(rules_of(changes), changes, frozenset(k for k in unknown if k != SEED_KEY))


def rules_of_mask(mask: frozenset[str], unknown: frozenset[str]) -> HistoryRules:
    """``HistoryRules`` of a commit from its ``Repo.masks`` entry."""
    return _history_rules(mask, unknown)


@functools.lru_cache(maxsize=16)
def _carriers(root: Path, state: str) -> dict[str, frozenset[str]]:
    """``Repo.carriers``, once per repository state: in memory, and in the build cache."""
    cache = _cache_file(state, root)
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            return {k: frozenset(v) for k, v in data.items()}
        except (OSError, ValueError):
            pass
    found = Repo(root)._find_carriers()
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({k: sorted(v) for k, v in found.items()}))
        except OSError:
            pass  # a read-only cache only costs the next run the search
    return found


def _cache_file(state: str, root: Path) -> Path | None:
    ids = hashlib.sha256(repr(sorted(_ids().items())).encode()).hexdigest()[:12]
    key = hashlib.sha256(f"{root}\0{state}\0{ids}".encode()).hexdigest()[:24]
    return cache_dir() / "qemu-tree" / "carriers" / f"{key}.json"


def _run(root: Path, *args: str, input: str | None = None) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, input=input
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    if proc.returncode:
        raise GitError(_first(proc.stderr, f"git {args[0]}"))
    return proc.stdout


def _first(stderr: str, what: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[0] if lines else f"{what} failed"
