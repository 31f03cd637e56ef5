# SPDX-License-Identifier: GPL-2.0-or-later
"""Start a harness script: atheris with libFuzzer's flags, or the random loop without it.

This module imports nothing of the model at load time (only the environment contract,
``harness_env``, which imports nothing of recvmap): atheris must instrument the model as
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

The environment configures the harness (``harness_env.HarnessConfig``; this table is
``HarnessConfig.describe()``, and tests/test_single_home.py holds the two together)::

    RECVMAP_WORD_BITS          64, 32 or both (default: every width the library has)
    RECVMAP_IMPL               a user's shared library (QEMU's names) instead of ours
    RECVMAP_NATIVE             64:PATH,32:PATH: sanitizer builds of ours (subjects.native)
    RECVMAP_ARCH               comma-separated QEMU targets (ram, recovery; default: all)
    RECVMAP_HOSTS              comma-separated hosts of the arch table (default: all)
    RECVMAP_RECEIVER_BITS      recovery: the source's word width (the sender's: either)
    RECVMAP_RELEASE            the QEMU release the model follows (default: newest)
    RECVMAP_MAX_OPS            operations per program
    RECVMAP_MAX_WORDS          words per bitmap array (bitmap layer)
    RECVMAP_OUT                folder for minimized reproducers
    RECVMAP_STATS              a JSON file the harness rewrites twice a second (the campaign's)
    RECVMAP_STATS_PER_PROCESS  set: statistics go to RECVMAP_STATS.<pid> (fork-mode workers)
    RECVMAP_TIMEOUT            seconds one input may take before it is a HANG (0: none)
    RECVMAP_DEADLINE           epoch seconds by which a divergence's vector is written (cut short)
    RECVMAP_SKIP               comma-separated sha256 of inputs not to run (known slow inputs)
    RECVMAP_ENGINE             random: the random loop instead of atheris
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recvmap.fuzz.campaign.harness_env import HarnessConfig

try:  # optional (the fuzz extra): without it the harnesses run the random loop
    import atheris
    from atheris.import_hook import HookManager
except ImportError:
    atheris = None

ROOMS = tuple(
    line
    for line in (Path(__file__).resolve().parents[1] / "rooms.txt").read_text().splitlines()
    if line and not line.startswith("#")
)  # the one list of rooms, lowest first
MODEL = ROOMS[0]  # the lowest room, QEMU's rules: the only code whose branches guide atheris
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


def harness_path(layer: str) -> Path:
    """The harness script of ``layer`` next to this module (source tree or installed)."""
    return Path(__file__).resolve().parent / f"harness_{layer}.py"


def atheris_available() -> bool:
    return atheris is not None


def engine_of(choice: str) -> str:
    """The engine a job runs for ``--engine choice``: "atheris", or "random" when asked
    or when atheris is not installed ("auto")."""
    if choice == "random" or (choice == "auto" and not atheris_available()):
        return "random"
    return "atheris"


def instrumentation() -> Any:
    """The context manager under which the harnesses import what atheris instruments."""
    return HookManager({"recvmap"}, _NotGuiding(), True, trace_dataflow=TRACE_DATAFLOW)


def script_main(layer: str, argv: list[str] | None = None) -> int:
    """The body of ``harness_<layer>.py``."""
    argv = list(sys.argv if argv is None else argv)
    config = HarnessConfig.from_env()
    fuzzing = atheris is not None and config.engine != "random"
    with instrumentation() if fuzzing else contextlib.nullcontext():
        # lazy: atheris instruments the model as this import first loads it
        from recvmap.fuzz.campaign import harness
    if not fuzzing:
        return harness.random_main(layer, argv)
    h = harness.Harness.from_config(layer, config)
    h.check_conduct()  # this process is the harness's own
    if not any(a.startswith("-print_funcs=") for a in argv):
        # libFuzzer names each newly covered C function through the sanitizer's symbolizer,
        # a process it starts and keeps: that child would read as the library's own
        argv.insert(1, "-print_funcs=0")
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
    try:
        register = ctypes.CDLL(None).__cxa_atexit
    except (OSError, AttributeError):
        return False
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: fn())
    _HOOKS.append(callback)
    register.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return bool(register(ctypes.cast(callback, ctypes.c_void_p), None, None) == 0)
