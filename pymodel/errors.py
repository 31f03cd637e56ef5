# SPDX-License-Identifier: GPL-2.0-or-later
"""Calls outside QEMU's domain, and the checks that find them.

A model function checks all its preconditions before it changes anything and raises
``PreconditionError`` naming the QEMU rule it would break. The classes of rules:
an argument not representable in its C type (``long`` / ``unsigned long`` of the layout's
width); a QEMU assert (the C reference aborts there); nbits == 0 for the inline
whole-bitmap helpers; a word read or written past the allocation of an array.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .words import Layout, Words

__all__ = ["PreconditionError", "RecoveryError", "check_long", "check_ulong", "check_words"]


class PreconditionError(ValueError):
    """A call QEMU does not define: ``function`` broke ``rule`` through ``argument``."""

    def __init__(self, function: str, argument: str, rule: str) -> None:
        super().__init__(f"{function}: {argument}: {rule}")
        self.function = function
        self.argument = argument
        self.rule = rule

    def __reduce__(self) -> tuple[type[PreconditionError], tuple[str, str, str]]:
        return (PreconditionError, (self.function, self.argument, self.rule))


def check_long(function: str, layout: Layout, argument: str, value: int) -> None:
    """value must be a C ``long`` of the layout (QEMU's parameter type)."""
    if not layout.long_min <= value <= layout.long_max:
        raise PreconditionError(
            function,
            argument,
            f"{value} is not a {layout.bits_per_long}-bit long "
            f"(LONG_MIN <= {argument} <= LONG_MAX: the parameter is a C long)",
        )


def check_ulong(function: str, layout: Layout, argument: str, value: int) -> None:
    """value must be a C ``unsigned long`` of the layout (QEMU's parameter type)."""
    if not 0 <= value <= layout.ulong_max:
        raise PreconditionError(
            function,
            argument,
            f"{value} is not a {layout.bits_per_long}-bit unsigned long "
            f"(0 <= {argument} <= ULONG_MAX: the parameter is a C unsigned long)",
        )


def check_words(function: str, argument: str, words: Words, first: int, end: int) -> None:
    """QEMU reads or writes words [first, end) of ``words``: they must be allocated."""
    if end > first and (first < 0 or end > words.nwords):
        raise PreconditionError(
            function,
            argument,
            f"accesses words [{first}, {end}) of an array of {words.nwords} words "
            f"(a word read or written past the allocation)",
        )


class RecoveryError(Exception):
    """A postcopy recovery stream the source rejects (migration/ram.c ram_dirty_bitmap_reload).

    Unlike a PreconditionError this is QEMU behaviour, not a call outside its domain: QEMU
    reports the error and fails, leaving the dirty bitmap untouched. ``ret`` is what the
    release returns through the ABI: -EINVAL (size mismatch, wrong end mark) or -EIO
    (failed read) before v8.2.0, -1 (false, with an Error) since; ``reason`` is the text
    after the function name.
    """

    def __init__(self, function: str, block: str, reason: str, ret: int) -> None:
        super().__init__(f"{function}: {reason}")
        self.function = function
        self.block = block
        self.reason = reason
        self.ret = ret

    def __reduce__(self) -> tuple[type[RecoveryError], tuple[str, str, str, int]]:
        return (RecoveryError, (self.function, self.block, self.reason, self.ret))
