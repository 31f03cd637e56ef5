# SPDX-License-Identifier: GPL-2.0-or-later
"""Run a program on the model and on an implementation, stop at the first divergence.

After every operation the return values and the memory images of every array must be equal.
An operation the model rejects (``PreconditionError``: outside QEMU's domain) is never passed
to the implementation; it is recorded as ``INVALID`` with the model's reason.
"""

from __future__ import annotations

import functools
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.words import Words

from ..program import Op, Program, Ref
from ..subjects.impls import Implementation, ModelImpl

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

    def to_json(self) -> dict[str, Any]:
        """The divergence as data: where, what, the model's and the implementation's value
        (the ``first`` of a ``recvmap fuzz --json`` divergence)."""
        return {
            "index": self.index,
            "function": self.op.name,
            "args": [str(a) if isinstance(a, Ref) else a for a in self.op.args],
            "what": self.what,
            "model": value_json(self.model),
            "impl": value_json(self.impl),
            "array": self.array,
            "offset": self.offset,
            "label": self.label,
        }

    def describe(self) -> str:
        head = f"op #{self.index} {self.op}: "
        where = self.label if self.label is not None else f"@{self.array}"
        if self.what == "result":
            return head + f"returned {_brief(self.impl)}, model returned {_brief(self.model)}"
        if self.what == "error_report":
            return head + f"error_report {self.impl!r}, model reported {self.model!r}"
        if self.what == "crash":  # impl: what the sandbox saw, when it was a crash
            if isinstance(self.impl, str) and self.impl.startswith("the implementation"):
                return head + self.impl
            return head + "the implementation crashed (the program ends there)"
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


def value_json(value: Any) -> Any:
    """A result or a memory byte in JSON: bytes as {"hex": ...}, tuples as lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, tuple | list):
        return [value_json(v) for v in value]
    return repr(value)


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
    words = spec.words
    if not words:
        return bytes(spec.nwords * size)
    if min(words) >= 0 and max(words) < spec.nwords:
        if len(words) == spec.nwords and list(words) == list(range(spec.nwords)):
            values = list(words.values())  # every word, in order: a decoded fill
        else:
            values = [0] * spec.nwords
            for i, value in words.items():
                values[i] = value
        try:  # one C loop; a value negative or too large for the word raises
            image = array(_TYPECODE[size], values)
        except OverflowError:
            pass
        else:
            if program.layout.big_endian != (sys.byteorder == "big"):
                image.byteswap()
            return image.tobytes()
    order: Literal["big", "little"] = "big" if program.layout.big_endian else "little"
    out = bytearray(spec.nwords * size)
    for i, value in words.items():
        if not 0 <= i < spec.nwords or not 0 <= value < 1 << (8 * size):
            raise ValueError(f"array @{index}: word {i} = {value:#x} of {spec.nwords} words")
        out[i * size : (i + 1) * size] = value.to_bytes(size, order)
    return bytes(out)


_TYPECODE = {array(c).itemsize: c for c in "QLI"}  # bytes -> array typecode of that size


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
    """One program's arrays, allocated on both sides, ready for operations.

    The implementation's arrays are allocated when first needed: an implementation that
    runs whole programs (``batch_kinds`` / ``run_batch``: our C through the batch
    interpreter) never needs them in ``run_stream``. Without an implementation
    (``impl=None``) the session runs the model alone: each step is the model's result,
    never a divergence (``replay.model_run``).
    """

    def __init__(
        self, program: Program, model: Implementation, impl: Implementation | None
    ) -> None:
        layout = model.layout if impl is None else impl.layout
        if (model.layout is not layout and model.layout != layout) or (
            program.layout is not layout and program.layout != layout
        ):
            raise ValueError(
                f"layouts differ: program {program.layout}, model {model.layout}, "
                f"implementation {impl.layout}"
            )
        self.model, self.impl = model, impl
        self.images = [initial_image(program, i) for i in range(len(program.arrays))]
        self.nwords = tuple(a.nwords for a in program.arrays)
        self._model_handles = [model.alloc(n) for n in self.nwords]
        for spec, image, mh in zip(program.arrays, self.images, self._model_handles, strict=True):
            if spec.words or type(mh) is not Words:  # a new Words is all zero
                model.load(mh, image)
        self._model_call = model.call
        self._impl_call = None if impl is None else impl.call
        # The model's own table of its release's functions (read, never written here).
        self._model_functions = model.functions if isinstance(model, ModelImpl) else {}
        self._impl_handles: list[Any] | None = None
        self._streamed = False  # run_stream ran the program in one batch
        self.live: list[tuple[Any, Any]] = []
        self._kinds: dict[str, str] | None = getattr(impl, "batch_kinds", None)
        if self._kinds is None and impl is not None:
            self._open_impl()

    def _open_impl(self) -> list[Any]:
        """Allocate the implementation's arrays, loaded with the program's initial contents."""
        if self._streamed:
            raise RuntimeError("this session ran its program in one batch: open a new one")
        handles = self._impl_handles = [self.impl.alloc(n) for n in self.nwords]
        for image, ih in zip(self.images, handles, strict=True):
            self.impl.load(ih, image)
        # Live buffers, when both sides have them: comparing is then one memcmp per array.
        live = [(live_image(self.model, mh), live_image(self.impl, ih)) for mh, ih in self.handles]
        self.live = live if all(m is not None and i is not None for m, i in live) else []
        return handles

    def model_images(self) -> dict[str, bytes]:
        """The model's memory images, keyed as a vector's ``memory`` (``@k``)."""
        return {f"@{k}": bytes(self.model.image(h)) for k, h in enumerate(self._model_handles)}

    @property
    def handles(self) -> list[tuple[Any, Any]]:
        """(model handle, implementation handle) of each array."""
        impl_handles = self._impl_handles or self._open_impl()
        return list(zip(self._model_handles, impl_handles, strict=True))

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
        if self.impl is None:
            return expected, None
        ih = self._impl_handles or self._open_impl()
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

    def run_stream(
        self, program: Program, next_op: Callable[[], Op | None]
    ) -> tuple[Program, Divergence | None]:
        """``run_stream`` on this session: in one batch when the implementation can."""
        model_live = [live_image(self.model, mh) for mh in self._model_handles]
        if self._kinds is None or self._impl_handles is not None or None in model_live:
            return _run_stream_steps(program, next_op, self)
        self._streamed = True
        return _run_stream_batch(self, program, next_op, self._kinds, model_live)


_SIGN, _WRAP = 1 << 63, 1 << 64
_NEVER = -1  # an expected raw result no implementation returns (raw results are unsigned)
BATCH_TRACE_LIMIT = 1 << 26  # bytes of images per program


def _raw(kind: str, value: Any) -> Any:
    """The model's result as the interpreter records a C result (see qemu_ref/batch.c), or
    _NEVER where the per-operation comparison fails whatever the implementation returns."""
    if kind == "v":
        return 0 if value is None else _NEVER
    if not isinstance(value, int):
        return _NEVER
    if kind == "s":
        return value + _WRAP if -_SIGN <= value < 0 else value if value < _SIGN else _NEVER
    if kind == "b" and type(value) is not bool and value not in (0, 1):
        return _NEVER
    return value


def _value(kind: str, raw: int) -> Any:
    """The implementation's result as ctypes returns it, from its raw bits."""
    if kind == "v":
        return None
    if kind == "b":
        return bool(raw)
    if kind == "s":
        return raw - _WRAP if raw >= _SIGN else raw
    return raw


def _run_stream_batch(
    session: Session,
    program: Program,
    next_op: Callable[[], Op | None],
    kinds: dict[str, str],
    model_live: list[Any],
) -> tuple[Program, Divergence | None]:
    """The model runs the stream, recording its results and images after every operation;
    the implementation runs the kept operations in one call and records the same; the two
    records are compared.

    This is the per-operation comparison, not a weaker one: the first operation whose
    result or any array's image differs is the divergence, its result checked before its
    memory, the program cut after it, exactly as ``step`` would have found it."""
    mh = session._model_handles
    functions = session._model_functions
    kept: list[Op] = []
    expected: list[Any] = []
    raws: list[Any] = []
    keep, expect, record = kept.append, expected.append, raws.append
    trace = bytearray()
    stride = sum(len(b) for b in model_live)
    while (op := next_op()) is not None:
        name = op.name
        fn = functions.get(name) or model_function(session.model, name)
        try:
            result = fn(*[mh[a.index] if type(a) is Ref else a for a in op.args])
        except PreconditionError:
            continue
        kind = kinds[name]
        keep(op)
        expect(result)
        if kind == "v" and result is None:
            record(0)
        elif kind == "u" and type(result) is int:
            record(result)
        else:
            record(_raw(kind, result))
        for buf in model_live:
            trace += buf
        if len(trace) > BATCH_TRACE_LIMIT:
            raise RuntimeError(f"program too large for one batch ({len(trace)} bytes of images)")
    if not kept:
        return program.with_ops(kept), None
    impl: Any = session.impl
    results, images = impl.run_batch(session.nwords, b"".join(session.images), kept)
    # trace on the left: bytearray == memoryview is a memcmp, memoryview == bytearray an
    # item-by-item loop (40 times slower on 30 KB).
    if results == raws and trace == images:
        return program.with_ops(kept), None
    pairs = enumerate(zip(results, raws, strict=True))
    first_result = next((i for i, (r, e) in pairs if r != e), len(kept))
    off = first_difference(trace, images) if trace != images else -1
    first_image = off // stride if off >= 0 else len(kept)
    index = min(first_result, first_image)
    op = kept[index]
    if first_result <= first_image:
        actual = _value(kinds[op.name], results[index])
        divergence = Divergence(index, op, "result", expected[index], actual)
    else:
        at, k = off - index * stride, 0
        while at >= len(model_live[k]):
            at -= len(model_live[k])
            k += 1
        base = off - at  # array k's image after op ``index``, in both records
        end = base + len(model_live[k])
        words = word_pair(
            trace[base:end], images[base:end], at, session.model.layout.bytes_per_long
        )
        divergence = Divergence(index, op, "memory", trace[off], images[off], k, at, words=words)
    return program.with_ops(kept[: index + 1]), divergence


def model_function(model: Implementation, fname: str) -> Callable[..., Any]:
    """The callable behind ``model.call(fname, ...)``, looked up once per model and name.

    Implementations may offer ``function(fname)`` (the model does); otherwise, and when the
    lookup itself fails (a function the model's release lacks), ``call`` is used as is, so
    every call still raises exactly what ``call`` would."""
    get = getattr(model, "function", None)
    if get is not None:
        try:
            return get(fname)  # type: ignore[no-any-return]
        except (PreconditionError, KeyError):
            pass
    return functools.partial(model.call, fname)


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
    runner = getattr(session, "run_stream", None)
    if runner is not None:
        return runner(program, next_op)  # type: ignore[no-any-return]
    return _run_stream_steps(program, next_op, session)


def _run_stream_steps(
    program: Program, next_op: Callable[[], Op | None], session: Any
) -> tuple[Program, Any]:
    """run_stream one operation at a time, through ``session.step``."""
    kept: list[Op] = []
    while (op := next_op()) is not None:
        result, divergence = session.step(len(kept), op)
        if isinstance(result, tuple) and result and result[0] == INVALID:
            continue
        kept.append(op)
        if divergence is not None:
            return program.with_ops(kept), divergence
    return program.with_ops(kept), None
