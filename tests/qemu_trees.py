# SPDX-License-Identifier: GPL-2.0-or-later
"""The shared partial QEMU trees (test data), found relative to the repository root.

They live beside the checkout in ``../shared/qemu-trees`` (CI lays shared/ there), or
where ``$RECVMAP_QEMU_TREES`` says. ``TREES`` maps each release present to its folder;
tests that need them skip with ``SKIP_REASON`` only when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("RECVMAP_QEMU_TREES") or REPO.parent / "shared" / "qemu-trees")
RELEASES = ("v2.12.0", "v3.0.0", "v5.2.0", "v8.2.0", "v10.1.0")
TREES: dict[str, Path] = {r: ROOT / r for r in RELEASES if (ROOT / r / "VERSION").is_file()}
SKIP_REASON = (
    f"the shared QEMU trees are absent ({ROOT} has none of {', '.join(RELEASES)}; "
    "set RECVMAP_QEMU_TREES to their folder)"
)
