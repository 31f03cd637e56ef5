# SPDX-License-Identifier: GPL-2.0-or-later
"""The range of every numeric option: one argparse type that checks it and says it.

Every command (``recvmap fuzz``, ``replay``, ``history``, ``mutants``, the pytest plugin)
takes its numbers through ``number``: a value outside its range, or not a number, is one
line naming the option and the range (argparse's exit status 2), and ``--help`` states
the range (``help_range``). The ranges keep every value inside what the code it reaches
can hold: libFuzzer's flags are C ints (``-timeout``, ``-runs``), ``select`` takes a
timeout below 2**31 ms, and a time budget beyond a month is a typo.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

DAY = 86_400.0
MONTH = 30 * DAY
INT_MAX = 2**31 - 1  # a C int: libFuzzer's -runs and -timeout
SEED_MAX = 2**64 - 1


def _show(v: float) -> str:
    """A range end as people write it: 2**31-1, 2**64-1, 30 days, 0.1."""
    for text, value in (("2**31-1", INT_MAX), ("2**32-1", 2**32 - 1), ("2**64-1", SEED_MAX)):
        if v == value:
            return text
    if v >= 1 << 20 and float(v).is_integer() and int(v) & (int(v) - 1) == 0:
        return f"2**{int(v).bit_length() - 1}"
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def number(
    option: str, kind: type, low: float, high: float, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: ``kind`` (int or float) in [low, high] (``above``: low itself
    excluded); an int option also takes 0x... and 1_000; a float must be finite. The
    message leaves the option's name to argparse ("argument --timeout: must be ...")."""

    def parse(text: str) -> float:
        try:
            value: float = int(text, 0) if kind is int else float(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"must be {what}, {describe(low, high, above)}, not {text!r}"
            ) from None
        if not math.isfinite(value) or value > high or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {describe(low, high, above)}, not {text}")
        return value

    parse.__name__ = option  # argparse names the option in its message with this
    parse.range = describe(low, high, above)  # type: ignore[attr-defined]
    return parse


def describe(low: float, high: float, above: bool = False) -> str:
    """The range as --help and the error line write it: ``1 .. 2**31-1``, ``above 0, at
    most 3600``."""
    if above:
        return f"above {_show(low)}, at most {_show(high)}"
    return f"{_show(low)} .. {_show(high)}"


def help_range(parse: Callable[[str], float]) -> str:
    """The range of a ``number`` type, for the option's help text."""
    return str(getattr(parse, "range", ""))
