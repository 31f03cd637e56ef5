# SPDX-License-Identifier: GPL-2.0-or-later
"""Children die with their parent: a watchdog for the processes and folders of a run.

A campaign starts each harness in a session of its own, so that stopping a job kills its
whole process group (libFuzzer's fork-mode workers and the shells that start them
included). If recvmap itself is killed outright (SIGKILL, the OOM killer), nothing would
stop them: they kept fuzzing for their whole time share, and the run's temporary folder
stayed. So the first time a process adopts a child, it starts a watchdog: this file, run
as a script by the same Python, in a session of its own, holding the read end of a pipe
whose write end only the adopting process holds (a pipe end is closed by the kernel when
its holder dies, however it dies). The watchdog reads what it must look after from the
pipe: ``+G`` / ``-G`` adopt / release process group G, ``+d PATH`` / ``-d PATH`` a folder.
When the pipe reads end of file, its process is gone: the watchdog kills the groups still
adopted and removes the folders still registered, then exits.

A process group is released as soon as its job has ended (a group id may be reused), and
a folder that is kept on purpose (the logs of a finding) is released before the process
exits. ``sweep`` removes the temporary folders of dead runs that a watchdog could not
(the machine rebooted, the watchdog was killed too): each run folder names its owner.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OWNER = "OWNER"  # in a run folder: "<pid> <start time>" of the process that made it

_STATE: dict[str, Any] = {}  # "pid": the process the watchdog watches, "fd", "proc"


def _writer() -> int | None:
    """The write end of this process's pipe to its watchdog (started on first use)."""
    if _STATE.get("pid") == os.getpid():
        return int(_STATE["fd"])
    read, write = os.pipe()  # neither end is inherited by exec'd children
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(read)],
            pass_fds=(read,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a kill of recvmap's process group spares it
        )
    except OSError:
        os.close(read)
        os.close(write)
        return None
    os.close(read)
    _STATE.update(pid=os.getpid(), fd=write, proc=proc)
    atexit.register(finish)
    return write


def finish(seconds: float = 5.0) -> None:
    """At this process's exit: close the pipe and wait for the watchdog to do its part and
    end, so that recvmap leaves no process of its own behind when it returns."""
    if _STATE.get("pid") != os.getpid():
        return  # a forked child's copy of the state: not its watchdog
    fd, proc = _STATE.pop("fd"), _STATE.pop("proc")
    _STATE.pop("pid")
    try:
        os.close(fd)
        proc.wait(seconds)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _send(line: str) -> None:
    fd = _writer()
    if fd is not None:
        try:
            os.write(fd, line.encode(errors="surrogateescape") + b"\n")
        except OSError:
            pass


def adopt(pgid: int) -> None:
    """Kill process group ``pgid`` (a child started in a session of its own: its pid) if
    this process dies before ``release(pgid)``."""
    _send(f"+{pgid}")


def release(pgid: int) -> None:
    _send(f"-{pgid}")


def remove_on_death(folder: Path) -> None:
    """Remove ``folder`` if this process dies before ``keep(folder)``."""
    _send(f"+d {Path(folder).resolve()}")


def keep(folder: Path) -> None:
    _send(f"-d {Path(folder).resolve()}")


# --- run folders ----------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def claim(folder: Path) -> None:
    """Mark ``folder`` as this process's run folder: removed if the process dies
    (``remove_on_death``), or by the next run's ``sweep`` if the watchdog could not."""
    (folder / OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
    remove_on_death(folder)


def unclaim(folder: Path) -> None:
    """``folder`` outlives the run on purpose (it holds the logs of a finding)."""
    keep(folder)
    try:
        (folder / OWNER).unlink()
    except OSError:
        pass


def sweep(parent: Path, prefix: str) -> list[Path]:
    """Remove the run folders ``parent/prefix*`` whose owner is dead; those removed."""
    removed = []
    for folder in parent.glob(prefix + "*"):
        try:
            pid, started = (folder / OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # no owner: kept on purpose, or not one of ours
        if pid.isdigit() and _start_time(int(pid)) == started:
            continue  # its run is still going
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


# --- the watchdog (this file as a script) ---------------------------------------------------


def _kill(groups: set[int]) -> None:
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except OSError:
            pass
    end = time.monotonic() + 5.0  # the folders go once their writers are gone
    while groups and time.monotonic() < end:
        alive = set()
        for g in groups:
            try:
                os.killpg(g, 0)
                alive.add(g)
            except OSError:
                pass
        groups = alive
        time.sleep(0.05)


def watch(fd: int) -> None:
    """Read the pipe until its writer is gone, then kill and remove what is left."""
    groups: set[int] = set()
    folders: set[str] = set()
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="surrogateescape")
            if line.startswith(("+d ", "-d ")):
                (folders.add if line[0] == "+" else folders.discard)(line[3:])
            elif line[1:].isdigit():
                (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    _kill(groups)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for recvmap, not for us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(int(sys.argv[1]))
