# SPDX-License-Identifier: GPL-2.0-or-later
"""Re-running one suspicious input alone: the one place that confirms a hang.

A fuzzer that stops hearing from its process after ``--timeout`` seconds only SUSPECTS a
hang: on a loaded machine a slow but correct input looks the same. Before a hang is
reported, its input runs again in a fresh process that runs nothing else, with a longer
budget (``engine.isolate.confirm_budget``): still running at the end is a confirmed hang;
an input that completes is SLOW, not a finding. The campaign (``campaign.py``) and the
mutation runner (``mutation.mutants``) both re-run through ``rerun_alone``.

``python -m recvmap.fuzz.campaign.alone LAYER INPUT`` is the campaign's fresh process: the
harness of the layer, configured from the same ``RECVMAP_*`` environment as the job that
suspected the hang, runs the one input (the same decoding, the same guard page) and prints
``alone: <seconds>`` on its last line; its watchdog (``RECVMAP_TIMEOUT``) ends it with the
harness's hang status when the input outruns the budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from ..engine import DivergenceError
from ..engine.isolate import NEVER
from . import lifeline
from .harness import HANG_EXIT, Harness, MisbehaviourError
from .harness_env import HarnessConfig

STARTUP = 3.0  # seconds a fresh Python process may need before the input starts


@dataclass
class Rerun:
    """How a re-run alone ended."""

    finished: bool  # False: still running when the budget ran out (it was killed)
    returncode: int | None
    seconds: float  # wall time of the process
    stdout: str
    stderr: str
    ended: float = 0.0  # time.monotonic() when it ended or was killed

    @property
    def started_at(self) -> float | None:
        """When the campaign's fresh process reached the input (``alone: started T``, T on
        the system-wide monotonic clock the parent reads too)."""
        for line in self.stdout.splitlines():
            if line.startswith("alone: started"):
                try:
                    return float(line.split()[2])
                except (IndexError, ValueError):
                    return None
        return None

    @property
    def input_ran(self) -> float | None:
        """Seconds the input ran before the process ended (killed or not)."""
        start = self.started_at
        return None if start is None else max(0.0, self.ended - start)

    @property
    def started(self) -> bool:
        """Whether the campaign's fresh process reached the input."""
        return self.started_at is not None

    def ending(self) -> tuple[str, str]:
        """How the input ended alone: ("completed" | "diverged" | "crashed" | "hung" |
        "running" | "not started" | "failed", what to say). "failed" is recvmap's own
        error, never the library's; "crashed" is the library's doing: a signal, an end of
        the process inside the input, a process started or descriptors closed."""
        if not self.finished:
            return ("running", "") if self.started else ("not started", "")
        markers = ((DIVERGED, "diverged"), (MISBEHAVED, "crashed"), (FAILED, "failed"))
        for line in self.stdout.splitlines():
            for marker, kind in markers:
                if line.startswith(marker):
                    return kind, line[len(marker) :]
        code = self.returncode or 0
        if code < 0:
            sig = signal.Signals(-code).name
            return "crashed", f"the implementation crashed ({sig}) during the input"
        if code == HANG_EXIT:
            return "hung", "its watchdog ended it"
        if not self.started:
            return "failed", f"the fresh process ended (exit status {code}) before the input"
        if self.input_seconds is None:  # started, never finished: the library ended it
            return "crashed", (
                f"the implementation ended the process (exit status {code}) during the input "
                f"({NEVER})"
            )
        return "completed", f"completed in {self.input_seconds:.1f} s"

    @property
    def input_seconds(self) -> float | None:
        """The input's own time, as the fresh process measured it (``alone: S``)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("alone: ") and not line.startswith("alone: started"):
                try:
                    return float(line.split()[1])
                except (IndexError, ValueError):
                    return None
        return None


def rerun_alone(argv: Sequence[str], budget: float, env: dict[str, str] | None = None) -> Rerun:
    """Run ``argv`` in its own session for at most ``budget`` seconds.

    On timeout the whole process group is killed (a library's threads and children too)
    and reaped, so nothing of the re-run survives it. Output goes to temporary files, not
    pipes: a process stuck with a full pipe would look like a hang.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        lifeline.adopt(proc.pid)  # killed with us, should we die first
        finished = True
        try:
            proc.wait(max(0.0, budget))
        except subprocess.TimeoutExpired:
            finished = False
        finally:  # also when a signal (Ctrl-C, SIGTERM) interrupts the wait
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            lifeline.release(proc.pid)
        ended = time.monotonic()
        took = ended - t0
        out.seek(0)
        err.seek(0)
        text = out.read()[-(1 << 16) :].decode(errors="replace")
        etext = err.read()[-(1 << 16) :].decode(errors="replace")
    return Rerun(finished, proc.returncode if finished else None, took, text, etext, ended)


def input_argv(layer: str, input_path: str | os.PathLike[str]) -> list[str]:
    """The command of the campaign's fresh process for one input of ``layer``."""
    return [sys.executable, "-m", "recvmap.fuzz.campaign.alone", layer, str(input_path)]


DIVERGED = "alone: diverged: "  # the markers of _main's own endings, on stdout
MISBEHAVED = "alone: misbehaved: "
FAILED = "alone: recvmap failed: "


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m recvmap.fuzz.campaign.alone LAYER INPUT", file=sys.stderr)
        return 2

    # the job's statistics are not ours to write
    harness = Harness.from_config(argv[0], HarnessConfig.from_env().replace(stats=None))
    harness.check_conduct()
    data = open(argv[1], "rb").read()  # noqa: SIM115 - read at once
    t0 = time.monotonic()
    print(f"alone: started {t0:.3f}", flush=True)
    try:
        harness.one_input(data)  # a hang exits HANG_EXIT
    except DivergenceError as err:
        print(DIVERGED + str(err).splitlines()[0], flush=True)
        return 1
    except MisbehaviourError as err:
        print(MISBEHAVED + str(err), flush=True)
        return 1
    except Exception as err:  # noqa: BLE001 - ours, not the library's: said as such
        traceback.print_exc()
        print(FAILED + f"{type(err).__name__}: {err}".splitlines()[0], flush=True)
        return 1
    print(f"alone: {time.monotonic() - t0:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
