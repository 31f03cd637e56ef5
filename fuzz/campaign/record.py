# SPDX-License-Identifier: GPL-2.0-or-later
"""The input a harness process is running, kept where its parent reads it after the
process ended: the crash input of an engine that writes none.

libFuzzer writes the input that crashed it (``crash-*``); the random engine cannot (a
segfault ends the process before any Python runs), nor can the pytest plugin's fuzz item,
and a library that calls ``exit(0)`` inside a function ends either process with a status
that looks clean. So the harness copies each input into shared memory before it runs and
marks it done after: a process that ended while an input was marked running ended during
that input, whatever its status, and the input is the reproducer's start.

Two stores: a file (``InputRecord(path)``, a campaign job's ``<stats>.input``) read by the
campaign after the process ended, or anonymous shared memory (``InputRecord()``) made
before a fork and read by the parent. The copy is a memory store (about a microsecond per
input), never a write(2).
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

_HEAD = struct.Struct("<IQ")  # running flag, the input's length
CAPACITY = 1 << 20  # bytes of input kept (libFuzzer's -max_len is 1024 in a campaign)
RUNNING = 0x52554E31  # "RUN1": an input is running


class InputRecord:
    """Shared memory holding the running input (see the module's doc)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        size = _HEAD.size + CAPACITY
        self.path = None if path is None else Path(path)
        if self.path is None:
            self._map = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, size)  # sparse: only the pages written take room
                self._map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
            finally:
                os.close(fd)

    def start(self, payload: bytes) -> None:
        """The input ``payload`` is about to run."""
        n = min(len(payload), CAPACITY)
        self._map[_HEAD.size : _HEAD.size + n] = memoryview(payload)[:n]
        _HEAD.pack_into(self._map, 0, RUNNING, len(payload))

    def done(self) -> None:
        """The input ran to its end (a divergence or a crash leaves it running)."""
        _HEAD.pack_into(self._map, 0, 0, 0)

    def running(self) -> bytes | None:
        """The input that was running (None: none, or one too long to keep)."""
        return _running(self._map)

    def close(self) -> None:
        self._map.close()


def _running(buf: bytes | mmap.mmap) -> bytes | None:
    if len(buf) < _HEAD.size:
        return None
    flag, n = _HEAD.unpack_from(buf)
    if flag != RUNNING or n > CAPACITY or _HEAD.size + n > len(buf):
        return None
    return bytes(buf[_HEAD.size : _HEAD.size + n])


def running_input(path: str | os.PathLike[str]) -> bytes | None:
    """The input a process that kept its record at ``path`` was running when it ended."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD.size)
            if len(head) < _HEAD.size:
                return None
            flag, n = _HEAD.unpack(head)
            if flag != RUNNING or n > CAPACITY:
                return None
            payload = f.read(n)
    except OSError:
        return None
    return payload if len(payload) == n else None


def record_path(stats: str | os.PathLike[str]) -> Path:
    """Where the harness whose statistics go to ``stats`` keeps its running input."""
    return Path(f"{stats}.input")
