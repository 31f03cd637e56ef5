# SPDX-License-Identifier: GPL-2.0-or-later
"""Programs of QEMU operations: the one format every producer and the engine share.

A program fixes a memory layout, a few word arrays with their initial words, and a list of
operations named after QEMU's functions. Arguments are integers or references to arrays
(``Ref``). The JSON form is what vector files, reproducers and ``recvmap replay`` use::

    {"layer": "bitmap", "bits_per_long": 64, "big_endian": false,
     "arrays": [{"nwords": 2, "words": {"1": "0x8000000000000000"}}],
     "ops": [["bitmap_set", ["@0", 3, 70]], ["find_next_bit", ["@0", 128, 0]]]}

Initial contents are word VALUES, so one program means the same on every byte order.
An array may be allocated by the implementation (``"alloc"``, see ``Alloc``): its words
are then the model's result of that allocation, compared before the first operation.
The ram and recovery layers put their RAM blocks and page sizes in ``setup``; there ``@k``
is block k, and a plain string argument is a C string (a block name).
``release`` (optional, a QEMU tag such as "v3.0.0") is the release the program runs at;
a reproducer carries the release it was found at. Without it a program runs at the
release asked for (``recvmap replay --release``), by default the newest.
``guard`` (optional, "after" or "before") is the side of the inaccessible page the arrays
of the implementation sit against (``recvmap.qemu_ref.loader.set_guard``): a fuzzer's
program carries the side it ran with, and a replay uses it; without it, a replay tries
both sides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from recvmap.pymodel.words import Layout

Arg = int | str  # JSON: an int, "@k" for array (or block) k, any other string a C string


@dataclass(frozen=True)
class Ref:
    """Array number ``index`` of the program."""

    index: int

    def __str__(self) -> str:
        return f"@{self.index}"


@dataclass
class Alloc:
    """How the implementation allocated an array before the first operation.

    ``bitmap_new(nbits)``, or (``old_nbits`` set) ``bitmap_new(old_nbits)`` given the word
    values ``old`` and then ``bitmap_zero_extend(that, old_nbits, nbits)`` (NULL for
    old_nbits 0, as QEMU's callers pass it). The array's ``words`` are what the model's
    allocation gives; the engine compares the implementation's whole new array with them
    (``engine.alloc``), then the operations run on those words.
    """

    nbits: int
    old_nbits: int | None = None
    old: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        if self.old_nbits is None:
            return {"nbits": self.nbits}
        old = {str(i): hex(v) for i, v in sorted(self.old.items())}
        return {"nbits": self.nbits, "old_nbits": self.old_nbits, "old": old}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Alloc:
        old_nbits = obj.get("old_nbits")
        old = {int(i): int(v, 0) for i, v in obj.get("old", {}).items()}
        return cls(int(obj["nbits"]), None if old_nbits is None else int(old_nbits), old)


@dataclass
class ArraySpec:
    nwords: int
    words: dict[int, int] = field(default_factory=dict)  # sparse initial word values
    alloc: Alloc | None = None  # allocated by the implementation (bitmap layer)


@dataclass
class Op:
    name: str
    args: tuple[int | Ref | str, ...]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(_show(a) for a in self.args)})"


def _show(a: int | Ref | str) -> str:
    if isinstance(a, Ref):
        return str(a)
    if isinstance(a, str):
        return repr(a)
    return hex(a) if abs(a) > 4096 else str(a)


@dataclass
class Program:
    layout: Layout
    arrays: list[ArraySpec] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    layer: str = "bitmap"
    setup: dict[str, Any] = field(default_factory=dict)  # layer-specific parameters
    release: str | None = None  # the QEMU release it runs at (None: the one asked for)
    guard: str | None = None  # the guard page side it ran with (None: not recorded)

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "bits_per_long": self.layout.bits_per_long,
            "big_endian": self.layout.big_endian,
            **({"release": self.release} if self.release else {}),
            **({"guard": self.guard} if self.guard else {}),
            **({"setup": self.setup} if self.setup else {}),
            "arrays": [_array_json(a) for a in self.arrays],
            "ops": [[op.name, [_arg_json(x) for x in op.args]] for op in self.ops],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Program:
        layout = Layout(int(obj["bits_per_long"]), bool(obj.get("big_endian", False)))
        arrays = [
            ArraySpec(
                int(a["nwords"]),
                {int(i): int(v, 0) for i, v in a.get("words", {}).items()},
                Alloc.from_json(a["alloc"]) if "alloc" in a else None,
            )
            for a in obj.get("arrays", [])
        ]
        ops = [Op(str(name), tuple(_arg_parse(x) for x in args)) for name, args in obj["ops"]]
        release, guard = obj.get("release"), obj.get("guard")
        layer, setup = str(obj.get("layer", "bitmap")), dict(obj.get("setup", {}))
        return cls(
            layout,
            arrays,
            ops,
            layer,
            setup,
            None if release is None else str(release),
            None if guard is None else str(guard),
        )

    def with_ops(self, ops: list[Op]) -> Program:
        return Program(
            self.layout, self.arrays, list(ops), self.layer, self.setup, self.release, self.guard
        )

    def at(self, release: str | None) -> Program:
        """The same program at ``release`` (None: no release of its own)."""
        return dataclasses.replace(self, release=release)

    def with_guard(self, guard: str | None) -> Program:
        """The same program run with its arrays against the guard page ``guard``."""
        return dataclasses.replace(self, guard=guard)


def _array_json(a: ArraySpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "nwords": a.nwords,
        "words": {str(i): hex(v) for i, v in sorted(a.words.items())},
    }
    if a.alloc is not None:
        out["alloc"] = a.alloc.to_json()
    return out


def _arg_json(a: int | Ref | str) -> Arg:
    if isinstance(a, str) and a.startswith("@"):
        raise ValueError(f"string argument {a!r}: a leading @ is reserved for references")
    return str(a) if isinstance(a, Ref) else a


def _arg_parse(a: Arg) -> int | Ref | str:
    if isinstance(a, str):
        if a.startswith("@"):
            if not a[1:].isdigit():
                raise ValueError(f"argument {a!r}: a reference is written @k, k >= 0")
            return Ref(int(a[1:]))
        return a
    if isinstance(a, bool) or not isinstance(a, int):
        raise ValueError(f"argument {a!r}: integers, strings and @k references only")
    return a
