# SPDX-License-Identifier: GPL-2.0-or-later
"""A QEMU source tree as an implementation: QEMU's own code, built with our glue.

- ``tree``: find and check a tree (``QemuTree.open``), its release (VERSION) and where each
  ABI function of ``qemu_ref.h`` is defined in it (``inventory``).
- ``build``: compile the tree's unmodified util/bitmap.c and util/bitops.c with its own
  headers plus our glue (``glue/``) into a library exporting the ABI (``build_tree``), or
  into the replay driver of an emulated host; cached by the content of every file used.
- ``ram`` (optional, part 2): extra units with the received-bitmap functions of the tree's
  migration code (``extra_units(tree)``); without it only the bitmap layer is built.

QEMU's code is read from the user's tree at build time only; nothing of it is shipped.
"""

from __future__ import annotations

from .tree import Origin, QemuTree, TreeError, inventory

__all__ = ["Origin", "QemuTree", "TreeError", "inventory"]
