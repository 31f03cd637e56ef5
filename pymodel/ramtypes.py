# SPDX-License-Identifier: GPL-2.0-or-later
"""What the ram layer (ramblock) and postcopy recovery (recovery) both need: the side of the
migration and C's signed long. Imports nothing of the model, so that recovery can use them
without importing ramblock (ramblock imports recovery, never the other way).
"""

from __future__ import annotations

import enum


class Side(enum.Enum):
    """Which end of the migration a process is: only the destination has receivedmaps."""

    DESTINATION = "destination"
    SOURCE = "source"


def c_long(value: int, bits: int) -> int:
    """``value`` converted to a signed ``bits``-bit C integer (gcc: modulo 2**bits)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value
