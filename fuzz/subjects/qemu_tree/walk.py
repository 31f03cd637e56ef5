# SPDX-License-Identifier: GPL-2.0-or-later
"""The commits of a git repository worth judging: those that change what recvmap runs.

``plan_walk(repo, range)`` lists the commits of a revision range (oldest first) and, for
each, whether ``recvmap history`` judges it. A commit is judged when it contains the seed
commit (f9494614898f) and its *key* is new in the walk: the key is the digest of the text
of every in-scope definition and the set of release changes the commit contains
(``Repo.masks``). So each state of the range is judged once, at its first commit: a
commit that changes neither what is compiled nor the rules that judge it is skipped, so
is a merge whose result equals one of its parents (one that combines two changed sides
is judged) and a revert back to a state judged before; the first commit of a range is
judged even when it changes nothing in scope (its state is new to the walk: a patch
series' base, the commit ``git bisect`` or a user names).

In-scope definitions (``SCOPE``): every definition (function or macro) of util/bitmap.c,
util/bitops.c, include/qemu/bitops.h and include/qemu/bitmap.h; the definitions of
include/qemu/host-utils.h and include/qemu/atomic.h those four files name; the received-
bitmap functions and helpers ``extract.py`` takes from the tree (``RAM_FUNCTIONS``,
``HELPERS``, each in the first of its files that defines it). A definition's text is
compared without its comments and with every run of white space as one space, so a
commit that only reflows or comments code is skipped.

The files are read from git objects (``git cat-file --batch``), each version parsed once
(tree-sitter, ``extract.parse_definitions``) and its digests kept in the build cache by
blob id: planning a walk of the whole bundle (8,104 commits, about 1,150 file versions to
parse) takes about a minute the first time and seconds after, never a checkout per commit.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..build import cache_dir
from .extract import HELPERS, RAM_FUNCTIONS, parse_definitions
from .repo import SEED_KEY, HistoryRules, Repo, rules_of_mask

PREDATES = "predates the received-page bitmap"
WHOLE = ("util/bitmap.c", "util/bitops.c", "include/qemu/bitops.h", "include/qemu/bitmap.h")
NAMED = ("include/qemu/host-utils.h", "include/qemu/atomic.h")
WANTED = (*RAM_FUNCTIONS, *HELPERS)
PATHS: tuple[str, ...] = tuple(
    dict.fromkeys((*WHOLE, *NAMED, *(f for w in WANTED for f in w.files)))
)


@dataclass(frozen=True)
class CommitPlan:
    """One commit of a walk: judged or not (``why`` says why not), and its rules."""

    commit: str
    parents: tuple[str, ...]
    rules: HistoryRules
    scope: str  # digest of the in-scope definitions
    judge: bool
    why: str = ""


_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
FORMAT = "recvmap-scope-1"  # bump when what a blob's entry holds changes


def _normal(text: str) -> str:
    return " ".join(_COMMENT.sub(" ", text).split())


class Scope:
    """The in-scope definitions of commits, read from git objects.

    Each file version (blob) is parsed once: memo in memory, and on disk in the build
    cache (a blob id names its content, so an entry never goes stale).
    """

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._defs: dict[str, dict[str, tuple[str, str]]] = {}  # blob -> name -> (kind, sha)
        self._words: dict[str, frozenset[str]] = {}  # blob of a WHOLE file -> identifiers
        self.cache = cache_dir() / "qemu-tree" / "scope"

    def blobs(self, commits: Sequence[str]) -> dict[str, dict[str, str]]:
        """commit -> path -> blob id of the in-scope files it has."""
        lines = [f"{c}:{p}" for c in commits for p in PATHS]
        answer = self.repo.git(
            "cat-file", "--batch-check=%(objectname) %(objecttype)", input="\n".join(lines) + "\n"
        ).splitlines()
        out: dict[str, dict[str, str]] = {c: {} for c in commits}
        for line, request in zip(answer, lines, strict=True):
            parts = line.split()
            if len(parts) == 2 and parts[1] == "blob":
                commit, path = request.split(":", 1)
                out[commit][path] = parts[0]
        return out

    def _entry(self, blob: str) -> Path:
        return self.cache / blob[:2] / f"{blob}.json"

    def _load(self, blobs: dict[str, bool]) -> None:
        """Parse (or read from the cache) each blob; ``blobs``: blob -> words wanted."""
        todo = []
        for blob, words in blobs.items():
            if blob in self._defs:
                continue
            try:
                entry = json.loads(self._entry(blob).read_text())
                if entry.get("format") != FORMAT or (words and "words" not in entry):
                    raise ValueError(blob)
            except (OSError, ValueError):
                todo.append(blob)
                continue
            self._defs[blob] = {k: (v[0], v[1]) for k, v in entry["defs"].items()}
            if words:
                self._words[blob] = frozenset(entry["words"])
        if not todo:
            return
        proc = subprocess.run(
            ["git", "-C", str(self.repo.root), "cat-file", "--batch"],
            input=("\n".join(todo) + "\n").encode(),
            capture_output=True,
            check=True,
        )
        data, pos = proc.stdout, 0
        for blob in todo:
            end = data.index(b"\n", pos)
            size = int(data[pos:end].split()[2])
            content = data[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1
            defs = {
                name: (ds[0].kind, hashlib.sha256(_normal(ds[0].text).encode()).hexdigest())
                for name, ds in parse_definitions(content).items()
            }
            self._defs[blob] = defs
            entry: dict[str, object] = {"format": FORMAT, "defs": defs}
            if blobs[blob]:
                text = _COMMENT.sub(" ", content.decode("utf-8", "replace"))
                self._words[blob] = frozenset(re.findall(r"[A-Za-z_]\w*", text))
                entry["words"] = sorted(self._words[blob])
            try:
                self._entry(blob).parent.mkdir(parents=True, exist_ok=True)
                self._entry(blob).write_text(json.dumps(entry))
            except OSError:
                pass  # a read-only cache only costs the next walk the parse

    def digests(self, commits: Sequence[str]) -> dict[str, str]:
        """commit -> digest of its in-scope definitions."""
        files = self.blobs(commits)
        wanted: dict[str, bool] = {}
        for f in files.values():
            for path, blob in f.items():
                wanted[blob] = wanted.get(blob, False) or path in WHOLE
        self._load(wanted)
        out = {}
        for c, f in files.items():
            out[c] = hashlib.sha256(repr(self.definitions(f)).encode()).hexdigest()
        return out

    def definitions(self, files: dict[str, str]) -> list[tuple[str, str, str]]:
        """(path, name, text digest) of the in-scope definitions of one commit's files."""
        found: list[tuple[str, str, str]] = []
        named: set[str] = set()
        for path in WHOLE:
            blob = files.get(path)
            if blob is None:
                continue
            found += [(path, n, sha) for n, (_, sha) in sorted(self._defs[blob].items())]
            named |= self._words[blob]
        for path in NAMED:
            blob = files.get(path)
            if blob is not None:
                defs = self._defs[blob]
                found += [(path, n, defs[n][1]) for n in sorted(named & defs.keys())]
        for w in WANTED:
            for path in w.files:
                blob = files.get(path)
                entry = self._defs[blob].get(w.name) if blob is not None else None
                if entry is not None and entry[0] == w.kind:
                    found.append((path, w.name, entry[1]))
                    break
        return found


def plan_walk(repo: Repo, spec: Sequence[str]) -> list[CommitPlan]:
    """The commits of the revision range ``spec`` (oldest first), each judged or not."""
    listed = repo.rev_list(spec)
    outside = sorted({p for _, ps in listed for p in ps} - {c for c, _ in listed})
    everything = [c for c, _ in listed] + outside
    masks = repo.masks(everything)
    unknown = repo.unknown_changes()
    seeded = SEED_KEY in unknown or None
    wanted = {c for c, _ in listed if seeded or SEED_KEY in masks.get(c, ())}
    wanted |= {p for c, ps in listed if c in wanted for p in ps}  # compared with their parents
    digests = dict.fromkeys(everything, "")
    digests.update(Scope(repo).digests([c for c in everything if c in wanted]))
    plans = []
    seen: dict[tuple[str, frozenset[str]], str] = {}  # key -> the first commit with it
    for commit, parents in listed:
        mask = masks.get(commit, frozenset())
        rules = rules_of_mask(mask, unknown)
        key = (digests[commit], mask)
        if SEED_KEY not in mask and SEED_KEY not in unknown:
            plans.append(CommitPlan(commit, parents, rules, key[0], False, PREDATES))
        elif key in seen:
            same = any((digests[p], masks.get(p, frozenset())) == key for p in parents)
            why = (
                "no in-scope change" if same else f"same definitions and rules as {seen[key][:12]}"
            )
            plans.append(CommitPlan(commit, parents, rules, key[0], False, why))
        else:
            seen[key] = commit
            plans.append(CommitPlan(commit, parents, rules, key[0], True))
    return plans
