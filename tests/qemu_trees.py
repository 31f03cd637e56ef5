# SPDX-License-Identifier: GPL-2.0-or-later
"""The shared partial QEMU trees, found relative to the repository root.

``<repo>/../shared/qemu-trees`` (overridable by $RECVMAP_QEMU_TREES) holds one folder per
release; a tree's release is "v" + the first line of its VERSION file. ``TREES`` maps
release -> path; ``SKIP_REASON`` explains an empty ``TREES``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("RECVMAP_QEMU_TREES") or REPO.parent / "shared" / "qemu-trees")


def _release(tree: Path) -> str | None:
    version = tree / "VERSION"
    if not version.is_file():
        return None
    lines = version.read_text().splitlines()
    return "v" + lines[0].strip() if lines else None


def _trees() -> dict[str, Path]:
    if not ROOT.is_dir():
        return {}
    found = {}
    for tree in sorted(p for p in ROOT.iterdir() if p.is_dir()):
        release = _release(tree)
        if release is not None:
            found[release] = tree
    return found


TREES: dict[str, Path] = _trees()
SKIP_REASON = f"no QEMU trees at {ROOT} (set RECVMAP_QEMU_TREES to a folder of QEMU release trees)"


def copy_tree(release: str, dest: Path) -> Path:
    """The files of a shared tree the bitmap layer reads, copied (to be mutated)."""
    src = TREES[release]
    dest.mkdir(parents=True)
    shutil.copy(src / "VERSION", dest / "VERSION")
    shutil.copytree(src / "include", dest / "include")
    shutil.copytree(src / "util", dest / "util")
    return dest
