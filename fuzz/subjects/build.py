# SPDX-License-Identifier: GPL-2.0-or-later
"""Build variants of the C reference outside the pip build: mutants, sanitized, instrumented.

The C sources and headers are installed beside the libraries (``recvmap/qemu_ref/``), so this
works from a normal install as well as from the source tree. ``edits`` are textual
replacements applied to a copy of the sources; each must match exactly once, so a mutant
that no longer applies fails loudly instead of building the unchanged reference.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from recvmap.qemu_ref.loader import HEADERS, package_file

SOURCES = ("bitops.c", "bitmap.c", "ram.c", "alloc.c")
PRIVATE_HEADERS = ("alloc.h",)  # not the ABI: the maps the library allocates (alloc.c)
WARNINGS = ("-std=c11", "-Wall", "-Wextra", "-Werror")


class BuildError(RuntimeError):
    pass


def source_dir() -> Path:
    """The folder holding the installed C sources and headers."""
    return package_file(HEADERS[0]).parent


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("RECVMAP_CACHE", Path(base) / "recvmap"))


def build_library(
    bits: int = 64,
    edits: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    cc: str = "gcc",
    flags: Sequence[str] = ("-O2",),
    out: Path | None = None,
) -> Path:
    """Compile the C reference, with ``edits`` per file, into a shared library (cached)."""
    src = source_dir()
    texts = {name: (src / name).read_text() for name in (*SOURCES, *HEADERS, *PRIVATE_HEADERS)}
    for name, replacements in (edits or {}).items():
        for old, new in replacements:
            count = texts[name].count(old)
            if count != 1:
                raise BuildError(
                    f"edit of {name} must match exactly once, matched {count}: {old!r}"
                )
            texts[name] = texts[name].replace(old, new)
    cmd = [cc, *WARNINGS, *flags, "-fPIC", "-shared", "-pthread"]
    if bits == 32:
        cmd.append("-DQREF_BITS_PER_LONG=32")
    digest = hashlib.sha256(repr((sorted(texts.items()), cmd)).encode()).hexdigest()[:16]
    work = cache_dir() / "builds" / digest
    lib = out or work / f"libqemuref{bits}.so"
    if lib.exists():
        return lib
    work.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (work / name).write_text(text)
    if shutil.which(cc) is None:
        raise BuildError(f"compiler {cc!r} not found")
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run(
        [*cmd, "-o", str(tmp), *(str(work / s) for s in SOURCES)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BuildError(f"{cc} failed:\n{proc.stderr.strip()}")
    tmp.replace(lib)
    return lib
