# SPDX-License-Identifier: GPL-2.0-or-later
"""Native coverage: the C reference built with clang's sanitizers, its edges guiding libFuzzer.

``recvmap fuzz --native`` builds the C sources (installed beside the libraries) with

    clang -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined

outside the pip build, into the build cache (``fuzz.build``), then runs the harnesses with
atheris' sanitizer runtime preloaded: ``LD_PRELOAD=<atheris.path()>/asan_with_fuzzer.so``.
That runtime carries libFuzzer, so the instrumented library's coverage counters register
with the same fuzzer as the Python coverage of the model, and AddressSanitizer and UBSan
findings stop the run (``-fno-sanitize-recover`` plus ``UBSAN_OPTIONS=halt_on_error=1``).
Without the preload the instrumented library does not load at all (undefined
``__sancov_lowest_stack`` and friends), which is why the parent process never loads it.

By hand::

    LIB=$(python -c 'from recvmap.fuzz.subjects.native import build_native; \
        print(build_native(64))')
    LD_PRELOAD=$(python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so \\
    ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \\
    RECVMAP_NATIVE=64:$LIB RECVMAP_WORD_BITS=64 fuzz/campaign/harness_bitmap.py -max_total_time=30
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from .build import build_library

try:  # optional (the fuzz extra): it carries the sanitizer runtime
    import atheris
except ImportError:
    atheris = None

SANITIZE = (
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=fuzzer-no-link,address,undefined",
    "-fno-sanitize-recover=undefined",
)
CLANGS = ("clang-16", "clang-17", "clang-18", "clang-19", "clang")


class NativeError(RuntimeError):
    """Native coverage cannot run here; the message says what is missing."""


def clang() -> str | None:
    """A clang able to build for libFuzzer (``$RECVMAP_CLANG`` first)."""
    for name in (os.environ.get("RECVMAP_CLANG"), *CLANGS):
        if name and shutil.which(name):
            return name
    return None


def sanitizer_runtime() -> Path:
    """atheris' AddressSanitizer runtime with libFuzzer linked in."""
    if atheris is None:
        raise NativeError("native coverage needs atheris (pip install atheris)")
    path = Path(atheris.path()) / "asan_with_fuzzer.so"
    if not path.is_file():
        raise NativeError(f"{path} is missing: this atheris wheel has no sanitizer runtime")
    return path


def build_native(bits: int) -> Path:
    """The instrumented C reference for ``bits``-bit words (built once, then cached)."""
    cc = clang()
    if cc is None:
        raise NativeError(
            "native coverage needs clang and its runtimes (apt-get install clang-16 "
            "libclang-rt-16-dev)"
        )
    return build_library(bits, cc=cc, flags=SANITIZE)


def native_libraries(widths: Iterable[int]) -> dict[int, Path]:
    return {b: build_native(b) for b in widths}


def sanitizer_env() -> dict[str, str]:
    """What a harness process needs besides its configuration (``RECVMAP_NATIVE``, the
    campaign's ``HarnessConfig.native``) to run the instrumented library."""
    preload = str(sanitizer_runtime())
    old = os.environ.get("LD_PRELOAD")
    return {
        "LD_PRELOAD": f"{preload}:{old}" if old else preload,
        "ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1:abort_on_error=0",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        # Python's own allocator serves small blocks (the word arrays) from its arenas,
        # where ASan sees no redzone: a read past an array went unreported.
        "PYTHONMALLOC": "malloc",
        # ASan watches the arrays itself (redzones around calloc'd blocks) and names the
        # access; a guard page would turn the same read into a bare SEGV.
        "RECVMAP_GUARD": "none",
    }
