# SPDX-License-Identifier: GPL-2.0-or-later
"""The fork sandbox: run a function in a forked child, so that a crash of the C it calls
(a segfault, an assert) or a hang is a verdict, not the end of the process."""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import time
from typing import Any


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (no orphan replaying a hang)."""
    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


GUARD_NOTE = "arrays handed to C sit against guard pages: an access past an array faults"


def isolated(fn: Any, *args: Any, timeout: float | None = None) -> Any:
    """``fn(*args)`` in a forked child; ("fail", "... crashed ...") if the child dies,
    ("fail", "HANG ...") if it runs longer than ``timeout`` seconds (it is killed)."""
    if not hasattr(os, "fork"):
        return fn(*args)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            _die_with_parent()
            os.close(rfd)
            data = pickle.dumps(fn(*args))
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            data = pickle.dumps(("fail", f"{type(err).__name__}: {err}"))
            code = 1
        with os.fdopen(wfd, "wb") as w:
            w.write(data)
        os._exit(code)
    os.close(wfd)
    chunks = []
    deadline = None if timeout is None else time.monotonic() + timeout
    with os.fdopen(rfd, "rb", buffering=0) as r:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "fail", f"HANG: the implementation did not finish within {timeout} s"
            chunk = r.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        what = f"the implementation crashed ({sig}) on this program"
        if sig in ("SIGSEGV", "SIGBUS"):
            what += f": a bad memory access, e.g. past an array ({GUARD_NOTE})"
        return "fail", what
    return pickle.loads(b"".join(chunks))
