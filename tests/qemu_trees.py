# SPDX-License-Identifier: GPL-2.0-or-later
"""The shared partial QEMU trees, found relative to the repository root.

``<repo>/../shared/qemu-trees`` (overridable by $RECVMAP_QEMU_TREES) holds one folder per
release; a tree's release is "v" + the first line of its VERSION file. ``TREES`` maps
release -> path; ``SKIP_REASON`` explains an empty ``TREES``.
"""

from __future__ import annotations

import os
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

# QEMU's history of the in-scope files (every release and release candidate tagged; each
# commit's message ends with "Upstream-commit: <id>"), a git bundle beside the trees.
BUNDLE = Path(
    os.environ.get("RECVMAP_QEMU_BUNDLE") or REPO.parent / "shared" / "qemu-history" / "qemu.bundle"
)
BUNDLE_SKIP = f"no QEMU history bundle at {BUNDLE} (set RECVMAP_QEMU_BUNDLE to qemu.bundle)"


def version_key(tag: str) -> tuple[int, ...]:
    """``v3.1.0-rc2`` -> (3, 1, 0, 0, 2), ``v3.1.0`` -> (3, 1, 0, 1, 0): rcs before the release."""
    base, _, rc = tag.lstrip("v").partition("-rc")
    return (*(int(x) for x in base.split(".")), 0 if rc else 1, int(rc or 0))


def bundle_tags(first: str = "v2.11.0-rc0", last: str = "v10.1.3") -> list[str]:
    """The release and release-candidate tags of the bundle from ``first`` to ``last``, in
    version order (read from the bundle's refs: no clone needed)."""
    import subprocess

    if not BUNDLE.is_file():
        return []
    heads = subprocess.run(
        ["git", "bundle", "list-heads", str(BUNDLE)], capture_output=True, text=True, check=True
    ).stdout
    tags = [line.split("refs/tags/")[1] for line in heads.splitlines() if "refs/tags/v" in line]
    lo, hi = version_key(first), version_key(last)
    return sorted((t for t in tags if lo <= version_key(t) <= hi), key=version_key)


class History:
    """A clone of the bundle and the trees of its revisions, each written once (git archive)."""

    def __init__(self, root: Path) -> None:
        import subprocess

        self.root = root
        self.git = root / "qemu-history"
        subprocess.run(["git", "clone", "-q", str(BUNDLE), str(self.git)], check=True)

    def commit(self, upstream: str) -> str:
        """The bundle commit whose message names the upstream commit ``upstream`` (a prefix)."""
        import subprocess

        found = subprocess.run(
            ["git", "-C", str(self.git), "log", "--all", "--format=%H"]
            + [f"--grep=Upstream-commit: {upstream}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(found) == 1, f"upstream {upstream}: {found}"
        return found[0]

    def tree(self, rev: str) -> Path:
        """The files of revision ``rev`` (a tag or a commit) in a folder of their own."""
        import subprocess

        out = self.root / "trees" / rev.replace("/", "_")
        if not out.is_dir():
            out.mkdir(parents=True)
            archive = subprocess.run(
                ["git", "-C", str(self.git), "archive", rev], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
        return out
