# SPDX-License-Identifier: GPL-2.0-or-later
"""Running the compiler on a tree's code: bounded, and quoting only the tree.

A tree's code decides what the compiler reads: ``#include "/dev/zero"`` made gcc grow
without end, and ``#include "/etc/..."`` put that file's text into the compiler's error,
which the one-line error quoted. Every compiler run of a tree build goes through ``run``
(``run_all`` for several at once): bounded memory (``COMPILE_MEMORY``) and time
(``COMPILE_SECONDS``). ``quoted`` gives a compiler message on one bounded line, and its
text only when it is about a file the build may read (the tree, the build's folder, our
glue); otherwise the place alone.
"""

from __future__ import annotations

import re
import resource
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

COMPILE_SECONDS = 300.0  # one compiler run of a tree's unit (a few seconds normally)
COMPILE_MEMORY = 1 << 30  # its address space: a build of a tree needs < 256 MB (measured)
QUOTE_MAX = 200  # characters of a compiler message in a one-line error


class CompilerStuck(RuntimeError):
    """A compiler run outlived COMPILE_SECONDS (it was killed); the message says which."""


def _limits() -> None:
    """In a compiler process, before exec: bounded memory (a file that never ends)."""
    resource.setrlimit(resource.RLIMIT_AS, (COMPILE_MEMORY, COMPILE_MEMORY))


def run_all(
    commands: Sequence[Sequence[str]], seconds: float = COMPILE_SECONDS
) -> list[tuple[int, str, str]]:
    """Run the commands at the same time; (status, stdout, stderr) of each, in order.
    Each runs in bounded memory; one still running after ``seconds`` is killed
    (CompilerStuck)."""
    procs = [
        subprocess.Popen(
            list(c), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limits
        )
        for c in commands
    ]
    deadline = time.monotonic() + seconds
    out = []
    try:
        for c, p in zip(commands, procs, strict=True):
            try:
                stdout, stderr = p.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise CompilerStuck(
                    f"{Path(c[-1]).name}: the compiler still ran after {seconds:g} s (a file "
                    "it reads that never ends, such as a device?)"
                ) from None
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def run(command: Sequence[str], seconds: float = COMPILE_SECONDS) -> tuple[int, str, str]:
    """One bounded compiler run (``run_all``)."""
    return run_all([command], seconds)[0]


_PLACE = re.compile(r"(?P<file>[^:]+):(?P<place>\d+(?::\d+)?): (?P<rest>.*)")


def quoted(line: str, mine: Sequence[Path]) -> str:
    """One compiler diagnostic line, bounded; about a file outside ``mine``, its place only."""
    line = " ".join(line.split())
    m = _PLACE.match(line)
    if m is not None and mine and not under(Path(m["file"]), mine):
        kind = "fatal error" if "fatal" in m["rest"] else "error"
        return f"{m['file']}:{m['place']}: {kind} in a file outside the tree (not quoted)"
    return line if len(line) <= QUOTE_MAX else line[: QUOTE_MAX - 3] + "..."


def under(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (resolved) lies under one of ``roots``."""
    try:
        real = path.resolve()
    except OSError:
        return False
    return any(real.is_relative_to(r.resolve()) for r in roots)
