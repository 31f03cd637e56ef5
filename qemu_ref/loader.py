# SPDX-License-Identifier: GPL-2.0-or-later
"""Load a shared library exporting QEMU's bitmap symbols and present it like the model.

The ABI is the set of ``QREF_API`` lines in the installed headers (``qemu_ref.h``,
``qemu_ref_ram.h``): this module parses them, so argument and return types are written
once, in C. A library is either ours (every symbol must be present) or a user's
(``partial=True``: missing symbols are listed in ``CLibrary.missing``, never hidden).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from recvmap.pymodel.errors import ArgumentTypeError, PreconditionError, check_long, check_ulong
from recvmap.pymodel.words import ILP32_LE, LP64_LE, Layout

HEADERS = ("qemu_ref.h", "qemu_ref_ram.h")
ENV_VAR = "RECVMAP_LIB"


class LibraryError(RuntimeError):
    """A library could not be loaded or does not match the ABI; the message says which."""


@dataclass(frozen=True)
class Decl:
    """One exported function of the ABI header."""

    name: str
    restype: str
    argtypes: tuple[str, ...]
    header: str
    argnames: tuple[str, ...] = ()  # the header's parameter names ("" where it has none)


_DECL = re.compile(r"^QREF_API\s+(?P<ret>[\w\s\*]+?)\s*\b(?P<name>\w+)\s*\((?P<args>[^)]*)\)\s*;")


def _param_type(param: str) -> str:
    """Strip the parameter name from a C parameter declaration, normalise spacing."""
    param = " ".join(param.replace("*", " * ").split())
    if param in ("void", ""):
        return ""
    words = param.split(" ")
    if len(words) > 1 and words[-1] != "*" and re.fullmatch(r"\w+", words[-1]):
        words = words[:-1]
    return " ".join(words)


def _param_name(param: str) -> str:
    """The name of a C parameter declaration ("" when it has none)."""
    words = " ".join(param.replace("*", " * ").split()).split(" ")
    if len(words) > 1 and words[-1] != "*" and re.fullmatch(r"\w+", words[-1]):
        return words[-1]
    return ""


def parse_header(text: str, header: str = "") -> list[Decl]:
    """Every ``QREF_API`` declaration of a header, in order."""
    decls = []
    for line in text.splitlines():
        m = _DECL.match(line.strip())
        if not m:
            continue
        params = [p for p in m["args"].split(",") if _param_type(p)]
        args = tuple(_param_type(p) for p in params)
        names = tuple(_param_name(p) for p in params)
        ret = " ".join(m["ret"].replace("*", " * ").split())
        decls.append(Decl(m["name"], ret, args, header, names))
    return decls


def _ctype(spelling: str, bits: int) -> Any:
    """The ctypes type for one C type spelling of the ABI, for a library of ``bits``-bit longs."""
    ulong = ctypes.c_uint32 if bits == 32 else ctypes.c_uint64
    long_ = ctypes.c_int32 if bits == 32 else ctypes.c_int64
    base = spelling.replace("const ", "").strip()
    scalars: dict[str, Any] = {
        "void": None,
        "int": ctypes.c_int,
        "bool": ctypes.c_bool,
        "qref_ulong": ulong,
        "qref_long": long_,
        "int64_t": ctypes.c_int64,
        "uint64_t": ctypes.c_uint64,
        "uint32_t": ctypes.c_uint32,
        "size_t": ctypes.c_size_t,
        "uint8_t *": ctypes.POINTER(ctypes.c_uint8),
        "qref_ulong *": ctypes.POINTER(ulong),
        "char *": ctypes.c_char_p,
    }
    if base in scalars:
        return scalars[base]
    if base.endswith("*"):
        return ctypes.c_void_p  # void * and struct pointers
    raise LibraryError(f"ABI header uses a type the loader does not know: {spelling!r}")


PACKAGE = "recvmap.qemu_ref"


def _served(name: str) -> Path:
    """Where importlib.resources says ``name`` is (it may not be there: see package_file)."""
    ref = resources.files(PACKAGE).joinpath(name)
    try:
        with resources.as_file(ref) as path:
            return Path(path)
    except OSError:  # a reader with nothing behind it
        return Path(str(ref))


def package_file(name: str) -> Path:
    """A file installed inside ``recvmap.qemu_ref``: a normal or editable install, or a
    PyInstaller bundle (ClusterFuzzLite's fuzzers), unpacked in ``sys._MEIPASS`` with the
    package's files under ``recvmap/qemu_ref``. The frozen importer of a PyInstaller serves
    them through importlib.resources; where one does not, that folder is looked in."""
    path = _served(name)
    bundle = getattr(sys, "_MEIPASS", None)
    if not path.is_file() and isinstance(bundle, str):
        unpacked = Path(bundle, *PACKAGE.split("."), name)
        if unpacked.is_file():
            return unpacked
    return path


def abi() -> list[Decl]:
    """All declarations of the installed ABI headers."""
    decls: list[Decl] = []
    for header in HEADERS:
        decls += parse_header(package_file(header).read_text(), header)
    return decls


def default_path(bits: int) -> Path:
    """Our own library for ``bits``-bit words, as installed by meson."""
    return package_file(f"libqemuref{bits}.so")


class _Heap:
    """The C heap (calloc/free through the C library), or None where it cannot be reached."""

    funcs: tuple[Any, Any] | None = None
    tried = False

    @classmethod
    def get(cls) -> tuple[Any, Any] | None:
        if not cls.tried:
            cls.tried = True
            try:
                libc = ctypes.CDLL(None)
                calloc, free = libc.calloc, libc.free
            except (OSError, AttributeError):
                return None
            calloc.restype, calloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_size_t]
            free.restype, free.argtypes = None, [ctypes.c_void_p]
            cls.funcs = (calloc, free)
        return cls.funcs


def _word_array(ctype: Any, nwords: int) -> Any:
    """``nwords`` zeroed words in a heap block of exactly their size, freed with the array.

    ctypes keeps an array of up to 16 bytes inside its Python object, where a sanitizer
    sees no end: a read one word past a 1- or 2-word map went unreported. A calloc'd block
    of its own has AddressSanitizer's redzones after it when libasan is loaded.
    """
    heap = _Heap.get()
    size = ctypes.sizeof(ctype) * nwords
    pointer = heap[0](1, size) if heap is not None and size else None
    if not pointer:
        return (ctype * nwords)()
    array = (ctype * nwords).from_address(pointer)
    weakref.finalize(array, heap[1], pointer)  # type: ignore[index]
    return array


PAGE = mmap.PAGESIZE
GUARDS = ("after", "before", "none")


_GUARD: list[str] = []  # set_guard's choice, over the environment's


def guard_mode() -> str:
    """Where arrays handed to C get their PROT_NONE page: ``set_guard``'s choice, else
    ``RECVMAP_GUARD``, else "after"."""
    if _GUARD:
        return _GUARD[0]
    mode = os.environ.get("RECVMAP_GUARD", "after")
    return mode if mode in GUARDS else "after"


def guard_from_env() -> bool:
    """Did the user choose the guard (RECVMAP_GUARD)? Then nobody alternates it."""
    return os.environ.get("RECVMAP_GUARD") in GUARDS


def set_guard(mode: str | None) -> None:
    """Arrays allocated from now on get their guard page ``mode`` (None: back to default):
    those handed to C (``CWords``) and the maps our C allocates itself (each loaded
    library that has ``qref_set_guard`` is told)."""
    if mode is not None and mode not in GUARDS:
        raise ValueError(f"guard must be one of {', '.join(GUARDS)}, not {mode!r}")
    _GUARD[:] = [] if mode is None else [mode]
    for lib in list(_GUARDED_LIBS):
        lib.tell_guard()


# The libraries whose own maps follow set_guard (qref_set_guard of qemu_ref.h), and the
# side numbers of its QREF_GUARD_* macros.
_GUARDED_LIBS: weakref.WeakSet[CLibrary] = weakref.WeakSet()
GUARD_SIDES = {"none": 0, "after": 1, "before": 2}


_mprotect: Any = None


def _protect(address: int, length: int) -> None:
    global _mprotect
    if _mprotect is None:
        _mprotect = ctypes.CDLL(None, use_errno=True).mprotect
        _mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _mprotect.restype = ctypes.c_int
    if _mprotect(address, length, 0) != 0:  # PROT_NONE
        raise OSError(ctypes.get_errno(), "mprotect of a guard page failed")


class CWords:
    """An array of C unsigned longs handed to the library; same face as the model's Words.

    The array sits against a guard page (``guard``: "after" its last word, "before" its
    first, or "none"): an inaccessible page, so a library that reads or writes one word
    past the allocation gets SIGSEGV on every run, not a divergence that depends on what
    happens to lie next to the array.
    """

    def __init__(
        self, ctype: Any, nwords: int, bits_per_long: int, guard: str | None = None
    ) -> None:
        self.nwords = nwords
        self.bits_per_long = bits_per_long
        guard = guard_mode() if guard is None else guard
        self.guard = guard
        if guard == "none":
            self.array = _word_array(ctype, nwords)  # sanitizers see its end
        else:
            size = nwords * ctypes.sizeof(ctype)
            body = -(-size // PAGE) * PAGE
            self._map = mmap.mmap(-1, body + PAGE)
            base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
            if guard == "after":
                _protect(base + body, PAGE)
                offset = body - size
            else:
                _protect(base, PAGE)
                offset = PAGE
            self.array = (ctype * nwords).from_buffer(self._map, offset)
        # ctypes only accepts a real pointer object through _as_parameter_.
        self._as_parameter_ = ctypes.cast(self.array, ctypes.POINTER(ctype))

    @property
    def nbits(self) -> int:
        return self.nwords * self.bits_per_long

    def view(self) -> memoryview:
        """The memory image without a copy (this host's byte order)."""
        return memoryview(self.array).cast("B")

    def image(self) -> bytes:
        return bytes(self.view())

    def load_image(self, image: bytes) -> None:
        view = self.view()
        if len(image) != len(view):
            raise ValueError(f"image of {len(image)} bytes for {len(view)} bytes of words")
        view[:] = image


class CArray(CWords):
    """An array the library allocated (``bitmap_new``, ``bitmap_zero_extend``).

    Same face as ``CWords``, over the library's memory; ``free()`` hands it back
    (``qref_bitmap_free``), and so does garbage collection. An array passed as the first
    argument of ``bitmap_zero_extend`` is consumed (reallocated): it becomes empty and
    must not be used again.
    """

    def __init__(self, lib: CLibrary, pointer: Any, nwords: int) -> None:
        ctype = lib._ulong
        self.nwords = nwords
        self.bits_per_long = lib.bits
        self._free: Callable[..., Any] | None = lib.functions.get("qref_bitmap_free")
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if nwords and not address:
            raise LibraryError(f"{lib.path}: allocation of {nwords} words returned NULL")
        self.address = address or 0
        self.array = (ctype * nwords).from_address(self.address) if nwords else (ctype * 0)()
        self._as_parameter_ = ctypes.cast(pointer, ctypes.POINTER(ctype))

    def release(self) -> None:
        """Forget the memory without freeing it (it was reallocated by the library)."""
        self.nwords, self.address = 0, 0
        self.array = (type(self.array)._type_ * 0)()
        self._as_parameter_ = ctypes.cast(None, type(self._as_parameter_))

    def free(self) -> None:
        if self.address and self._free is not None:
            self._free(self._as_parameter_)
        self.release()

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown: nothing left to hand back to
            pass


def _bits_to_longs(n: int, bits: int) -> int:
    """BITS_TO_LONGS of the ABI: ``n`` converted to qref_ulong, rounded up to words."""
    return ((n % (1 << bits)) + bits - 1) % (1 << bits) // bits


class CLibrary:
    """A loaded shared library with the ABI's functions as attributes."""

    def __init__(self, path: str | os.PathLike[str], bits: int, partial: bool = False) -> None:
        self.path = Path(path)
        self.bits = bits
        self.layout: Layout = LP64_LE if bits == 64 else ILP32_LE
        if type(bits) is not int or bits not in (32, 64):
            raise LibraryError(
                f"{self.path}: word width must be the int 32 or 64, not {bits!r} "
                f"(a {type(bits).__name__})"
            )
        if not self.path.is_file():
            raise LibraryError(f"{self.path}: no such library file")
        try:
            self.cdll = ctypes.CDLL(str(self.path))
        except OSError as err:
            raise LibraryError(f"{self.path}: cannot load: {err}") from None
        self._ulong = ctypes.c_uint32 if bits == 32 else ctypes.c_uint64
        self.functions: dict[str, Callable[..., Any]] = {}
        self.missing: list[str] = []
        self._decls: dict[str, Decl] = {}
        self._checked: dict[str, Callable[..., Any]] = {}
        for decl in abi():
            try:
                fn = getattr(self.cdll, decl.name)
            except AttributeError:
                self.missing.append(decl.name)
                continue
            self._decls[decl.name] = decl
            fn.restype = _ctype(decl.restype, bits)
            fn.argtypes = [_ctype(t, bits) for t in decl.argtypes]
            self.functions[decl.name] = (
                self._allocating(fn, decl) if decl.restype == "qref_ulong *" else fn
            )
        self._check_identity(partial)
        if "qref_set_guard" in self.functions:
            _GUARDED_LIBS.add(self)
            self.tell_guard()

    def tell_guard(self) -> None:
        """Put the maps the library allocates itself behind the guard page of
        ``guard_mode()`` (``qref_set_guard``; a library without it allocates as it will)."""
        setter = self.functions.get("qref_set_guard")
        if setter is not None:
            setter(GUARD_SIDES[guard_mode()])

    def _check_identity(self, partial: bool) -> None:
        """Our libraries say their word width; a user's library must export something."""
        marker = getattr(self.cdll, "qref_bits_per_long", None)
        if marker is not None:
            marker.restype = ctypes.c_int
            marker.argtypes = []
            actual = marker()
            if actual != self.bits:
                raise LibraryError(
                    f"{self.path}: wrong library: built for {actual}-bit words, "
                    f"loaded as {self.bits}-bit"
                )
        if not self.functions:
            raise LibraryError(f"{self.path}: wrong library: exports none of QEMU's bitmap symbols")
        if self.missing and not partial:
            raise LibraryError(f"{self.path}: missing symbols: {', '.join(self.missing)}")

    def _allocating(self, fn: Any, decl: Decl) -> Callable[..., CArray]:
        """A function returning a new array (the header's allocation rules): its size is
        BITS_TO_LONGS(last argument); a ``CArray`` passed first as ``qref_ulong *`` is
        consumed."""
        consumes = bool(decl.argtypes) and decl.argtypes[0] == "qref_ulong *"

        def call(*args: Any) -> CArray:
            pointer = fn(*args)
            if consumes and isinstance(args[0], CArray):
                args[0].release()
            return CArray(self, pointer, _bits_to_longs(int(args[-1]), self.bits))

        call.__name__ = decl.name
        return call

    def has(self, name: str) -> bool:
        return name in self.functions

    def words(self, nwords: int) -> CWords:
        return CWords(self._ulong, nwords, self.bits)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """``lib.NAME(...)``: the function, its integer arguments checked first (``checked``);
        ``lib.functions[NAME]`` is the bare function, for callers that checked already
        (the engine runs the model first)."""
        d = self.__dict__
        try:
            return d["_checked"][name]  # type: ignore[no-any-return]
        except KeyError:
            pass
        try:
            fn = d["functions"][name]
        except KeyError:
            raise AttributeError(f"{self.path.name} has no function {name}") from None
        d["_checked"][name] = call = checked(fn, d["_decls"][name], self.layout)
        return call

    def __iter__(self) -> Iterator[str]:
        return iter(self.functions)


# The integer types of the ABI: (lowest, highest) value, for 32- and 64-bit words.
_POINTER_BITS = 8 * ctypes.sizeof(ctypes.c_void_p)
_RANGES: dict[str, tuple[int, int]] = {
    "int": (-(2**31), 2**31 - 1),
    "bool": (0, 1),
    "int64_t": (-(2**63), 2**63 - 1),
    "uint64_t": (0, 2**64 - 1),
    "uint32_t": (0, 2**32 - 1),
    "size_t": (0, 2**_POINTER_BITS - 1),
}


def checked(fn: Callable[..., Any], decl: Decl, layout: Layout) -> Callable[..., Any]:
    """``fn`` that refuses, before C sees it, an integer its C parameter cannot hold (ctypes
    would cut it silently: ``bitmap_set(map, 2**64 + 5, 1)`` set bit 5): the model's
    ``PreconditionError`` naming the argument, or its ``ArgumentTypeError`` for a float, a
    bool or a str where C takes an integer. A pointer parameter given an int (an address)
    must hold it too."""
    checks = []
    for i, (ctype, name) in enumerate(zip(decl.argtypes, decl.argnames, strict=True)):
        base = ctype.replace("const ", "").strip()
        name = name or f"argument {i + 1}"
        if base == "qref_long":
            checks.append((i, name, base, layout.long_min, layout.long_max, True))
        elif base == "qref_ulong":
            checks.append((i, name, base, 0, layout.ulong_max, True))
        elif base in _RANGES:
            checks.append((i, name, base, *_RANGES[base], True))
        elif base.endswith("*"):
            checks.append((i, name, base, 0, 2**_POINTER_BITS - 1, False))

    def call(*args: Any) -> Any:
        for i, name, ctype, low, high, integer in checks:
            if i >= len(args):
                break
            v = args[i]
            if type(v) is int and low <= v <= high:
                continue
            _refuse(decl.name, name, ctype, low, high, v, integer, layout)
        return fn(*args)

    call.__name__ = decl.name
    for attr in ("restype", "argtypes"):  # a ctypes function's, for who looks
        if hasattr(fn, attr):
            setattr(call, attr, getattr(fn, attr))
    return call


def _refuse(
    function: str, name: str, ctype: str, low: int, high: int, v: Any, integer: bool, layout: Layout
) -> None:
    """Raise the model's error for ``v`` given to C parameter ``name`` of type ``ctype``;
    return when ``v`` is fine (a pointer object for a pointer parameter)."""
    if not integer and not isinstance(v, int):
        return  # a pointer parameter given a pointer (a CWords, a byref, bytes)
    if not isinstance(v, int) or (isinstance(v, bool) and ctype != "bool"):
        raise ArgumentTypeError(
            function, name, f"an int (C {ctype}; bool and float are not)", type(v).__name__
        )
    if ctype == "qref_long":
        check_long(function, layout, name, v)
    if ctype == "qref_ulong":
        check_ulong(function, layout, name, v)
    if not low <= v <= high:
        raise PreconditionError(
            function,
            name,
            f"{v} is not a C {ctype} ({low} <= {name} <= {high}: the parameter's type)",
        )


def load(
    path: str | os.PathLike[str] | None = None, bits: int = 64, partial: bool = False
) -> CLibrary:
    """Load a library: ``path``, else ``$RECVMAP_LIB``, else our installed one for ``bits``."""
    if path is None:
        env = os.environ.get(ENV_VAR)
        path = env if env else default_path(bits)
    return CLibrary(path, bits, partial)
