# SPDX-License-Identifier: GPL-2.0-or-later
"""The implementations a program runs on, behind one small interface.

The engine sees only ``Implementation``: allocate word arrays, read and load their memory
images, ask whether a function exists, and call it by QEMU's name. Adding a host or a
user's library adds an implementation here, never a branch in the engine.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from recvmap.pymodel.releases import DEFAULT_RULES, Release, ReleaseError, Rules, at_release
from recvmap.pymodel.words import Layout, Words
from recvmap.qemu_ref.batch import BatchRunner, interpreter
from recvmap.qemu_ref.loader import CLibrary, CWords, LibraryError, abi, guard_mode, load
from recvmap.qemu_ref.ram import CRamContext, c_context

from ..program.format import Op

# ram symbols a layer can do without (the generator leaves their operations out)
OPTIONAL_RAM: dict[str, set[str]] = {
    "ram": {
        "ramblock_recv_bitmap_set_offset",
        "ramblock_recv_bitmap_test_byte_offset",
        "ramblock_recv_bitmap_send",
        "ram_dirty_bitmap_reload",
    },
    "recovery": {"ramblock_recv_bitmap_set_offset", "ramblock_recv_bitmap_test_byte_offset"},
}


class Implementation(Protocol):
    name: str
    layout: Layout

    def alloc(self, nwords: int) -> Any: ...

    def image(self, handle: Any) -> bytes | bytearray | memoryview: ...

    def load(self, handle: Any, image: bytes) -> None: ...

    def has(self, fname: str) -> bool: ...

    def call(self, fname: str, *args: Any) -> Any: ...


def bitmap_functions(impl: Implementation | None) -> list[str]:
    """The model's bitmap functions (its table, ``pymodel.releases``) that ``impl`` has:
    what the decoder may call."""
    if impl is None:
        return []
    return [n for n in sorted(at_release().functions()) if impl.has(n)]


class ModelImpl:
    """The spec: recvmap.pymodel on a given word width and byte order, at a release."""

    def __init__(self, layout: Layout, release: str | Release | Rules | None = None) -> None:
        self.layout = layout
        view = at_release(release)
        self.release = view.release  # the rules it runs at (a release's, or any set)
        self.functions = view.functions()  # the model's table of the release's functions
        order = "be" if layout.big_endian else "le"
        self.name = f"model-{layout.bits_per_long}{order}"
        if self.release != DEFAULT_RULES:
            self.name += f"@{self.release}"

    def alloc(self, nwords: int) -> Words:
        return Words(self.layout, nwords)

    def image(self, handle: Words) -> bytes | bytearray:
        return handle.data if not self.layout.big_endian else handle.image()

    def live_image(self, handle: Words) -> bytearray | None:
        """The image itself on a little-endian layout (Words.data is never replaced)."""
        return None if self.layout.big_endian else handle.data

    def load(self, handle: Words, image: bytes) -> None:
        handle.load_image(image)

    def has(self, fname: str) -> bool:
        return fname in self.functions

    def call(self, fname: str, *args: Any) -> Any:
        return self.function(fname)(*args)

    def function(self, fname: str) -> Callable[..., Any]:
        """What ``call(fname, ...)`` calls: the engine looks it up once per name."""
        fn = self.functions.get(fname)
        if fn is not None:
            return fn
        if at_release().has(fname):
            raise ReleaseError(fname, self.release)  # out of this release's domain
        raise KeyError(fname)


class CImpl:
    """A shared library exporting QEMU's symbols (ours or a user's), on this host.

    Besides the per-operation calls, it runs whole programs in one foreign call through the
    batch interpreter (``run_batch``), when that is installed for the library's width.
    """

    def __init__(self, lib: CLibrary, name: str | None = None, batch: bool = True) -> None:
        self.lib = lib
        self._functions = lib.functions
        self.layout = lib.layout
        self.name = name or f"{lib.path.name}"
        self._batch: BatchRunner | None = None
        if batch:
            interp = interpreter(lib.bits)
            self._batch = None if interp is None else BatchRunner(lib, interp)
        # the batch interpreter's arrays, by their sizes and guard side (set_guard: the
        # input's, so that an access past one faults as it would on the input's own)
        self._scratch: dict[
            tuple[tuple[int, ...], str], tuple[list[CWords], list[int], list[int]]
        ] = {}

    @property
    def batch_kinds(self) -> dict[str, str] | None:
        """Result kind (v void, b bool, s signed, u unsigned) of each function the batch
        interpreter can run; None when this implementation runs one operation at a time."""
        return None if self._batch is None else self._batch.kinds

    def run_batch(
        self, nwords: tuple[int, ...], initial: bytes, ops: Sequence[Op]
    ) -> tuple[list[int], memoryview]:
        """Run ``ops`` in one foreign call on arrays of ``nwords`` words, first loaded with
        ``initial`` (their images, concatenated): every result as 64-bit two's complement
        bits, and after every operation the images of all arrays, concatenated."""
        assert self._batch is not None
        key = (nwords, guard_mode())
        scratch = self._scratch.get(key)
        if scratch is None:  # arrays are private to the call: reused by the next program
            handles = [self.alloc(n) for n in nwords]
            pointers = [ctypes.cast(h._as_parameter_, ctypes.c_void_p).value or 0 for h in handles]
            sizes = [len(h.view()) for h in handles]
            scratch = self._scratch[key] = (handles, pointers, sizes)
        _, pointers, sizes = scratch
        return self._batch.run(pointers, sizes, initial, ops)

    def alloc(self, nwords: int) -> CWords:
        return self.lib.words(nwords)

    def image(self, handle: CWords) -> memoryview:
        return handle.view()

    def live_image(self, handle: CWords) -> memoryview:
        return handle.view()  # a view of the ctypes array: always current

    def load(self, handle: CWords, image: bytes) -> None:
        handle.load_image(image)

    def has(self, fname: str) -> bool:
        return self.lib.has(fname)

    def call(self, fname: str, *args: Any) -> Any:
        return self._functions[fname](*args)


def library_bits(path: str | os.PathLike[str]) -> int:
    """The word width a library was built for: its ``qref_bits_per_long()``, else native."""
    try:
        cdll = ctypes.CDLL(str(path))
    except OSError as err:
        raise LibraryError(f"{path}: cannot load: {err}") from None
    marker = getattr(cdll, "qref_bits_per_long", None)
    if marker is None:
        return ctypes.sizeof(ctypes.c_long) * 8
    marker.restype, marker.argtypes = ctypes.c_int, []
    return int(marker())


RAM_HEADER = "qemu_ref_ram.h"


class Subject:
    """The implementation under test on every layer: our C reference or a user's library.

    Our reference comes in both word widths; a user's library (``path``) has one width
    (``bits``, else what the library says, else this host's ``long``) and is loaded with
    ``partial=True``: the functions it lacks are listed by ``missing`` and never called.
    Only little-endian layouts run here (this host); other hosts are ``fuzz.subjects.hosts``'.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        bits: int | None = None,
        libraries: dict[int, CLibrary] | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        self._libs: dict[int, CLibrary] = dict(libraries or {})
        self._ram_missing: dict[int, list[str]] = {}
        if libraries:
            self.widths: tuple[int, ...] = tuple(sorted(libraries, reverse=True))
        elif self.path is None:
            self.widths = (64, 32) if bits is None else (bits,)
        else:
            self.widths = (bits or library_bits(self.path),)
        self.name = (
            "qemu_ref"
            if self.path is None and not libraries
            else (self.path.name if self.path else next(iter(self._libs.values())).path.name)
        )

    def library(self, bits: int) -> CLibrary | None:
        if bits not in self.widths:
            return None
        if bits not in self._libs:
            self._libs[bits] = load(self.path, bits, partial=self.path is not None)
        return self._libs[bits]

    def missing(self, bits: int) -> list[str]:
        lib = self.library(bits)
        return [] if lib is None else list(lib.missing)

    def supports(self, layout: Layout) -> bool:
        return not layout.big_endian and layout.bits_per_long in self.widths

    def bitmap(self, layout: Layout) -> CImpl | None:
        lib = self.library(layout.bits_per_long) if self.supports(layout) else None
        return None if lib is None else CImpl(lib, f"{self.name}-{layout.bits_per_long}")

    def bitmap_functions(self, layout: Layout) -> list[str]:
        """The model's bitmap functions the library has (what the decoder may call)."""
        return bitmap_functions(self.bitmap(layout))

    def ram_missing(self, bits: int) -> list[str]:
        """The ram layer's symbols the library lacks (the header is parsed once)."""
        lib = self.library(bits)
        if lib is None:
            return []
        if bits not in self._ram_missing:
            names = [d.name for d in abi() if d.header == RAM_HEADER]
            self._ram_missing[bits] = [n for n in names if not lib.has(n)]
        return self._ram_missing[bits]

    def ram_runs(self, layout: Layout, layer: str) -> bool:
        """Whether ``layer`` runs: every ram symbol present but the ones it can do without.

        A release lacks some (a QEMU tree, --qemu-tree): v2.12.0 has no recovery stream,
        nothing before v9.1.0 has ramblock_recv_bitmap_set_offset. The generator leaves
        those out (``decode_ram_program(absent=...)``); the rest must all be there.
        """
        missing = set(self.ram_missing(layout.bits_per_long))
        return self.supports(layout) and missing <= OPTIONAL_RAM.get(layer, set())

    def ram(self, layout: Layout, layer: str = "recovery") -> Callable[..., Any] | None:
        """A factory of C ram contexts for ``layout`` (None if ``layer`` cannot run on it)."""
        if not self.ram_runs(layout, layer):
            return None
        lib = self.library(layout.bits_per_long)

        def make(*args: Any, **config: Any) -> CRamContext:
            config["strict"] = False  # the model checks strict mode before C is called
            return c_context(*args, lib=lib, checked=False, **config)

        return make
