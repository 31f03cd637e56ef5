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
