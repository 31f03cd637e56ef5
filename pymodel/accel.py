# SPDX-License-Identifier: GPL-2.0-or-later
"""Optional accelerators: the plain rule's result, computed by an installed package.

The model needs nothing beyond the standard library; every rule is written in plain Python
in the module that states it. An accelerator is used only where the plain code has no
tight loop in the standard library, only when its package is importable, and it must give
exactly the plain code's result (tests/test_accel.py checks both on the same data).

- ``popcount(data, b0, b1)``: the number of set bits in bytes [b0, b1) of ``data``, with
  NumPy's ``bitwise_count`` (NumPy 2.0 and later) over the 8-byte-aligned interior. The
  standard library's best (translate each byte to its popcount, add with adler32) runs at
  about 3x our C's popcount on a 2^28-bit map; NumPy runs below our C.

``RECVMAP_NO_ACCEL=1`` in the environment, or ``use(False)``, runs the plain code;
``ACTIVE`` holds what is in use.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any

Popcount = Callable[[bytearray, int, int], int]


def _numpy_popcount() -> Popcount | None:
    """``popcount`` on NumPy's bitwise_count, or None without NumPy. NumPy is imported at
    the first large count, not with the model (it costs more than the model's own import)."""
    if importlib.util.find_spec("numpy") is None:
        return None
    np: Any = None

    def popcount(data: bytearray, b0: int, b1: int) -> int:
        nonlocal np
        if np is None:
            np = importlib.import_module("numpy")
        a0, a1 = (b0 + 7) & ~7, b1 & ~7  # popcount does not care about byte order
        if a1 <= a0 or not hasattr(np, "bitwise_count"):  # NumPy 1 has no bitwise_count
            return int.from_bytes(data[b0:b1], "little").bit_count()
        words = np.frombuffer(data, dtype=np.uint64, count=(a1 - a0) >> 3, offset=a0)
        edges = data[b0:a0] + data[a1:b1]
        ones = np.bitwise_count(words).sum(dtype=np.uint64)
        return int(ones) + int.from_bytes(edges).bit_count()

    return popcount


class Accelerators:
    """The accelerators in use (None: the plain code runs)."""

    def __init__(self, popcount: Popcount | None) -> None:
        self.popcount = popcount


_AVAILABLE = _numpy_popcount()
ACTIVE = Accelerators(None if os.environ.get("RECVMAP_NO_ACCEL") else _AVAILABLE)


def use(on: bool) -> bool:
    """Turn the accelerators on (when installed) or off; whether they are now in use."""
    ACTIVE.popcount = _AVAILABLE if on else None
    return ACTIVE.popcount is not None


def in_use() -> str:
    """A line for reports: which accelerators run."""
    if ACTIVE.popcount is None:
        return "none (standard library only)"
    return "numpy bitwise_count"
