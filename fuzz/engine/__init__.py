# SPDX-License-Identifier: GPL-2.0-or-later
"""Run a program on the model and an implementation, compare after every operation, find
the first divergence, minimize; run one on the model alone; run a function in a forked
child (``isolated``).

May import ``recvmap.fuzz.subjects``, ``recvmap.fuzz.program`` and ``recvmap.pymodel``
(and ``recvmap.qemu_ref``).
"""

from .isolate import isolated
from .replay import ModelRun, first_divergence, model_run, model_session, open_session
from .session import (
    INVALID,
    Divergence,
    DivergenceError,
    Outcome,
    Session,
    first_difference,
    initial_image,
    live_image,
    minimize,
    run,
    run_stream,
)

__all__ = [
    "INVALID",
    "Divergence",
    "DivergenceError",
    "ModelRun",
    "Outcome",
    "Session",
    "first_difference",
    "first_divergence",
    "initial_image",
    "isolated",
    "live_image",
    "minimize",
    "model_run",
    "model_session",
    "open_session",
    "run",
    "run_stream",
]
