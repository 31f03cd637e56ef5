# SPDX-License-Identifier: GPL-2.0-or-later
"""What a library under test prints never reaches recvmap's stdout unmarked.

A library runs inside recvmap's processes (loaded by ctypes, called in forked children), so
whatever it writes on file descriptor 1 would land among recvmap's own lines: a library
printing "0 failed" or a fake summary could pass for recvmap's verdict. ``marked_stdout``
points descriptor 1 (of this process and of every child it forks meanwhile) at a pipe; a
thread copies each line to the real stdout behind a mark naming the library, and
Python's ``sys.stdout`` writes to the real stdout directly. The harness processes of a
campaign need none of this: their stdout is a file of the job (``campaign._start``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator

LINE_MAX = 4096  # bytes of one marked line (a longer one is cut, and says so)


def _relay(read: int, write: int, mark: bytes) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > LINE_MAX:
            lines.append(pending)
            pending = b""
        for line in lines:
            cut = b" [cut]" if len(line) > LINE_MAX else b""
            _write_all(write, mark + line[:LINE_MAX] + cut + b"\n")
    if pending:
        _write_all(write, mark + pending[:LINE_MAX] + b"\n")
    os.close(read)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


@contextlib.contextmanager
def marked_stdout(name: str) -> Iterator[None]:
    """Inside the block, a line the library ``name`` writes on descriptor 1 reaches the
    real stdout as ``[name stdout] line``."""
    try:
        sys.stdout.flush()
        uses_fd1 = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        uses_fd1 = False  # a captured or replaced sys.stdout: descriptor 1 is not it
    real = os.dup(1)
    read, write = os.pipe()
    os.dup2(write, 1)
    os.close(write)
    relay = threading.Thread(
        target=_relay, args=(read, real, f"[{name} stdout] ".encode()), daemon=True
    )
    relay.start()
    saved = sys.stdout
    if uses_fd1:
        sys.stdout = open(  # noqa: SIM115 - closed below
            os.dup(real), "w", buffering=1, encoding=saved.encoding, errors=saved.errors
        )
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        if uses_fd1:
            sys.stdout.close()
            sys.stdout = saved
        os.dup2(real, 1)  # our end of the pipe closes: the relay reads its end
        relay.join(timeout=1.0)  # a child the library left running may hold the pipe
        if not relay.is_alive():
            os.close(real)  # else the relay keeps it (the number must not be reused)
