# SPDX-License-Identifier: GPL-2.0-or-later
"""The batch interpreter's ctypes face: a whole bitmap-layer program in one foreign call.

``libqrefbatch{bits}.so`` (``batch.c``) calls a library's functions through their
addresses, which this module looks up by QEMU's names in any ``CLibrary`` (ours, a user's,
a mutant); it records every operation's result and every array's image after it. Python
then compares that record with the model's trace (``recvmap.fuzz.engine.session``).
"""

from __future__ import annotations

import ctypes
from array import array
from collections.abc import Sequence
from typing import Any

from .loader import CLibrary, LibraryError, package_file

_VP = ctypes.c_void_p


class Interpreter:
    """The interpreter built for ``bits``-bit words, and its table of functions."""

    def __init__(self, bits: int) -> None:
        path = package_file(f"libqrefbatch{bits}.so")
        try:
            self.cdll = ctypes.CDLL(str(path))
        except OSError as err:
            raise LibraryError(f"{path}: cannot load: {err}") from None
        marker = self.cdll.qref_batch_bits_per_long
        marker.restype, marker.argtypes = ctypes.c_int, []
        if marker() != bits:
            raise LibraryError(f"{path}: built for {marker()}-bit words, not {bits}")
        describe = self.cdll.qref_batch_function
        describe.restype = ctypes.c_int
        describe.argtypes = [
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_char),
            ctypes.POINTER(ctypes.c_char_p),
        ]
        #: name -> (function number, result kind v/b/s/u, argument kinds m/i per argument)
        self.table: dict[str, tuple[int, str, str]] = {}
        name, kind, args = ctypes.c_char_p(), ctypes.c_char(), ctypes.c_char_p()
        i = 0
        while describe(i, ctypes.byref(name), ctypes.byref(kind), ctypes.byref(args)):
            assert name.value is not None and args.value is not None
            self.table[name.value.decode()] = (i, kind.value.decode(), args.value.decode())
            i += 1
        self.run = self.cdll.qref_batch_run
        self.run.restype = ctypes.c_int64
        self.run.argtypes = [_VP, _VP, ctypes.c_int64, _VP, _VP, ctypes.c_int64]
        self.run.argtypes += [ctypes.c_char_p, _VP, _VP]


_INTERPRETERS: dict[int, Interpreter | None] = {}


def interpreter(bits: int) -> Interpreter | None:
    """The installed interpreter for ``bits``-bit words (None when it is not installed)."""
    if bits not in _INTERPRETERS:
        try:
            _INTERPRETERS[bits] = Interpreter(bits)
        except (LibraryError, AttributeError, FileNotFoundError):
            _INTERPRETERS[bits] = None
    return _INTERPRETERS[bits]


_SIGN = 1 << 63
_WRAP = 1 << 64


class BatchRunner:
    """Programs of one library, run by the interpreter; buffers are reused between runs."""

    def __init__(self, lib: CLibrary, interp: Interpreter) -> None:
        self.lib = lib
        self.interp = interp
        fns = (_VP * len(interp.table))()
        self.functions: dict[str, tuple[int, str, str]] = {}
        for name, (index, kind, args) in interp.table.items():
            fn = lib.functions.get(name)
            if fn is not None:
                fns[index] = ctypes.cast(fn, _VP).value
                self.functions[name] = (index, kind, args)
        self._fns = fns
        #: function number of each function the library has
        self.numbers = {name: index for name, (index, _, _) in self.functions.items()}
        #: result kind of each function the library has: v void, b bool, s signed, u unsigned
        self.kinds = {name: kind for name, (_, kind, _) in self.functions.items()}
        self._results = (ctypes.c_uint64 * 0)()
        self._images = (ctypes.c_uint8 * 0)()
        self._results_view = memoryview(b"").cast("Q")
        self._images_view = memoryview(b"")
        self._arrays: dict[tuple[tuple[int, ...], ...], tuple[array[int], array[int], int]] = {}

    def encode(self, ops: Sequence[Any]) -> array[int]:
        """The program's codes: function number, then each argument (array number or value).

        ``ops`` have a ``name`` and ``args`` (ints, and array references with an ``index``).
        """
        code: list[int] = []
        numbers = self.numbers
        for op in ops:
            code.append(numbers[op.name])
            code += [a if type(a) is int else a.index for a in op.args]
        try:
            return array("q", code)
        except OverflowError:  # unsigned longs of 2^63 and more: their two's complement bits
            return array("q", [c - _WRAP if c >= _SIGN else c for c in code])

    def run(
        self,
        pointers: Sequence[int],
        nbytes: Sequence[int],
        initial: bytes,
        ops: Sequence[Any],
    ) -> tuple[list[int], memoryview]:
        """Run ``ops`` on the arrays at ``pointers`` (first loaded with ``initial``).

        Returns every operation's raw result (64-bit two's complement bits) and the images
        of all arrays after each operation, concatenated (valid until the next run).
        """
        key = (tuple(pointers), tuple(nbytes))
        arrays = self._arrays.get(key)
        if arrays is None:
            arrays = self._arrays[key] = (array("Q", pointers), array("q", nbytes), sum(nbytes))
        addresses, sizes, stride = arrays
        code = self.encode(ops)
        nops = len(ops)
        if len(self._results) < nops:
            self._results = (ctypes.c_uint64 * max(nops, 64))()
            self._results_view = memoryview(self._results).cast("B").cast("Q")
        if len(self._images) < nops * stride:
            self._images = (ctypes.c_uint8 * max(nops * stride, 4096))()
            self._images_view = memoryview(self._images).cast("B")
        ran = self.interp.run(
            self._fns,
            code.buffer_info()[0],
            len(code),
            addresses.buffer_info()[0],
            sizes.buffer_info()[0],
            len(sizes),
            initial,
            self._results,
            self._images,
        )
        if ran != nops:
            raise LibraryError(f"batch interpreter refused code {-1 - ran} of {list(code)}")
        return self._results_view[:nops].tolist(), self._images_view[: nops * stride]
