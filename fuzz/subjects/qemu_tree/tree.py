# SPDX-License-Identifier: GPL-2.0-or-later
"""A QEMU source tree: is it one, which rules judge it, and where each ABI function lives.

``QemuTree.open(DIR)`` checks that DIR looks like QEMU (a VERSION file and QEMU's bitmap
headers) and has the files the bitmap layer is built from; a folder that does not raises
``TreeError`` with one line saying what is missing. A full checkout and a partial tree with
QEMU's paths are the same to it.

The tree's rules are chosen once, when it is opened (``choose_rules``): by its history when
DIR is the top of a git checkout (the release changes whose commits are ancestors of HEAD,
``repo.py``), else by VERSION with QEMU's conventions (``pymodel.releases.version_rules``:
a snapshot between releases is judged as one of them, and the phrase says it is ambiguous).
``QemuTree.how`` is that phrase, for the first line a command prints.

``inventory(tree)`` says, for each function of the bitmap ABI (``qemu_ref.h``), where it
comes from: ``file:line`` of a definition in util/bitmap.c or util/bitops.c (exported as
compiled), ``glue`` for a ``static inline`` of include/qemu/bitops.h or bitmap.h (exported
by our generated wrapper), or ``absent`` (the release does not have it: never exported,
so the engine skips it). The search reads the C text with comments blanked out; a
definition is a line that starts with the return type and the name, whose parameter list
is followed by ``{``, as QEMU's coding style writes them.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from recvmap.pymodel.releases import Rules, Version, parse_version, rules_of, version_rules
from recvmap.qemu_ref.loader import abi

from .repo import TREE_PATHS, GitError, Repo

BITMAP_HEADER = "qemu_ref.h"  # the ABI header of the bitmap layer
IDENTITY = "qref_bits_per_long"  # our library marker: not a QEMU function
FREE = "qref_bitmap_free"  # ours: frees a map of bitmap_new (QEMU calls g_free)
GUARD = "qref_set_guard"  # ours: guard pages for our C's own maps (a tree's come from glib)
# Where the bitmap layer's functions are looked for, in this order.
SOURCES = ("util/bitmap.c", "util/bitops.c")
HEADERS = ("include/qemu/bitops.h", "include/qemu/bitmap.h")


class TreeError(ValueError):
    """DIR is not a usable QEMU tree; the message is one line naming DIR and the reason."""


@dataclass(frozen=True)
class QemuTree:
    """A checked QEMU tree: its root folder, VERSION, and the rules that judge it.

    ``rules`` is None when the tree predates the received-page bitmap; ``how`` says how
    the rules were chosen ("by history (git, ...)", "by VERSION 2.12.91 = ...").
    """

    root: Path
    version: Version
    rules: Rules | None
    how: str

    @classmethod
    def open(cls, path: str | Path, rules: Rules | None = None, how: str = "") -> QemuTree:
        """Check the tree at ``path``; its rules are ``rules`` when given (the caller knows
        its history, e.g. ``recvmap history``), else chosen here (``choose_rules``)."""
        root = Path(path)
        if not root.is_dir():
            raise TreeError(f"{path}: no such folder")
        root = root.resolve()
        check_files(root, path)
        version = root / "VERSION"
        if not version.is_file() or not (root / HEADERS[0]).is_file():
            what = "VERSION" if not version.is_file() else HEADERS[0]
            raise TreeError(f"{path}: not a QEMU source tree (no {what})")
        lines = version.read_text(errors="replace").splitlines()
        try:
            v = parse_version(lines[0] if lines else "")
        except ValueError:
            raise TreeError(f"{path}: not a QEMU source tree (VERSION is not N.N.N)") from None
        for rel in (*HEADERS, *SOURCES):
            if not (root / rel).is_file():
                raise TreeError(f"{path}: {rel} missing: the bitmap layer cannot be built")
        if rules is None and not how:
            rules, how = choose_rules(root, v)
        return cls(root, v, rules, how)

    @property
    def release(self) -> str:
        """The tree's version as a tag-like label ("v" + VERSION): for names, not rules."""
        return "v" + self.version.text

    @property
    def release_tuple(self) -> tuple[int, int, int]:
        return self.version.tuple

    def text(self, rel: str) -> str:
        return (self.root / rel).read_text(errors="replace")


FILE_MAX = 16 << 20  # bytes of one file of a tree (QEMU's largest C file is ~0.3 MB)
ENTRIES_MAX = 200_000  # files and folders a build may read (a full checkout: ~6,000)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_files(root: Path, shown: str | Path) -> None:
    """What a build of the tree at ``root`` may read (``repo.TREE_PATHS``) is regular files
    of at most FILE_MAX bytes and folders, a symlink pointing inside the tree: anything
    else raises TreeError naming it (``shown`` is the tree as the user named it). A FIFO
    or a device there blocked the compiler or made it grow without end."""
    count = 0
    stack = [root / rel for rel in TREE_PATHS]
    while stack:
        p = stack.pop()
        rel = p.relative_to(root)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue  # a part this tree does not have
        except OSError as err:
            raise TreeError(f"{shown}: {rel}: {err.strerror or err}") from None
        count += 1
        if count > ENTRIES_MAX:
            raise TreeError(f"{shown}: more than {ENTRIES_MAX} files where a build reads")
        if stat.S_ISLNK(st.st_mode):
            target = Path(os.path.realpath(p))
            if not target.is_relative_to(root):
                raise TreeError(f"{shown}: {rel} is a symlink to outside the tree")
            try:
                st = os.stat(p)
            except OSError as err:
                raise TreeError(f"{shown}: {rel}: {err.strerror or err}") from None
            if stat.S_ISDIR(st.st_mode):
                continue  # its target is checked where it lies in the tree
        if stat.S_ISDIR(st.st_mode):
            try:
                stack.extend(Path(e.path) for e in os.scandir(p))
            except OSError as err:
                raise TreeError(f"{shown}: {rel}: {err.strerror or err}") from None
        elif stat.S_ISREG(st.st_mode):
            if st.st_size > FILE_MAX:
                raise TreeError(f"{shown}: {rel}: {st.st_size} bytes, more than {FILE_MAX}")
        else:
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            raise TreeError(f"{shown}: {rel} is {kind}, not a regular file")


def choose_rules(root: Path, version: Version) -> tuple[Rules | None, str]:
    """The rules of the tree at ``root`` and how they were chosen (one phrase).

    By history when ``root`` is the top of a git checkout; a change the repository does
    not know (a shallow clone) is taken from VERSION. Otherwise by VERSION alone.
    """
    by_version = version_rules(version)
    repo = Repo.at(root)
    if repo is not None:
        try:
            seen = repo.rules_at("HEAD")
        except GitError:
            seen = None
        if seen is not None:
            if seen.rules is None or not seen.unknown:
                return seen.rules, seen.text
            guessed = {k for k in seen.unknown if by_version.rules and by_version.rules.has(k)}
            rules = rules_of(seen.present | guessed)
            return rules, f"{seen.text}; the unknown ones by VERSION {by_version.text}"
    return by_version.rules, f"by VERSION {by_version.text}"


@dataclass(frozen=True)
class Origin:
    """Where one ABI function of a built tree comes from.

    ``kind`` is ``"tree"`` (``path``:``line`` defines it, compiled as is), ``"glue"`` (our
    wrapper exports a ``static inline`` at ``path``:``line``, or ``path`` is empty for a
    glue-only function such as the library marker) or ``"absent"``.
    """

    function: str
    kind: str
    path: str = ""
    line: int = 0
    note: str = ""

    @property
    def where(self) -> str:
        if self.kind == "tree":
            return f"{self.path}:{self.line}"
        if self.kind == "glue":
            if self.path:
                return f"glue (inline in {self.path}:{self.line})"
            return f"glue ({self.note})" if self.note else "glue"
        return "absent"


def blank_comments(text: str) -> str:
    """``text`` with C comments replaced by spaces (newlines kept: line numbers hold)."""

    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    return re.sub(r"/\*.*?\*/|//[^\n]*", blank, text, flags=re.S)


_PREFIX = r"(?P<static>static\s+)?(?:inline\s+)?(?:const\s+)?(?:(?:unsigned|signed|struct)\s+)?"


def find_definition(text: str, name: str) -> tuple[int, bool] | None:
    """(line, is_static) of the definition of function ``name`` in C ``text``, else None."""
    pattern = re.compile(rf"^{_PREFIX}[A-Za-z_]\w*(?:\s+long)?[\s\*]+{re.escape(name)}\s*\(", re.M)
    for m in pattern.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        rest = text[i:].lstrip()
        if rest.startswith("{"):
            return text.count("\n", 0, m.start()) + 1, m["static"] is not None
    return None


def inventory(tree: QemuTree, header: str = BITMAP_HEADER) -> list[Origin]:
    """Where each function of ``header``'s ABI comes from in ``tree`` (ABI order)."""
    texts = {rel: blank_comments(tree.text(rel)) for rel in (*SOURCES, *HEADERS)}
    out = []
    for decl in abi():
        if decl.header != header:
            continue
        if decl.name == IDENTITY:
            out.append(Origin(decl.name, "glue", note="recvmap's word-width marker"))
            continue
        if decl.name == FREE:
            out.append(
                Origin(decl.name, "glue", note="recvmap's free of bitmap_new's maps: g_free")
            )
            continue
        if decl.name == GUARD:
            note = "recvmap's guard pages for our C's maps; a tree's maps come from g_malloc0"
            out.append(Origin(decl.name, "absent", note=note))
            continue
        out.append(locate(decl.name, texts))
    return out


def locate(name: str, texts: dict[str, str]) -> Origin:
    """The origin of ``name`` among the comment-blanked ``texts`` (relative path -> text)."""
    for rel in SOURCES:
        found = find_definition(texts[rel], name)
        if found is not None and not found[1]:
            return Origin(name, "tree", rel, found[0])
    for rel in HEADERS:
        found = find_definition(texts[rel], name)
        if found is not None and found[1]:
            return Origin(name, "glue", rel, found[0])
    return Origin(name, "absent")
