# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's history of the in-scope files (a git bundle), found relative to the repository root.

``<repo>/../shared/qemu-history/qemu.bundle`` (the folder overridable by
$RECVMAP_QEMU_HISTORY) holds upstream QEMU's history of the files around the received-page
bitmap, every commit naming its upstream id (``Upstream-commit:``). ``clone(dest)`` makes a
checkout of it; ``SKIP_REASON`` explains a missing bundle.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("RECVMAP_QEMU_HISTORY") or REPO.parent / "shared" / "qemu-history")
BUNDLE = ROOT / "qemu.bundle"
SKIP_REASON = f"no QEMU history at {BUNDLE} (set RECVMAP_QEMU_HISTORY to the folder of qemu.bundle)"


def available() -> bool:
    return BUNDLE.is_file()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def clone(dest: Path) -> Path:
    """A checkout of the bundle at ``dest`` (its HEAD: v10.1.3)."""
    subprocess.run(["git", "clone", "-q", str(BUNDLE), str(dest)], check=True)
    git(dest, "config", "user.email", "recvmap-tests@example.invalid")
    git(dest, "config", "user.name", "recvmap tests")
    return dest


def upstream(repo: Path, commit: str) -> str:
    """The bundle's commit whose message names upstream ``commit`` (a prefix)."""
    found = git(repo, "log", "--all", "--format=%H", f"--grep=Upstream-commit: {commit}")
    lines = found.splitlines()
    assert len(lines) == 1, (commit, lines)
    return lines[0]


def checkout(bundle: Path, rev: str, dest: Path) -> Path:
    """A separate checkout of ``rev`` in a clone (a worktree of it: its own HEAD)."""
    git(bundle, "worktree", "add", "-q", "--detach", str(dest), rev)
    return dest


def version_key(tag: str) -> tuple[int, ...]:
    """``v3.1.0-rc2`` -> (3, 1, 0, 0, 2), ``v3.1.0`` -> (3, 1, 0, 1, 0): rcs before the release."""
    base, _, rc = tag.lstrip("v").partition("-rc")
    return (*(int(x) for x in base.split(".")), 0 if rc else 1, int(rc or 0))


def tags(first: str = "v2.11.0-rc0", last: str = "v10.1.3") -> list[str]:
    """The release and release-candidate tags of the bundle from ``first`` to ``last``, in
    version order, read from the bundle's refs (no clone); none without the bundle."""
    if not available():
        return []
    heads = subprocess.run(
        ["git", "bundle", "list-heads", str(BUNDLE)], capture_output=True, text=True, check=True
    ).stdout
    found = [line.split("refs/tags/")[1] for line in heads.splitlines() if "refs/tags/v" in line]
    lo, hi = version_key(first), version_key(last)
    return sorted((t for t in found if lo <= version_key(t) <= hi), key=version_key)
