# SPDX-License-Identifier: GPL-2.0-or-later
"""Start a harness script: atheris with libFuzzer's flags, or the random loop without it.

This module imports nothing of recvmap at load time: atheris must instrument the model as
it is first imported, so that the model's branches -- QEMU's rules -- are the coverage
libFuzzer follows. The decoders, the engine, the ctypes faces and the vector writer are
left uninstrumented: their branches say nothing about QEMU's behaviour, and instrumenting
the decoders triples the cost of an operation (bench/engine_ops.py).

The scripts ``fuzz/campaign/harness_<layer>.py`` (bitmap, ram, recovery) each name their
layer and call ``script_main``. Each input decodes to a program that runs on the model and
on the implementation under test; every return value and memory image is compared after
every operation. Run a script directly with libFuzzer's flags (fork, merge and minimize
modes work):

    fuzz/campaign/harness_bitmap.py -runs=1000 corpus/
    RECVMAP_WORD_BITS=32 fuzz/campaign/harness_ram.py -max_total_time=30 -seed=1 corpus/

Environment (see recvmap.fuzz.campaign.harness): RECVMAP_WORD_BITS, RECVMAP_IMPL,
RECVMAP_NATIVE, RECVMAP_ARCH, RECVMAP_HOSTS, RECVMAP_OUT, RECVMAP_STATS,
RECVMAP_MAX_OPS, RECVMAP_ENGINE=random (no atheris).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

INSTRUMENT_EXCLUDE = [
    "recvmap.fuzz.campaign.harness",
    "recvmap.fuzz.engine",
    "recvmap.fuzz.engine.session",
    "recvmap.fuzz.engine.ram",
    "recvmap.fuzz.engine.replay",
    "recvmap.fuzz.subjects.impls",
    "recvmap.fuzz.vectors",
    "recvmap.fuzz.vectors.files",
    "recvmap.fuzz.program",
    "recvmap.fuzz.program.format",
    "recvmap.fuzz.campaign.launch",
    "recvmap.fuzz.program.decode_bitmap",
    "recvmap.fuzz.program.decode_ram",
    "recvmap.fuzz.program.ram_setup",
    "recvmap.qemu_ref",
    "recvmap.qemu_ref.loader",
    "recvmap.qemu_ref.ram",
    "recvmap.qemu_ref.batch",
    "recvmap.fuzz.subjects",
    # The model's memory representation: its branches are about bytes and chunk sizes,
    # not QEMU's rules, and it is the hottest code of the model.
    "recvmap.pymodel.words",
]
MODEL = "recvmap.pymodel"
MODEL_UNGUIDED = ("recvmap.pymodel.words",)
# Comparison tracing (libFuzzer's value profile of every == and <) on the model: measured
# in bench/engine_ops.py and by coverage reached in 60 s (docs/internals.md, "Atheris").
TRACE_DATAFLOW = False


class _NotGuiding:
    """The modules atheris must leave alone: everything but the model's rules.

    A container for atheris' exclusion test (``name in excluded``): any recvmap module
    outside recvmap.pymodel (engine, decoders, ctypes faces: bookkeeping) and the model's
    representation modules; new modules of other rooms are excluded without a list edit.
    """

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name == MODEL or name.startswith(MODEL + "."):
            return name in MODEL_UNGUIDED
        return True


def instrumentation() -> Any:
    """The context manager under which the harnesses import what atheris instruments."""
    import atheris

    try:
        from atheris.import_hook import HookManager
    except ImportError:  # pragma: no cover - another atheris: its public form
        return atheris.instrument_imports(include=["recvmap"], exclude=INSTRUMENT_EXCLUDE)
    return HookManager({"recvmap"}, _NotGuiding(), True, trace_dataflow=TRACE_DATAFLOW)


def script_main(layer: str, argv: list[str] | None = None) -> int:
    """The body of ``harness_<layer>.py``."""
    argv = list(sys.argv if argv is None else argv)
    try:
        import atheris
    except ImportError:
        atheris = None
    if atheris is None or os.environ.get("RECVMAP_ENGINE") == "random":
        from recvmap.fuzz.campaign.harness import random_main

        return random_main(layer, argv)
    with instrumentation():
        from recvmap.fuzz.campaign import harness
    h = harness.harness_from_env(layer)
    if h.stats_path is not None:
        at_exit(lambda: h.write_stats(time.monotonic()))
    atheris.Setup(argv, h.one_input)
    atheris.Fuzz()
    return 0


_HOOKS: list[object] = []  # the ctypes callbacks must outlive the process's exit


def at_exit(fn: Callable[[], None]) -> bool:
    """Run ``fn`` when libFuzzer ends the process with exit(), which skips Python's atexit.

    glibc's ``__cxa_atexit`` is the exported form of atexit(). Returns False where it is
    missing (the statistics then lag by up to half a second).
    """
    import ctypes

    try:
        register = ctypes.CDLL(None).__cxa_atexit
    except (OSError, AttributeError):
        return False
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: fn())
    _HOOKS.append(callback)
    register.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return bool(register(ctypes.cast(callback, ctypes.c_void_p), None, None) == 0)
