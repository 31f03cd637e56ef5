# SPDX-License-Identifier: GPL-2.0-or-later
"""The fork sandbox: run a function in a forked child, so that whatever the C it calls does
to its process is a verdict, not the end (or a false verdict) of ours.

The child runs in a process group of its own and hands its result back through a pipe,
framed by its length; the parent waits for the CHILD to end, never for the pipe to close.
So a library that:

- crashes (a segfault, an assert) is "crashed (SIGSEGV)";
- runs longer than ``timeout`` is a HANG (the child and everything it started are killed);
- ends the process (``exit(0)`` in a function) is "ended the process";
- starts a process (``fork``) is "started a process", and the process is killed with the
  group: it cannot keep the pipe open and pose as a HANG, nor outlive the verdict;
- closes the process's descriptors (the result pipe among them) is "closed ... descriptors";

each a failing verdict ("fail", message) that names what the library did. QEMU's bitmap and
received-page functions do none of these.

``confirm_budget`` is the one rule for how long a suspected hang is re-run alone before it
is a HANG (the campaign's ``alone.py``, ``recvmap replay``, the mutation runner).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import pickle
import select
import signal
import struct
import time
from typing import Any

CONFIRM_FACTOR = 4.0  # a suspected hang is re-run alone for this many times --timeout ...
CONFIRM_MIN = 30.0  # ... and never less than this many seconds (when time allows)

_LENGTH = struct.Struct("<Q")  # the result's frame: its length, then its pickle
CLOSED_EXIT = 121  # the child's status when the library closed the result pipe

GUARD_NOTE = "arrays handed to C sit against guard pages: an access past an array faults"
NEVER = "QEMU's functions never do"


def confirm_budget(timeout: float) -> float:
    """The full budget of a re-run alone of a suspected hang: max(4 x timeout, 30 s)."""
    return max(CONFIRM_FACTOR * timeout, CONFIRM_MIN)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (no orphan replaying a hang)."""
    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


STARTED = "the implementation started a process"
CLOSED = "the implementation closed the process's file descriptors"


def started_a_process() -> bool:
    """Whether this process has a child it did not wait for (running, or ended unreaped):
    in a process of its own, after a call into a library, the library started it."""
    try:
        os.waitpid(-1, os.WNOHANG)  # (0, 0): one is running; (pid, status): one ended
    except ChildProcessError:
        return False
    return True


class Conduct:
    """What a library may not do to a process that calls it, checked after the calls (two
    system calls): start a process, or close a descriptor (``fd``: one to watch, by
    default one opened here)."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = os.open(os.devnull, os.O_RDONLY) if fd is None else fd
        self.identity = _identity(self.fd)

    def closed(self) -> bool:
        """Whether the descriptor was closed (or another file took its number)."""
        return _identity(self.fd) != self.identity

    def problem(self) -> str | None:
        """What the library did, "the implementation ..." (None: nothing it may not)."""
        if self.closed():
            return CLOSED
        if started_a_process():
            return STARTED
        return None


def _child(fn: Any, args: tuple[Any, ...], wfd: int) -> int:
    """The child's part: run ``fn``, check what the library did to the process, send the
    result framed by its length; the exit status."""
    conduct = Conduct(wfd)
    code = 0
    try:
        result = fn(*args)
    except BaseException as err:  # noqa: BLE001 - ours, not the library's: said as such
        result, code = ("error", f"{type(err).__name__}: {err}"), 1
    if conduct.closed():  # the result pipe is gone: the exit status says it
        return CLOSED_EXIT
    if started_a_process():
        result, code = ("fail", f"{STARTED} on this program ({NEVER})"), 1
    try:
        data = pickle.dumps(result)
    except Exception as err:  # noqa: BLE001 - an unpicklable result is ours, say so
        data, code = pickle.dumps(("error", f"{type(err).__name__}: {err}")), 1
    try:
        with os.fdopen(wfd, "wb") as w:
            w.write(_LENGTH.pack(len(data)) + data)
    except OSError:
        return CLOSED_EXIT
    return code


def isolated(fn: Any, *args: Any, timeout: float | None = None) -> Any:
    """``fn(*args)`` in a forked child; ("fail", message) when the child crashes, ends
    without its result, starts a process, closes its descriptors, or runs longer than
    ``timeout`` seconds (a HANG: it is killed, with everything it started); ("error",
    message) when ``fn`` raised (recvmap's failure, not the library's)."""
    if not hasattr(os, "fork"):
        return fn(*args)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.setpgid(0, 0)
            _die_with_parent()
            faulthandler.disable()  # a crash here is the verdict the parent reports, no dump
            os.close(rfd)
            status = _child(fn, args, wfd)
        finally:
            os._exit(status)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # both sides set it: no race with the child's first call
    os.close(wfd)
    try:
        data, status = _wait(pid, rfd, timeout)
    finally:
        os.close(rfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # what the library started dies with the child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if status is None:
        return "fail", f"HANG: the implementation did not finish within {timeout} s"
    if data is not None:
        return pickle.loads(data)
    return "fail", _ended(status)


def _ended(status: int) -> str:
    """What a child that ended without its result tells of the library."""
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        what = f"the implementation crashed ({sig}) on this program"
        if sig in ("SIGSEGV", "SIGBUS"):
            what += f": a bad memory access, e.g. past an array ({GUARD_NOTE})"
        return what
    code = os.WEXITSTATUS(status)
    if code == CLOSED_EXIT:
        return f"{CLOSED} on this program ({NEVER})"
    return f"the implementation ended the process (exit status {code}) on this program ({NEVER})"


def _wait(pid: int, rfd: int, timeout: float | None) -> tuple[bytes | None, int | None]:
    """Read the child's framed result until the child ends: (the result or None, its wait
    status, None when ``timeout`` ran out first)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    os.set_blocking(rfd, False)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # no pidfd: the child's end is polled
    buf = bytearray()
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = 0.05 if pidfd is None else left
            if wait is not None and left is not None:
                wait = min(wait, left)
            watched = [rfd] if pidfd is None else [rfd, pidfd]
            ready, _, _ = select.select(watched, [], [], wait)
            if rfd in ready:
                _drain(rfd, buf)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                _drain(rfd, buf)
                return _framed(buf), status
            if left is not None and left <= 0:
                os.killpg(pid, signal.SIGKILL)
                return None, None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _drain(rfd: int, buf: bytearray) -> None:
    while True:
        try:
            chunk = os.read(rfd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            return
        buf += chunk


def _framed(buf: bytearray) -> bytes | None:
    if len(buf) < _LENGTH.size:
        return None
    (n,) = _LENGTH.unpack_from(buf)
    body = bytes(buf[_LENGTH.size :])
    return body if len(body) == n else None
