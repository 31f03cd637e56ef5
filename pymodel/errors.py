# SPDX-License-Identifier: GPL-2.0-or-later
"""Calls outside QEMU's domain, and the checks that find them.

A model function checks all its preconditions before it changes anything and raises
``PreconditionError`` naming the QEMU rule it would break. The classes of rules:
an argument not representable in its C type (``long`` / ``unsigned long`` of the layout's
width); a QEMU assert (the C reference aborts there); nbits == 0 for the inline
whole-bitmap helpers; a word read or written past the allocation of an array; arrays of
different layouts (word width, byte order) in one call, which no single host can have.

An argument of the wrong Python type (a str or None where a map is expected, a float or a
bool where C has an integer) is not a call QEMU could receive at all: it raises
``ArgumentTypeError``, a ``TypeError`` naming the argument. ``checked`` is the one place
that enforces both kinds of rule for the public functions, from their annotations, before
the function body runs -- so a rejected call changes nothing.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar

from .words import Layout, Words

__all__ = [
    "ArgumentTypeError",
    "PreconditionError",
    "RecoveryError",
    "check_arguments",
    "check_buffer",
    "check_long",
    "check_ulong",
    "check_words",
    "checked",
]

P = ParamSpec("P")
R = TypeVar("R")


class PreconditionError(ValueError):
    """A call QEMU does not define: ``function`` broke ``rule`` through ``argument``."""

    def __init__(self, function: str, argument: str, rule: str) -> None:
        super().__init__(f"{function}: {argument}: {rule}")
        self.function = function
        self.argument = argument
        self.rule = rule

    def __reduce__(self) -> tuple[type[PreconditionError], tuple[str, str, str]]:
        return (PreconditionError, (self.function, self.argument, self.rule))


class ArgumentTypeError(TypeError):
    """``function`` got a Python value of the wrong type for ``argument``."""

    def __init__(self, function: str, argument: str, expected: str, got: str) -> None:
        super().__init__(f"{function}: {argument}: expected {expected}, got {got}")
        self.function = function
        self.argument = argument
        self.expected = expected
        self.got = got

    def __reduce__(self) -> tuple[type[ArgumentTypeError], tuple[str, str, str, str]]:
        return (ArgumentTypeError, (self.function, self.argument, self.expected, self.got))


# What each annotation of a public model function demands of its argument.
_EXPECTED = {
    "int": "an int (C long / unsigned long; bool and float are not)",
    "Words": "a bitmap (recvmap.pymodel.Words)",
    "Layout": "a recvmap.pymodel.Layout",
}


def check_arguments(
    function: str,
    spec: tuple[tuple[str, str], ...],
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
) -> None:
    """Type and layout checks of one call; ``spec`` is (name, annotation) per parameter.

    ints must be ``int`` and not ``bool``; maps must be ``Words``, all of one layout
    (PreconditionError otherwise: QEMU runs on one host with one ``unsigned long``).
    Parameters the call leaves to their defaults are not checked.
    """
    first: tuple[str, Layout] | None = None
    for i, (name, kind) in enumerate(spec):
        if i < len(args):
            value = args[i]
        elif name in kwargs:
            value = kwargs[name]
        else:
            continue
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ArgumentTypeError(function, name, _EXPECTED[kind], type(value).__name__)
        elif kind == "Words":
            if not isinstance(value, Words):
                raise ArgumentTypeError(function, name, _EXPECTED[kind], type(value).__name__)
            if first is None:
                first = (name, value.layout)
            elif value.layout != first[1]:
                raise PreconditionError(
                    function,
                    name,
                    f"{name} is {value.layout.name} but {first[0]} is {first[1].name} "
                    "(the arrays of one call share one host's unsigned long)",
                )
        elif kind == "Layout" and not isinstance(value, Layout):
            raise ArgumentTypeError(function, name, _EXPECTED[kind], type(value).__name__)


def checked(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``check_arguments`` from ``fn``'s annotations before every call.

    A call with every parameter given by position, each int an ``int`` (not a bool nor a
    subclass) and each map a ``Words`` of one layout, passes ``check_arguments``; such a
    call -- every call of the fuzzing engine -- is recognised by the quick test below and
    skips it. Any other call goes through ``check_arguments`` itself, which accepts or
    names the broken rule.
    """
    spec = tuple((p.name, str(p.annotation)) for p in inspect.signature(fn).parameters.values())
    name = fn.__name__
    nparams = len(spec)
    ints = tuple(i for i, (_, kind) in enumerate(spec) if kind == "int")
    maps = tuple(i for i, (_, kind) in enumerate(spec) if kind == "Words")
    others = any(kind not in ("int", "Words") for _, kind in spec)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        plain = not kwargs and not others and len(args) == nparams
        if plain:  # exact ints, and Words of one layout?
            for i in ints:
                if type(args[i]) is not int:
                    plain = False
            layout = None
            for i in maps:
                words = args[i]
                if type(words) is not Words:
                    plain = False
                elif layout is None:
                    layout = words.layout
                elif words.layout is not layout and words.layout != layout:
                    plain = False
        if not plain:
            check_arguments(name, spec, args, kwargs)
        return fn(*args, **kwargs)

    return call


def check_buffer(function: str, argument: str, value: object) -> bytes:
    """A bytes-like argument (bytes, bytearray, memoryview, any buffer) as bytes."""
    if isinstance(value, bytes):
        return value
    try:
        with memoryview(value) as view:  # type: ignore[arg-type]
            return view.tobytes()
    except TypeError:
        raise ArgumentTypeError(
            function, argument, "a bytes-like object", type(value).__name__
        ) from None


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
    if end > first and (first < 0 or end * words.layout.bytes_per_long > len(words.data)):
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
