# SPDX-License-Identifier: GPL-2.0-or-later
"""Run a program on the model and on an implementation, stop at the first divergence.

After every operation the return values and the memory images of every array must be equal.
An operation the model rejects (``PreconditionError``: outside QEMU's domain) is never passed
to the implementation; it is recorded as ``INVALID`` with the model's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from recvmap.pymodel.errors import PreconditionError

from ..program import Op, Program, Ref
from ..subjects.impls import Implementation

INVALID = "invalid"


@dataclass
class Divergence:
    """The first point where model and implementation disagree."""

    index: int
    op: Op
    what: str  # "result", "memory", "error_report" (ram layer) or "map" (ram layer)
    model: Any
    impl: Any
    array: int | None = None
    offset: int | None = None
    label: str | None = None  # the ram layer's name of the map, e.g. "destination:ram0.bmap"
    words: tuple[int, str, str] | None = None  # memory: (word, model bytes, impl bytes) in hex

    def describe(self) -> str:
        head = f"op #{self.index} {self.op}: "
        where = self.label if self.label is not None else f"@{self.array}"
        if self.what == "result":
            return head + f"returned {_brief(self.impl)}, model returned {_brief(self.model)}"
        if self.what == "error_report":
            return head + f"error_report {self.impl!r}, model reported {self.model!r}"
        if self.what == "crash":
            return (
                f"op #{self.index} {self.op}: the implementation crashed (the program ends there)"
            )
        if self.what == "map":
            return head + f"{where} is {self.impl}, model has {self.model}"
        text = head + (
            f"memory of {where} differs first at byte {self.offset}: "
            f"implementation 0x{self.impl:02x}, model 0x{self.model:02x}"
        )
        if self.words is not None:
            k, model, impl = self.words
            text += f"; word {k} in memory order: implementation {impl}, model {model}"
        return text


def _brief(value: Any) -> str:
    """A result for a message: long byte strings (recovery streams) are cut."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_brief(v) for v in value) + ")"
    if isinstance(value, bytes | bytearray) and len(value) > 48:
        return f"{bytes(value[:48]).hex()}... ({len(value)} bytes)"
    return repr(value)


def word_pair(model: Any, impl: Any, offset: int, size: int) -> tuple[int, str, str]:
    """The word holding byte ``offset`` of both images: (index, model hex, impl hex)."""
    k = offset // size
    return (
        k,
        bytes(model[k * size : (k + 1) * size]).hex(),
        bytes(impl[k * size : (k + 1) * size]).hex(),
    )


class DivergenceError(AssertionError):
    def __init__(self, divergence: Divergence, impl_name: str) -> None:
        self.divergence = divergence
        super().__init__(f"{impl_name} diverges from the model: {divergence.describe()}")


@dataclass
class Outcome:
    results: list[Any] = field(default_factory=list)
    divergence: Divergence | None = None
    ops_compared: int = 0


def initial_image(program: Program, index: int) -> bytes:
    """The memory image of array ``index`` before the first operation."""
    spec = program.arrays[index]
    size = program.layout.bits_per_long // 8
    order: Literal["big", "little"] = "big" if program.layout.big_endian else "little"
    image = bytearray(spec.nwords * size)
    for i, value in spec.words.items():
        if not 0 <= i < spec.nwords or not 0 <= value < 1 << (8 * size):
            raise ValueError(f"array @{index}: word {i} = {value:#x} of {spec.nwords} words")
        image[i * size : (i + 1) * size] = value.to_bytes(size, order)
    return bytes(image)


def first_difference(a: bytes | bytearray | memoryview, b: bytes | bytearray | memoryview) -> int:
    """Index of the first differing byte of two equal-length images (-1 if none)."""
    a, b = memoryview(a).cast("B"), memoryview(b).cast("B")
    lo, hi = 0, len(a)
    while hi - lo > 64:  # bisect with memcmp-speed slice comparisons
        mid = (lo + hi) // 2
        if bytes(a[lo:mid]) != bytes(b[lo:mid]):
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return -1


class Session:
    """One program's arrays, allocated on both sides, ready for operations."""

    def __init__(self, program: Program, model: Implementation, impl: Implementation) -> None:
        if model.layout != impl.layout or program.layout != impl.layout:
            raise ValueError(
                f"layouts differ: program {program.layout}, model {model.layout}, "
                f"implementation {impl.layout}"
            )
        self.model, self.impl = model, impl
        self.images = [initial_image(program, i) for i in range(len(program.arrays))]
        self.handles = [(model.alloc(a.nwords), impl.alloc(a.nwords)) for a in program.arrays]
        self.reset()
        # Live buffers, when both sides have them: comparing is then one memcmp per array.
        self.live = [(live_image(model, mh), live_image(impl, ih)) for mh, ih in self.handles]
        if not all(m is not None and i is not None for m, i in self.live):
            self.live = []
        self._model_handles = [mh for mh, _ in self.handles]
        self._impl_handles = [ih for _, ih in self.handles]
        self._model_call, self._impl_call = model.call, impl.call

    def reset(self) -> None:
        """Put every array back to the program's initial contents, on both sides."""
        for image, (mh, ih) in zip(self.images, self.handles, strict=True):
            self.model.load(mh, image)
            self.impl.load(ih, image)

    def step(self, index: int, op: Op) -> tuple[Any, Divergence | None]:
        """Run one operation on both sides; (model result, divergence or None)."""
        args, name = op.args, op.name
        mh = self._model_handles
        try:
            expected = self._model_call(name, *[mh[a.index] if type(a) is Ref else a for a in args])
        except PreconditionError as err:
            return (INVALID, str(err)), None
        ih = self._impl_handles
        actual = self._impl_call(name, *[ih[a.index] if type(a) is Ref else a for a in args])
        if expected != actual and not _same(expected, actual):  # True == 1: bool is an int
            return expected, Divergence(index, op, "result", expected, actual)
        for mimg, iimg in self.live:  # the hot path: one memcmp per array
            if mimg != iimg:
                break
        else:
            if self.live:
                return expected, None
        return expected, self.compare_memory(index, op)

    def compare_memory(self, index: int, op: Op) -> Divergence | None:
        for k, (mh, ih) in enumerate(self.handles):
            mimg, iimg = self.model.image(mh), self.impl.image(ih)
            if mimg != iimg:
                off = first_difference(mimg, iimg)
                words = word_pair(mimg, iimg, off, self.model.layout.bytes_per_long)
                return Divergence(index, op, "memory", mimg[off], iimg[off], k, off, words=words)
        return None


def live_image(impl: Implementation, handle: Any) -> Any:
    """A buffer that always shows ``handle``'s current memory image, or None.

    Implementations may offer ``live_image(handle)``; the engine then compares without
    copying. Without it, ``image()`` is called after every operation.
    """
    fn = getattr(impl, "live_image", None)
    return None if fn is None else fn(handle)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return int(expected) == int(actual)
    return bool(expected == actual)


def run(program: Program, model: Implementation, impl: Implementation) -> Outcome:
    """Run every operation on both sides; stop at the first divergence."""
    session = Session(program, model, impl)
    out = Outcome()
    for i, op in enumerate(program.ops):
        result, divergence = session.step(i, op)
        out.results.append(result)
        out.ops_compared += 1
        if divergence is not None:
            out.divergence = divergence
            break
    return out


def minimize(program: Program, fails: Callable[[Program], bool]) -> Program:
    """Delta-debug the operation list: the shortest program found that still ``fails``."""
    ops: Sequence[Op] = program.ops
    chunk = max(1, len(ops) // 2)
    while chunk >= 1:
        i, shrunk = 0, False
        while i < len(ops):
            candidate = list(ops[:i]) + list(ops[i + chunk :])
            if candidate and fails(program.with_ops(candidate)):
                ops, shrunk = candidate, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return program.with_ops(list(ops))


def run_stream(
    program: Program, next_op: Callable[[], Op | None], session: Any
) -> tuple[Program, Any]:
    """Feed decoded operations to an engine Session; keep only those inside QEMU's domain."""
    kept: list[Op] = []
    while (op := next_op()) is not None:
        result, divergence = session.step(len(kept), op)
        if isinstance(result, tuple) and result and result[0] == INVALID:
            continue
        kept.append(op)
        if divergence is not None:
            return program.with_ops(kept), divergence
    return program.with_ops(kept), None
