# SPDX-License-Identifier: GPL-2.0-or-later
"""Mutation testing of the differential fuzzer: how many broken C references does it catch?

A *mutant* is the C reference (``qemu_ref/*.c`` and the macros of its headers) with one small
edit. Systematic mutants come from universalmutator's C rules, placed by tree-sitter
(``generate.py``); realistic ones, modelled on plausible patch mistakes, are written by hand
in ``mutants_hand.py``. Each mutant is compiled in both word widths with
``build.build_library`` (edits match exactly once) and fuzzed against the model, one fresh
process per (mutant, seed), so a mutant that crashes or hangs never takes the runner down.

Survivors of the fuzzing meet the other oracles: QEMU's asserts (``abort``), threads through
the atomic helpers (``stress``: qemu_ref/stress.c and ``CLEAR_STRESS_C``), and fuzzing
under AddressSanitizer/UBSan/LeakSanitizer (``asan``).

What counts (an honest score). A *kill* has one of six causes: a divergence from the model,
an abort (QEMU's assert where it must fire, or a SIGABRT), a crash by another signal, a
sanitizer report, a lost bit (the concurrency programs), or a hang confirmed by re-running
the input that hung alone with a generous timeout. Anything else is an *error*, counted
apart and never as a kill: a Python exception in the harness, a non-zero exit after a clean
result, a crash the input does not reproduce, an oracle that could not run. A hang the
re-run does not reproduce is an *unconfirmed hang*. A mutant is *equivalent* only when its
machine code (.text, .rodata, .data, read with pyelftools) is the reference's; a mutant
argued equivalent (``mutants_hand``: a reason; a dropped barrier; an atomic made plain) is
fuzzed anyway and, when nothing kills it, reported as *argued equivalent, not killed*.

Verdicts: killed (every seed, or an extra oracle), flaky (some seeds), survived, error,
unconfirmed-hang, argued-equivalent, equivalence-refuted (argued, yet killed: a kill);
equivalent (identical code) and stillborn (does not compile with -Werror) are not counted.
The strict score is kills / every mutant that compiles to different code; the lenient one is
the former rule (an error or unconfirmed hang counts as a kill, argued equivalents leave the
denominator). A mutant's time to kill is the median over its seeds (a seed without a kill
counts as infinite). docs/mutants.md has the method and the figures.

``recvmap mutants`` (``options.add_parser`` / ``run``) prints one line per mutant and the summary.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import math
import mmap
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recvmap.pymodel.recovery import RAMBLOCK_RECV_BITMAP_ENDING, recv_bitmap_size
from recvmap.qemu_ref import load
from recvmap.qemu_ref.ram import RAMBlockStruct, RAMListStruct

from ..campaign.alone import rerun_alone
from ..campaign.harness import Harness
from ..engine import first_divergence
from ..program import Program
from ..subjects.build import SOURCES, WARNINGS, BuildError, build_library, source_dir
from ..subjects.impls import Subject
from .generate import MUTABLE_FILES, source_texts, syntax_error_of, systematic_mutants
from .mutant import Mutant
from .mutants_hand import SEQUENTIAL, equivalence, hand_mutants
from .options import LAYERS, ORACLES, configure_parser
from .vectors_oracle import argv as vectors_argv

try:  # optional (the mutation extra): equivalence is judged on machine code
    from elftools.elf.elffile import ELFFile
except ImportError:
    ELFFile = None

__all__ = ["MUTABLE_FILES", "Mutant", "source_texts", "systematic_mutants"]


# Operators whose mutants only a concurrent oracle can tell from the reference.
SEQUENTIAL_EQUIVALENT = {"atomic-plain"}
FENCE_REASON = (
    "a memory barrier dropped: on x86-64 only a store-to-load reordering with "
    "another thread could show it, and no oracle here observes that"
)

# The causes of a kill (module docstring); everything else is an error.
CAUSES = ("divergence", "abort", "crash", "sanitizer", "lost bit", "hang")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def all_mutants(src_dir: Path | None = None) -> list[Mutant]:
    """The hand-written mutants, then the systematic ones."""
    return [*hand_mutants(source_texts(src_dir)), *systematic_mutants(src_dir=src_dir)]


def shuffled(mutants: Sequence[Mutant], seed: int = 0) -> list[Mutant]:
    """A fixed pseudo-random order: a sample is the first N of it that compile."""
    order = list(mutants)
    random.Random(seed).shuffle(order)
    return order


# --- building and trivial compiler equivalence ------------------------------------------


class Stillborn(Exception):
    """The mutant does not compile (or no longer applies to the sources)."""


BASE_EDITS: dict[str, list[tuple[str, str]]] = {}  # --patch: applied under every mutant


SANITIZE_FLAGS = (
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
)


def build(m: Mutant | None, bits: int, sanitize: bool = False) -> Path:
    """The library of ``m`` (None: the reference) for ``bits``; gcc's ASan+UBSan if asked."""
    edits = {f: list(e) for f, e in BASE_EDITS.items()}
    for f, e in (m.build_edits() if m else {}).items():
        edits.setdefault(f, []).extend(e)
    try:
        if sanitize:
            return build_library(bits, edits or None, flags=SANITIZE_FLAGS)
        return build_library(bits, edits or None)
    except BuildError as err:
        lines = str(err).splitlines()
        first = next((x for x in lines if "error" in x), lines[0] if lines else "")
        raise Stillborn(first.split("error:", 1)[-1].strip()[:200]) from None


def asan_env() -> dict[str, str]:
    """A worker's environment for sanitized libraries: gcc's ASan runtime preloaded, and
    Python's allocations through malloc so the ctypes word arrays get red zones too.
    LeakSanitizer runs at exit (mid-run it would see the C maps whose only pointers are
    Python ints as leaked); the reference leaves nothing behind."""
    runtime = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True
    ).stdout.strip()
    return dict(
        os.environ,
        LD_PRELOAD=runtime,
        PYTHONMALLOC="malloc",
        ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=0",
    )


_ASAN_OK: dict[tuple[Any, ...], bool] = {}


def asan_usable(opts: Any) -> bool:
    """Whether the sanitized reference builds and survives the sanitized run (once)."""
    key = (opts.seeds[0], opts.asan_budget, tuple(opts.widths), json.dumps(BASE_EDITS))
    if key not in _ASAN_OK:
        try:
            libs = {b: build(None, b, sanitize=True) for b in opts.widths}
            run = run_seed(
                libs,
                opts.seeds[0],
                opts.asan_budget,
                opts.hang_timeout * 3,
                opts.layers,
                env=asan_env(),
            )
            _ASAN_OK[key] = not run.killed
            if run.killed:
                print(
                    f"recvmap mutants: the sanitized reference fails ({run.how}: "
                    f"{run.description}); no asan oracle",
                    file=sys.stderr,
                )
        except (Stillborn, RuntimeError) as err:
            print(f"recvmap mutants: no asan oracle: {err}", file=sys.stderr)
            _ASAN_OK[key] = False
    return _ASAN_OK[key]


# QEMU's asserts, which the differential engine never reaches (the model rejects these
# inputs first): (function, args, must abort). tests/test_domain.py checks the reference.
ABORT_CASES: tuple[tuple[str, tuple[int, ...], bool], ...] = (
    *(
        (f, a, True)
        for f in (
            "bitmap_set",
            "bitmap_set_atomic",
            "bitmap_clear",
            "bitmap_test_and_clear",
            "bitmap_test_and_clear_atomic",
        )
        for a in ((-1, 1), (0, -1), (-1, -1), (-64, 0))
    ),
    *(("qref_set_target_page_bits", (b,), True) for b in (0, -1, 32, 33)),
    *(("qref_set_target_page_bits", (b,), False) for b in (1, 31)),
)

# The ram layer's asserts on a map, each a short scenario on a RAM list of one 64 KiB block
# "ram0" (target pages of 4 KiB) and, for "tiny", a second block of half a page: (scenario,
# must abort). QEMU's ramblock_recv_map_init asserts that a block's receivedmap is still
# NULL (a second init without ram_load_cleanup); our ram_dirty_bitmap_reload asserts what
# QEMU's leaves to its callers (qemu_ref_ram.h "Domain"): a bmap to write (QEMU would write
# through the NULL pointer) and nbits > 0 (bitmap_complement of 0 bits). The controls are
# the same calls inside the domain. The engine never sends these: the model rejects them.
RAM_ABORT_CASES: tuple[tuple[str, bool], ...] = (
    ("ramblock_recv_map_init twice", True),
    ("ramblock_recv_map_init once", False),
    ("ram_dirty_bitmap_reload with a NULL bmap", True),
    ("ram_dirty_bitmap_reload with nbits 0", True),
    ("ram_dirty_bitmap_reload after ram_list_init_bitmaps", False),
)


def _ram_abort_case(lib: Any, scenario: str) -> None:
    """Run one RAM_ABORT_CASES scenario on ``lib`` (in the forked child)."""
    page_bits, length = 12, 64 << 10
    blocks = [RAMBlockStruct(0x10000000, length, length, length, 4096, None, None, None,
                             True, False, b"ram0")]  # fmt: skip
    if "nbits 0" in scenario:
        blocks.append(
            RAMBlockStruct(
                0x20000000, 2048, 2048, 2048, 4096, None, None, None, True, False, b"tiny"
            )
        )
        blocks[0].next = ctypes.addressof(blocks[1])
    ram_list = RAMListStruct(ctypes.addressof(blocks[0]))
    lib.qref_set_target_page_bits(page_bits)
    if scenario.startswith("ramblock_recv_map_init"):
        lib.ramblock_recv_map_init(ctypes.byref(ram_list))
        if "twice" in scenario:
            lib.ramblock_recv_map_init(ctypes.byref(ram_list))
        return
    if "NULL" not in scenario:
        lib.ram_list_init_bitmaps(ctypes.byref(ram_list))
    block = blocks[-1]
    size = recv_bitmap_size(block.used_length >> page_bits)
    stream = size.to_bytes(8, "big") + bytes(size) + RAMBLOCK_RECV_BITMAP_ENDING.to_bytes(8, "big")
    buf = (ctypes.c_uint8 * len(stream)).from_buffer_copy(stream)
    lib.ram_dirty_bitmap_reload(ctypes.byref(block), buf, len(stream))


def _abort_child(config: dict[str, Any]) -> int:
    """Each case in a forked child: print which ones did not behave (abort or return)."""
    libs = {int(b): load(Path(p), int(b)) for b, p in config["libs"].items()}
    wrong = []
    for bits, lib in libs.items():
        for name, args, must_abort in ABORT_CASES:
            pid = os.fork()
            if pid == 0:
                os.close(2)  # the assert message
                fn = lib.functions[name]
                if name.startswith("bitmap"):
                    fn(lib.words(4), *args)
                else:
                    fn(*args)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            aborted = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT
            if aborted != must_abort:
                wrong.append(f"{bits}-bit {name}{args} " + _abort_miss(status, must_abort))
        if not {"ramblock_recv_map_init", "ram_dirty_bitmap_reload"} <= set(lib.functions):
            continue  # a library without the ram layer
        for scenario, must_abort in RAM_ABORT_CASES:
            pid = os.fork()
            if pid == 0:
                os.close(2)
                _ram_abort_case(lib, scenario)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            aborted = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT
            if aborted != must_abort:
                wrong.append(f"{bits}-bit {scenario}: " + _abort_miss(status, must_abort))
    print(json.dumps(wrong))
    return 0


def _abort_miss(status: int, must_abort: bool) -> str:
    """Why a case of the abort oracle did not behave, from its child's wait status."""
    if not must_abort:
        return "aborted"
    if os.WIFSIGNALED(status):
        return f"died by signal {os.WTERMSIG(status)}, where the assert must abort"
    return "returned, where the assert must abort"


def abort_oracle(libs: dict[int, Path]) -> SeedRun:
    """The abort oracle: QEMU's asserts fire where they must, and only there."""
    t0 = time.monotonic()
    config = {"libs": {str(b): str(p) for b, p in libs.items()}}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recvmap.fuzz.mutation.mutants",
            "--abort-oracle",
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    try:
        wrong = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        why = f"abort oracle failed: exit {proc.returncode}"
        return SeedRun(0, "error", None, why, "", crash_line(proc.stderr), oracle="abort")
    return SeedRun(
        0,
        "kill" if wrong else "clean",
        elapsed if wrong else None,
        "abort" if wrong else "",
        "",
        "; ".join(wrong[:3]),
        oracle="abort",
    )


def machine_code(lib: Path) -> bytes:
    """What a library computes: its .text, .rodata and .data (pyelftools), with its own
    build folder name blanked (a path string may sit in .rodata)."""
    if ELFFile is None:
        raise ImportError("comparing machine code needs pyelftools (the mutation extra)")
    blank = lib.parent.name.encode()
    with lib.open("rb") as f:
        elf = ELFFile(f)
        parts = []
        for name in (".text", ".rodata", ".data"):
            section = elf.get_section_by_name(name)
            data = b"" if section is None or section["sh_type"] == "SHT_NOBITS" else section.data()
            parts.append(data.replace(blank, b"#" * len(blank)))
    return b"\0".join(parts)


STRESS_ARGS = ("-n", "300")  # qref-stress rounds

# The clear side, which qemu_ref/stress.c does not exercise (built like it, per mutant).
CLEAR_STRESS_C = r"""/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Clear-side concurrency check of the atomic helpers: setters race clearers on
 * shared words.  1: clear_bit_atomic against set_bit_atomic (no set bit may be
 * lost); 2: two bitmap_test_and_clear_atomic sweepers over every word against
 * one set bit per word (each bit reported exactly once); 3:
 * bitmap_copy_and_clear_atomic sweeps against set bits (each bit collected
 * exactly once).  Exit 1 on a failure.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "qemu_ref.h"

#define NWORDS 64
#define NTHREADS 2              /* setters, and as many clearers */
#define BPL QREF_BITS_PER_LONG

static qref_ulong map[NWORDS], want[NWORDS], got[NTHREADS + 1][NWORDS];
static unsigned hits[NTHREADS + 1][NWORDS];
static int mode, setters_left, twice;
static pthread_barrier_t go;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *setter(void *arg)
{
    long id = (long)arg;

    pthread_barrier_wait(&go);
    for (long w = id; w < NWORDS; w += NTHREADS) {
        for (long b = 0; b < BPL; b++) {
            if (!(want[w] >> b & 1)) {
                continue;
            }
            set_bit_atomic(w * BPL + b, map);
        }
    }
    __atomic_fetch_sub(&setters_left, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* One sweep of clearer id (NTHREADS: the final sweep, every word). */
static void sweep(long id, uint64_t *s)
{
    long step = id == NTHREADS || mode == 2 ? 1 : NTHREADS;
    long first = id == NTHREADS || mode == 2 ? 0 : id;

    for (long w = first; w < NWORDS; w += step) {
        if (mode == 1) {
            for (long b = 1; b < BPL && id < NTHREADS; b += 2) {
                clear_bit_atomic(w * BPL + b, map);
            }
        } else if (mode == 2) {
            long k = id < NTHREADS && rnd(s) % 2 ? (long)(rnd(s) % BPL) : 0;

            if (bitmap_test_and_clear_atomic(map, w * BPL + k, BPL - k)) {
                hits[id][w]++;
            }
        } else {
            qref_ulong d = 0;

            bitmap_copy_and_clear_atomic(&d, &map[w], BPL);
            if (got[id][w] & d) {
                twice = 1;
            }
            got[id][w] |= d;
        }
    }
}

static void *clearer(void *arg)
{
    long id = (long)arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);

    pthread_barrier_wait(&go);
    do {
        sweep(id, &s);
    } while (mode != 1 && __atomic_load_n(&setters_left, __ATOMIC_SEQ_CST));
    return NULL;
}

static int check(void)
{
    for (long w = 0; w < NWORDS; w++) {
        qref_ulong all = 0;
        unsigned n = 0;

        for (int t = 0; t <= NTHREADS; t++) {
            all |= got[t][w];
            n += hits[t][w];
        }
        if ((mode == 1 && map[w] != want[w]) || (mode == 2 && n != 1) ||
            (mode == 3 && (all != want[w] || twice))) {
            printf("mode %d word %ld: map %#llx want %#llx hits %u FAIL\n", mode, w,
                   (unsigned long long)map[w], (unsigned long long)want[w], n);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    uint64_t s = 88172645463325252ull;
    pthread_t th[2 * NTHREADS];

    pthread_barrier_init(&go, NULL, 2 * NTHREADS);
    for (mode = 1; mode <= 3; mode++) {
        for (int r = 0; r < rounds; r++) {
            for (long w = 0; w < NWORDS; w++) {
                qref_ulong odd = (qref_ulong)0xaaaaaaaaaaaaaaaaull;

                want[w] = mode == 1 ? ~odd : mode == 2 ? (qref_ulong)1 << rnd(&s) % BPL
                                                       : (qref_ulong)rnd(&s);
                map[w] = mode == 1 ? odd : 0;
                for (int t = 0; t <= NTHREADS; t++) {
                    got[t][w] = 0;
                    hits[t][w] = 0;
                }
            }
            twice = 0;
            setters_left = NTHREADS;
            for (long t = 0; t < NTHREADS; t++) {
                pthread_create(&th[t], NULL, setter, (void *)t);
                pthread_create(&th[NTHREADS + t], NULL, clearer, (void *)t);
            }
            for (int t = 0; t < 2 * NTHREADS; t++) {
                pthread_join(th[t], NULL);
            }
            if (mode != 1) {
                sweep(NTHREADS, &s);
            }
            if (check()) {
                return 1;
            }
        }
    }
    printf("clear-side atomics: %d rounds of 3 modes OK\n", rounds);
    return 0;
}
"""


def _stress_programs(lib: Path, bits: int) -> list[tuple[str, list[str]]]:
    """Build (once) the stress programs on the mutant's sources: (path, arguments)."""
    work = lib.parent  # build_library leaves the edited sources beside the library
    clear_c = work / "clear_stress.c"
    if not clear_c.exists():
        clear_c.write_text(CLEAR_STRESS_C)
    out = []
    programs: tuple[tuple[str, Path, list[str], Sequence[str]], ...] = (
        ("qref-stress", source_dir() / "stress.c", ["-DQREF_STRESS_RAM"], STRESS_ARGS),
        ("clear-stress", clear_c, [], ()),
    )
    for name, source, defines, argv in programs:
        exe = work / f"{name}{bits}"
        if not exe.exists():
            cmd = [
                "gcc", *WARNINGS, "-O2", "-pthread", *defines, f"-I{work}",
                *(["-DQREF_BITS_PER_LONG=32"] if bits == 32 else []),
                str(source), *(str(work / f) for f in SOURCES),
                "-o", str(exe) + ".tmp",
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise Stillborn(f"{name} build failed: {crash_line(proc.stderr)}")
            Path(str(exe) + ".tmp").replace(exe)
        out.append((str(exe), list(argv)))
    return out


STRESS_TIMEOUT = 60.0  # seconds for one run of a stress program (the reference: ~1 s)


def _stress_once(exe: str, argv: Sequence[str], timeout: float) -> tuple[int | None, str]:
    proc = rerun_alone([exe, *argv], timeout)
    if not proc.finished:
        return None, "hang"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def stress_oracle(libs: dict[int, Path], budget: float = 10.0) -> SeedRun:
    """The concurrency oracle, built on the mutant's sources: qemu_ref/stress.c (threads
    setting bits through the atomic helpers while readers test them: no bit lost, extra or
    vanished), then CLEAR_STRESS_C (clear_bit_atomic, bitmap_test_and_clear_atomic and
    bitmap_copy_and_clear_atomic racing set_bit_atomic: every bit taken exactly once).
    Races need both cores: the programs run again until ``budget`` seconds have passed.

    Exit 1 (a bit lost, extra, vanished or taken twice) is a lost-bit kill; a signal an
    abort or crash; a run past STRESS_TIMEOUT is run again alone with three times that, a
    hang only if it hangs again (else an unconfirmed hang); any other exit is an error."""
    programs = [(bits, p) for bits, lib in sorted(libs.items(), reverse=True)
                for p in _stress_programs(lib, bits)]  # fmt: skip
    t0 = time.monotonic()
    while True:
        for bits, (exe, argv) in programs:
            code, out = _stress_once(exe, argv, STRESS_TIMEOUT)
            took = time.monotonic() - t0
            name = f"{bits}-bit {Path(exe).name}"
            if code is None:
                again, _ = _stress_once(exe, argv, 3 * STRESS_TIMEOUT)
                if again is None:
                    why = f"still running after {3 * STRESS_TIMEOUT:g} s alone"
                    return SeedRun(0, "kill", took, "hang", name, why, oracle="stress")
                why = f"a run past {STRESS_TIMEOUT:g} s; alone it ends (exit {again})"
                return SeedRun(0, "unconfirmed", None, "stress timeout", name, why, oracle="stress")
            if code != 0:
                line = (out.splitlines()[-1] if out else f"exit {code}")[-200:]
                if code == 1:
                    return SeedRun(0, "kill", took, "lost bit", name, line, oracle="stress")
                if code < 0:
                    return SeedRun(0, "kill", took, signal_cause(code), name, line, oracle="stress")
                return SeedRun(0, "error", None, f"exit {code}", name, line, oracle="stress")
        if time.monotonic() - t0 >= budget:
            return SeedRun(0, "clean", None, "", oracle="stress")


# --- one (mutant, seed): a worker process -----------------------------------------------


class _Detected(Exception):
    pass


TRACE_BYTES = 1 << 16  # the input being run, for re-running it alone (hang or crash)


def _detector(layer: str, subject: Any, max_ops: int) -> Any:
    class Detector(Harness):
        def report(self, program: Program, first: object = None) -> None:
            raise _Detected(program)

    return Detector(layer, subject, out_dir=tempfile.gettempdir(), max_ops=max_ops)


def _subject(libs: dict[int, Path]) -> Any:
    return Subject(libraries={b: load(Path(p), b) for b, p in libs.items()})


def _run_one(h: Any, subject: Any, data: bytes) -> dict[str, Any] | None:
    """One input through a harness: a divergence (a kill), an exception (an error), or None."""
    try:
        h.one_input(data)
    except _Detected as det:
        program = det.args[0]
        _, divergence = first_divergence(program, subject)
        what = divergence.describe() if divergence else "divergence (not replayed)"
        return {
            "killed": True,
            "how": "divergence",
            "layer": h.layer,
            "description": what,
            "program": program.to_json(),
        }
    except Exception as err:  # the harness itself failed: an error, never a kill
        return {
            "killed": False,
            "error": True,
            "how": "exception",
            "layer": h.layer,
            "description": f"{type(err).__name__}: {err}"[:300],
        }
    return None


def hunt(
    libs: dict[int, Path],
    seed: int,
    budget: float,
    layers: Sequence[str] = LAYERS,
    max_ops: int = 24,
    max_len: int = 600,
    heartbeat: Any = None,
    trace: Callable[[int, bytes], None] | None = None,
    ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Fuzz ``libs`` (one per word width) with every layer in turn: the first divergence.

    The engine of the campaign, in this process: random inputs through each layer's
    ``Harness`` (decoder, model first, compare after every operation), one input per layer
    in turn. Returns ``killed``, ``time`` (seconds to the detection), ``how``, ``layer``,
    ``description`` and the counts; a Python exception in the harness is recorded as
    ``error`` (fuzzing goes on: a later divergence is still a kill). ``heartbeat()`` is
    called about five times a second; ``trace(layer index, input)`` before each input;
    ``ready()`` once the harnesses are set up (they call the library too).
    """
    subject = _subject(libs)
    harnesses = [_detector(layer, subject, max_ops) for layer in layers]
    if ready is not None:
        ready()
    rngs = [random.Random(f"{seed}:{h.layer}") for h in harnesses]
    t0 = last = time.monotonic()
    result: dict[str, Any] = {"killed": False}
    while time.monotonic() - t0 < budget and not result["killed"]:
        for index, (h, rng) in enumerate(zip(harnesses, rngs, strict=True)):
            data = rng.randbytes(rng.randrange(1, max_len))
            if trace is not None:
                trace(index, data)
            found = _run_one(h, subject, data)
            if found is not None and (found["killed"] or not result.get("error")):
                found["time"] = time.monotonic() - t0
                result = found
            if result["killed"]:
                break
        now = time.monotonic()
        if heartbeat is not None and now - last >= 0.2:
            heartbeat()
            last = now
    result.setdefault("time", time.monotonic() - t0)
    result["programs"] = sum(h.programs for h in harnesses)
    result["ops"] = sum(h.ops for h in harnesses)
    return result


def _worker(config: dict[str, Any]) -> int:
    """``hunt`` in a worker process: prints ``ready``, heartbeats, one ``result {json}``.

    Before each input, the layer and the input go to the shared trace file, so that the
    parent can re-run the input alone after a crash or a hang (no result line).
    """
    out = sys.stdout

    def beat() -> None:
        out.write(".\n")
        out.flush()

    libs = {int(b): Path(p) for b, p in config["libs"].items()}
    trace_map: mmap.mmap | None = None
    if config.get("trace"):
        with open(config["trace"], "r+b") as f:
            trace_map = mmap.mmap(f.fileno(), TRACE_BYTES)

    def trace(index: int, data: bytes) -> None:
        assert trace_map is not None
        trace_map[: 5 + len(data)] = bytes([index + 1]) + len(data).to_bytes(4, "little") + data

    def ready() -> None:
        out.write("ready\n")
        out.flush()

    result = hunt(
        libs,
        int(config["seed"]),
        float(config["budget"]),
        config.get("layers", LAYERS),
        int(config.get("max_ops", 24)),
        int(config.get("max_len", 600)),
        beat,
        trace if trace_map is not None else None,
        ready,
    )
    out.write("result " + json.dumps(result) + "\n")
    out.flush()
    return 0


def _replay_child(config: dict[str, Any]) -> int:
    """One input alone through one layer (``--replay``): prints ``result {json}``."""
    libs = {int(b): Path(p) for b, p in config["libs"].items()}
    subject = _subject(libs)
    h = _detector(config["layer"], subject, int(config.get("max_ops", 24)))
    found = _run_one(h, subject, bytes.fromhex(config["data"])) or {"killed": False}
    print("result " + json.dumps(found), flush=True)
    return 0


@dataclass
class SeedRun:
    seed: int
    # "kill", "error", "unconfirmed" (a hang or divergence the re-run alone did not show),
    # "clean"
    outcome: str
    time: float | None  # seconds to the detection (kills only)
    how: str = ""  # a kill's cause (CAUSES); for the others, what happened
    layer: str = ""
    description: str = ""
    programs: int = 0
    ops: int = 0
    oracle: str = "fuzz"  # fuzz, abort, stress, asan

    @property
    def killed(self) -> bool:
        return self.outcome == "kill"


def sanitizer_report(stderr: str) -> str:
    """The sanitizer's summary line in ``stderr``, or ""."""
    if any(mark in stderr for mark in SANITIZER_MARKS):
        return crash_line(stderr)
    return ""


def signal_cause(returncode: int) -> str:
    """A kill cause for a death by signal: abort for SIGABRT, crash for the others."""
    return "abort" if returncode == -signal.SIGABRT else "crash"


def confirm(
    libs: dict[int, Path],
    layer: str,
    data: bytes,
    timeout: float,
    env: dict[str, str] | None = None,
) -> tuple[str, str, str]:
    """Re-run one input alone with a generous ``timeout``: (outcome, cause, description).

    A kill when the re-run hangs again (cause hang), dies by a signal (abort or crash),
    reports a sanitizer error, or diverges; "clean" when it passes; an error otherwise.
    """
    config = {"libs": {str(b): str(p) for b, p in libs.items()}, "layer": layer, "data": data.hex()}

    argv = [sys.executable, "-m", "recvmap.fuzz.mutation.mutants", "--replay", json.dumps(config)]
    proc = rerun_alone(argv, timeout, env)
    if not proc.finished:
        return "kill", "hang", f"the input alone still runs after {timeout:g} s"
    assert proc.returncode is not None
    report = sanitizer_report(proc.stderr)
    if report:
        return "kill", "sanitizer", report
    if proc.returncode < 0:
        return (
            "kill",
            signal_cause(proc.returncode),
            crash_line(proc.stderr) or f"signal {-proc.returncode}",
        )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("result ")]
    if proc.returncode != 0 or not lines:
        return "error", f"re-run exit {proc.returncode}", crash_line(proc.stderr)[:300]
    found = json.loads(lines[-1][7:])
    if found.get("killed"):
        return "kill", "divergence", str(found.get("description", ""))[:300]
    if found.get("error"):
        return "error", "exception", str(found.get("description", ""))[:300]
    return "clean", "", ""


def run_seed(
    libs: dict[int, Path],
    seed: int,
    budget: float,
    hang_timeout: float = 3.0,
    layers: Sequence[str] = LAYERS,
    env: dict[str, str] | None = None,
    confirm_timeout: float = 60.0,
) -> SeedRun:
    """One seed of one mutant in a fresh process.

    A suspected hang is ``hang_timeout`` seconds without a heartbeat (the slowest input of
    the reference takes well under 0.1 s, but a loaded machine can stall a process that
    long). The worker is stopped, and the input it was running is re-run alone with
    ``confirm_timeout`` seconds (``confirm``): a kill only if that shows it; so is a crash,
    and so is a divergence (its input, the last one the worker traced, re-run alone).
    """
    config = {
        "libs": {str(b): str(p) for b, p in libs.items()},
        "seed": seed,
        "budget": budget,
        "layers": list(layers),
    }
    with tempfile.NamedTemporaryFile(prefix="recvmap-trace-") as tracef:
        tracef.truncate(TRACE_BYTES)
        tracef.flush()
        config["trace"] = tracef.name
        proc = run = None
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "recvmap.fuzz.mutation.mutants",
                    "--worker",
                    json.dumps(config),
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            buf, started, last = b"", None, time.monotonic()
            spawn = time.monotonic()
            result: dict[str, Any] | None = None
            hung = False
            while True:
                limit = hang_timeout if started else hang_timeout + 30.0
                ready, _, _ = select.select([fd], [], [], 0.5)
                now = time.monotonic()
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    buf += chunk
                    last = now
                    *done, buf = buf.split(b"\n")
                    for line in done:
                        if line == b"ready":
                            started = now
                        elif line.startswith(b"result "):
                            result = json.loads(line[7:])
                elif now - last > limit or (started and now - started > budget + hang_timeout):
                    hung = True
                    proc.kill()
                    break
            proc.wait()
            err.seek(0)
            tail = err.read()[-4000:].decode(errors="replace").strip()
        elapsed = time.monotonic() - (started or spawn)
        tracef.seek(0)
        raw = tracef.read(TRACE_BYTES)
    if result is not None:
        run = SeedRun(
            seed,
            "kill" if result["killed"] else "error" if result.get("error") else "clean",
            result["time"] if result["killed"] else None,
            result.get("how", ""),
            result.get("layer", ""),
            result.get("description", ""),
            result.get("programs", 0),
            result.get("ops", 0),
        )
        if proc.returncode != 0 and not run.killed:
            report = sanitizer_report(tail)
            if report:  # LeakSanitizer speaks at exit, after the result
                run.outcome, run.how, run.time, run.description = (
                    "kill",
                    "sanitizer",
                    elapsed,
                    report,
                )
            else:  # a clean result then a failing exit: not a finding of the mutant
                run.outcome, run.how = "error", f"exit {proc.returncode} after a clean result"
                run.description = crash_line(tail)[:300]
        elif run.killed and run.how == "divergence" and 0 < raw[0] <= len(layers):
            # a finding is confirmed alone: the diverging input (the last one traced)
            data = raw[5 : 5 + int.from_bytes(raw[1:5], "little")]
            outcome, _, desc = confirm(libs, layers[raw[0] - 1], data, confirm_timeout, env)
            if outcome != "kill":
                run.outcome, run.time = "unconfirmed", None
                run.how = f"divergence, the input alone: {outcome}"
                run.description = desc or run.description
        return run
    if started is None and not hung:
        raise RuntimeError(f"worker failed before fuzzing (exit {proc.returncode}): {tail}")
    what = "hang" if hung else f"crash (exit {proc.returncode})"
    if raw[0] == 0 or raw[0] > len(layers):  # no input to re-run: nothing to confirm
        kind = "unconfirmed" if hung else "error"
        why = f"{what} before the first input"
        return SeedRun(seed, kind, None, why, "", crash_line(tail)[:300])
    layer = layers[raw[0] - 1]
    data = raw[5 : 5 + int.from_bytes(raw[1:5], "little")]
    outcome, cause, desc = confirm(libs, layer, data, confirm_timeout, env)
    if outcome == "kill":
        return SeedRun(seed, "kill", elapsed, cause, layer, desc)
    if outcome == "clean":
        kind = "unconfirmed" if hung else "error"
        why = "hang, the input alone passes" if hung else f"{what}, the input alone passes"
        return SeedRun(seed, kind, None, why, layer, crash_line(tail)[:300])
    return SeedRun(seed, "error", None, f"{what}; {cause}", layer, desc)


def crash_line(stderr: str) -> str:
    """The line of a crash's stderr that says what happened (sanitizer summary, assert...)."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    for key in ("SUMMARY:", "runtime error", "Assertion", "ERROR:"):
        for x in lines:
            if key in x:
                return x
    return lines[-1] if lines else ""


def run_seed_cli(
    libs: dict[int, Path],
    seed: int,
    budget: float,
    hang_timeout: float = 3.0,
    layers: Sequence[str] = LAYERS,
) -> SeedRun:
    """One seed through ``recvmap fuzz --impl LIB``, one campaign per word width (a library
    has one width), 64 first. The time to kill is that of the campaign that found it, from
    the command's start (a user runs the campaign of the width they build). A divergence or
    a crash the campaign records is a kill; a campaign that outlives its budget is an
    unconfirmed hang (no input to re-run); any other failure is an error."""
    script = Path(sys.executable).with_name("recvmap")
    for bits, lib in sorted(libs.items(), reverse=True):
        with tempfile.TemporaryDirectory(prefix="recvmap-mutant-") as tmp:
            summary = Path(tmp) / "summary.json"
            argv = [str(script), "fuzz", "--impl", str(lib), "--max-time", f"{budget:g}",
                    "--seed", str(seed), "--json", str(summary)]  # fmt: skip
            if tuple(layers) != LAYERS:
                argv += ["--target", ",".join(layers)]
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    argv, capture_output=True, text=True, cwd=tmp,
                    timeout=budget + 120 + hang_timeout,
                )  # fmt: skip
                code, out = proc.returncode, proc.stdout + proc.stderr
            except subprocess.TimeoutExpired:
                return SeedRun(seed, "unconfirmed", None, "campaign timeout", f"{bits}-bit")
            took = time.monotonic() - t0
            if code == 2:
                raise RuntimeError(f"recvmap fuzz refused the run: {out.strip()[-300:]}")
            if code != 0:
                try:
                    data = json.loads(summary.read_text())
                except (OSError, ValueError):
                    data = {}
                for kind, cause in (("divergences", "divergence"), ("crashes", "crash")):
                    found = data.get(kind) or []
                    if found:
                        desc = str(found[0].get("description") or found[0].get("tail", ""))
                        return SeedRun(seed, "kill", took, cause, f"{bits}-bit", desc[:300])
                last = out.strip().splitlines()[-1] if out.strip() else ""
                return SeedRun(seed, "error", None, f"exit {code}", f"{bits}-bit", last[:300])
    return SeedRun(seed, "clean", None)


# --- a mutant's verdict -----------------------------------------------------------------

# Not counted at all: does not compile / the reference's machine code.
UNCOUNTED = ("stillborn", "equivalent")
KILLED = ("killed", "equivalence-refuted")


@dataclass
class MutantResult:
    key: str
    origin: str
    operator: str
    label: str
    diff: str
    note: str
    verdict: str  # module docstring
    reason: str = ""  # why equivalent (identical code or argued) / stillborn
    equivalent_kind: str = ""  # "compiler" (identical code); argued: reasoned/sequential/barrier
    ttk: float | None = None  # median seconds to kill over the seeds (None: not killed)
    killed_by: str = ""  # the oracle of the kill: fuzz, abort, stress, asan
    cause: str = ""  # the kill's cause (CAUSES)
    seeds: list[SeedRun] = field(default_factory=list)
    oracles: list[SeedRun] = field(default_factory=list)  # runs of the extra oracles
    vectors: SeedRun | None = None  # the replay of the shipped vectors (oracle "vectors")
    # the vectors' pipeline (the replay instead of fuzzing, the same other oracles)
    vectors_verdict: str = ""
    vectors_killed_by: str = ""
    build_seconds: float = 0.0
    fingerprint: str = ""
    function: str = ""

    @property
    def counted(self) -> bool:
        """In the strict denominator: compiles to code other than the reference's."""
        return self.verdict not in UNCOUNTED and self.verdict != "pending"

    @property
    def killed(self) -> bool:
        return self.verdict in KILLED

    @property
    def argued(self) -> bool:
        return self.equivalent_kind in ("reasoned", "sequential", "barrier")

    def lenient_killed(self) -> bool:
        """The former rule: every seed detected (a kill, an error or an unconfirmed hang),
        or an extra oracle did."""
        seeds = bool(self.seeds) and all(r.outcome != "clean" for r in self.seeds)
        extra = [r for r in self.oracles if r.oracle != "asan-vectors"]
        return self.killed or seeds or any(r.outcome != "clean" for r in extra)

    def vectors_lenient_killed(self) -> bool:
        """The former rule for the vectors' pipeline."""
        runs = [r for r in [self.vectors, *self.oracles] if r is not None and r.oracle != "asan"]
        return self.vectors_verdict in KILLED or any(r.outcome != "clean" for r in runs)

    def lenient_ttk(self) -> float | None:
        if self.killed:
            return self.ttk
        if not self.lenient_killed():
            return None
        done = [r for r in self.oracles if r.outcome != "clean"]
        if done:
            return done[0].time if done[0].time is not None else 0.0
        return median_ttk(self.seeds, lenient=True)


def fingerprint(m: Mutant, opts: Any) -> str:
    """What a fuzzing result depends on: the mutant's edits, the seeds, budget and backend."""
    raw = json.dumps([m.edits, list(opts.seeds), opts.budget, opts.backend, BASE_EDITS])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def median_ttk(runs: Sequence[SeedRun], lenient: bool = False) -> float | None:
    """The median time to kill over the seeds (a seed without a kill: infinite). With
    ``lenient``, errors and unconfirmed hangs count as kills at their time (the former rule)."""

    def time_of(r: SeedRun) -> float:
        if r.killed and r.time is not None:
            return r.time
        if lenient and r.outcome in ("error", "unconfirmed"):
            return r.time if r.time is not None else 0.0
        return math.inf

    times = sorted(time_of(r) for r in runs)
    if not times:
        return None
    mid = len(times) // 2
    value = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2
    return None if math.isinf(value) else value


@dataclass
class Options:
    seeds: tuple[int, ...] = (1, 2, 3)
    budget: float = 60.0
    hang_timeout: float = 3.0
    backend: str = "inprocess"  # or "cli"
    layers: tuple[str, ...] = LAYERS
    widths: tuple[int, ...] = (64, 32)
    oracles: tuple[str, ...] = ORACLES  # what may kill a mutant, in this order
    asan_budget: float = 10.0  # seconds of sanitized fuzzing (first seed) for survivors
    stress_budget: float = 10.0  # seconds of the concurrency programs for survivors
    confirm_timeout: float = 60.0  # seconds for re-running a suspected hang's input alone


def _sequential_reason(m: Mutant) -> str:
    """Why a systematic mutant only differs when threads race (or "")."""
    text = m.before.strip()
    if m.operator in SEQUENTIAL_EQUIVALENT:
        if "__atomic_thread_fence" in text:
            return FENCE_REASON
        return (
            "an atomic read-modify-write replaced by a plain one with the same "
            "single-threaded effect: only concurrent writers can tell"
        )
    if m.operator == "drop-statement" and text.startswith("__atomic_thread_fence"):
        return FENCE_REASON
    if m.operator == "atomic-wrong" and text.startswith("__atomic_"):
        return (
            "an atomic read-modify-write replaced by a plain one whose value is not "
            "used: the same single-threaded effect; only concurrent writers can tell"
        )
    return ""


def prepare(
    m: Mutant, opts: Options, reference: dict[int, bytes] | None = None
) -> tuple[MutantResult, dict[int, Path]]:
    """Build ``m`` in every width: stillborn, identical machine code, or to be fuzzed (with
    the argument for its equivalence, when there is one)."""
    res = MutantResult(
        m.key,
        m.origin,
        m.operator,
        m.label(),
        m.diff(),
        m.note,
        "pending",
        fingerprint=fingerprint(m, opts),
        function=m.function,
    )
    if m.origin != "hand" and syntax_error_of(m, source_texts()):
        res.verdict, res.reason = "stillborn", "syntax error (tree-sitter)"
        return res, {}
    t0 = time.monotonic()
    try:
        libs = {b: build(m, b) for b in opts.widths}
    except Stillborn as err:
        res.verdict, res.reason = "stillborn", str(err)
        return res, {}
    res.build_seconds = round(time.monotonic() - t0, 3)
    if reference and all(machine_code(libs[b]) == reference[b] for b in libs):
        res.reason = "the compiler emits the same machine code as for the reference"
        res.equivalent_kind, res.verdict = "compiler", "equivalent"
        return res, libs
    reason, kind = equivalence(m)
    if reason:
        res.reason = reason
        res.equivalent_kind = "sequential" if kind == SEQUENTIAL else "reasoned"
    elif _sequential_reason(m) == FENCE_REASON:
        res.reason, res.equivalent_kind = FENCE_REASON, "barrier"
    elif _sequential_reason(m):
        res.reason, res.equivalent_kind = _sequential_reason(m), "sequential"
    return res, libs


def touches_assert(m: Mutant) -> bool:
    return any("assert(" in old or "assert(" in new for _, old, new in m.edits)


def fuzz_seed(libs: dict[int, Path], seed: int, opts: Options) -> SeedRun:
    """One seed with the chosen backend."""
    if opts.backend == "cli":
        return run_seed_cli(libs, seed, opts.budget, opts.hang_timeout, opts.layers)
    return run_seed(
        libs, seed, opts.budget, opts.hang_timeout, opts.layers,
        confirm_timeout=opts.confirm_timeout,
    )  # fmt: skip


def fuzz_mutant(
    res: MutantResult,
    libs: dict[int, Path],
    opts: Options,
    m: Mutant | None = None,
    deferred: list[tuple[MutantResult, dict[int, Path]]] | None = None,
) -> MutantResult:
    """Fuzz a prepared mutant with each seed; mutants not killed by every seed meet the
    extra oracles. With ``deferred``, the concurrency oracle is left for
    ``stress_deferred`` (races need idle cores, not cores busy fuzzing other mutants)."""
    if "fuzz" in opts.oracles:
        res.seeds = [fuzz_seed(libs, seed, opts) for seed in opts.seeds]
    if "vectors" in opts.oracles and m is not None:
        res.vectors = vectors_oracle(libs, confirm_timeout=opts.confirm_timeout)
    pending = pipelines_pending(res, opts)
    if pending:
        res.oracles = extra_oracles(libs, opts, m, stress=deferred is None, pipelines=pending)
        if deferred is not None and "stress" in opts.oracles and m is not None:
            if not any(r.killed for r in res.oracles):
                deferred.append((res, libs))
    return settle(res)


def pipelines_pending(res: MutantResult, opts: Options) -> tuple[str, ...]:
    """The pipelines whose first oracle (fuzzing; the vectors' replay) did not kill
    ``res``: the extra oracles run for them."""
    out = []
    if "fuzz" in opts.oracles and not (res.seeds and all(r.killed for r in res.seeds)):
        out.append("fuzz")
    if "vectors" in opts.oracles and not (res.vectors is not None and res.vectors.killed):
        out.append("vectors")
    if not {"fuzz", "vectors"} & set(opts.oracles):
        out.append("fuzz")  # the extra oracles alone
    return tuple(out)


def settle(res: MutantResult) -> MutantResult:
    """The verdict from the seeds and the oracles (module docstring); and, when the
    vectors were replayed, the vectors' pipeline's verdict (the replay in place of the
    seeds, the same other oracles, the sanitized replay in place of sanitized fuzzing).
    Without fuzzing, the vectors' pipeline is the verdict."""
    fuzz_extra = [r for r in res.oracles if r.oracle != "asan-vectors"]
    vector_extra = [r for r in res.oracles if r.oracle != "asan"]
    if res.vectors is not None:
        res.vectors_verdict, res.vectors_killed_by, _, _ = _verdict(
            [res.vectors], vector_extra, res.argued
        )
    if res.seeds or res.vectors is None:
        res.verdict, res.killed_by, res.cause, res.ttk = _verdict(res.seeds, fuzz_extra, res.argued)
    else:
        res.verdict, res.killed_by, res.cause, res.ttk = _verdict(
            [res.vectors], vector_extra, res.argued
        )
    return res


def _verdict(
    seeds: Sequence[SeedRun], oracles: Sequence[SeedRun], argued: bool
) -> tuple[str, str, str, float | None]:
    """(verdict, killed by, cause, time to kill) of one pipeline's runs."""
    hit = next((r for r in oracles if r.killed), None)
    out: tuple[str, str, str, float | None]
    if seeds and all(r.killed for r in seeds):
        causes = [r.how for r in seeds]
        out = "killed", seeds[0].oracle, max(set(causes), key=causes.count), median_ttk(seeds)
    elif hit is not None:
        out = "killed", hit.oracle, hit.how, hit.time
    elif any(r.killed for r in seeds):
        out = "flaky", "", "", median_ttk(seeds)
    elif any(r.outcome == "error" for r in [*seeds, *oracles]):
        out = "error", "", "", None
    elif any(r.outcome == "unconfirmed" for r in [*seeds, *oracles]):
        out = "unconfirmed-hang", "", "", None
    elif argued:
        out = "argued-equivalent", "", "", None
    else:
        out = "survived", "", "", None
    if argued and out[0] == "killed":
        out = ("equivalence-refuted", *out[1:])
    return out


def stress_deferred(res: MutantResult, libs: dict[int, Path], opts: Options) -> MutantResult:
    """The concurrency oracle for a survivor of the other oracles (run alone, cores idle)."""
    try:
        run = stress_oracle(libs, opts.stress_budget)
    except Stillborn:
        return res
    res.oracles.append(run)
    return settle(res)


def extra_oracles(
    libs: dict[int, Path],
    opts: Options,
    m: Mutant | None,
    stress: bool = True,
    pipelines: tuple[str, ...] = ("fuzz",),
) -> list[SeedRun]:
    """The oracles after fuzzing, cheapest first: QEMU's asserts (abort), the concurrency
    programs (stress), sanitized fuzzing (asan) and, for the vectors' pipeline, the
    vectors replayed sanitized; the first kill ends the list."""
    runs: list[SeedRun] = []
    if "abort" in opts.oracles and m is not None and touches_assert(m):
        runs.append(abort_oracle(libs))
        if runs[-1].killed:
            return runs
    if stress and "stress" in opts.oracles and m is not None:
        try:
            runs.append(stress_oracle(libs, opts.stress_budget))
        except Stillborn:
            pass
        else:
            if runs[-1].killed:
                return runs
    if "asan" in opts.oracles and m is not None and asan_usable(opts):
        try:
            slibs = {b: build(m, b, sanitize=True) for b in opts.widths}
        except Stillborn:
            return runs
        if "fuzz" in pipelines:
            run = run_seed(
                slibs,
                opts.seeds[0],
                opts.asan_budget,
                opts.hang_timeout * 3,
                opts.layers,
                env=asan_env(),
                confirm_timeout=opts.confirm_timeout,
            )
            run.oracle = "asan"
            runs.append(run)
        if "vectors" in pipelines:
            runs.append(vectors_oracle(slibs, env=asan_env(), oracle="asan-vectors"))
    return runs


def vectors_oracle(
    libs: dict[int, Path],
    timeout: float = 30.0,
    confirm_timeout: float = 60.0,
    env: dict[str, str] | None = None,
    oracle: str = "vectors",
) -> SeedRun:
    """The shipped vectors replayed on the mutant in a fresh process (``vectors_oracle``):
    the first failing vector is a kill (divergence); a crash, or a replay still running
    after ``timeout`` seconds (the reference's takes about 1 s), counts when the vector
    that was running does it again alone (``confirm_timeout``)."""
    config: dict[str, Any] = {"libs": {str(b): str(p) for b, p in libs.items()}}
    env = dict(env or os.environ, RECVMAP_GUARD="after")  # one guard page: one replay each
    t0 = time.monotonic()
    try:
        proc = subprocess.run(vectors_argv(config), capture_output=True, text=True, env=env,
                              timeout=timeout)  # fmt: skip
        out, err, code, hung = proc.stdout, proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        code, hung = None, True
    took = time.monotonic() - t0
    lines = out.splitlines()
    result = next((json.loads(x[7:]) for x in reversed(lines) if x.startswith("result ")), None)
    report = sanitizer_report(err)

    def run(outcome: str, how: str = "", desc: str = "", when: float | None = None) -> SeedRun:
        ran = int(result.get("ran", 0)) if result else 0
        return SeedRun(0, outcome, when, how, "", desc[:300], ran, oracle=oracle)

    if result is not None:
        if result["killed"]:
            return run("kill", "divergence", f"{result['vector']}: {result['description']}",
                       result["time"])  # fmt: skip
        if report:  # LeakSanitizer speaks at exit
            return run("kill", "sanitizer", report, took)
        if code != 0:
            return run("error", f"exit {code} after a clean replay", crash_line(err))
        return run("clean")
    last = next((x[5:] for x in reversed(lines) if x.startswith("case ")), None)
    what = "hang" if hung else f"crash (exit {code})"
    if last is None:
        return run("error", f"{what} before the first vector", crash_line(err))
    alone = rerun_alone(vectors_argv({**config, "only": [last]}), confirm_timeout, env)
    desc = f"{last}: " + (sanitizer_report(alone.stderr) or crash_line(alone.stderr))
    if not alone.finished:
        return run("kill", "hang", f"{last}: alone, still running after {confirm_timeout:g} s",
                   took)  # fmt: skip
    assert alone.returncode is not None
    if sanitizer_report(alone.stderr):
        return run("kill", "sanitizer", desc, took)
    if alone.returncode < 0:
        return run("kill", signal_cause(alone.returncode), desc, took)
    again = next((x for x in alone.stdout.splitlines() if x.startswith("result ")), "")
    if again and json.loads(again[7:]).get("killed"):
        return run("kill", "divergence", f"{last}: {json.loads(again[7:])['description']}", took)
    return run("unconfirmed" if hung else "error", f"{what}, the vector alone passes", desc)


def result_from_json(d: dict[str, Any]) -> MutantResult:
    def seed_run(s: dict[str, Any]) -> SeedRun:
        s = dict(s)
        killed = s.pop("killed", None)  # the former schema: killed instead of outcome
        s.setdefault("outcome", "kill" if killed else "clean")
        return SeedRun(**s)

    seeds = [seed_run(s) for s in d.pop("seeds", [])]
    oracles = [seed_run(s) for s in d.pop("oracles", [])]
    vectors = d.pop("vectors", None)
    return MutantResult(
        **d, seeds=seeds, oracles=oracles, vectors=None if vectors is None else seed_run(vectors)
    )


# --- the summary ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (inf stays inf)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def figures(results: Sequence[MutantResult], budget: float) -> dict[str, Any]:
    """The mutation score and the time-to-kill statistics of a run, both ways.

    Strict: every mutant that compiles to code other than the reference's is counted, and
    only kills (the six causes) count as killed. Lenient, the former rule: errors and
    unconfirmed hangs count as kills, and argued equivalents that nothing killed leave the
    denominator. A mutant not killed counts as an infinite time. The ``fuzz`` figures give
    the differential engine alone (oracle kills count as not killed).
    """
    counted = [r for r in results if r.counted]
    killed = [r for r in counted if r.killed]
    lenient = [r for r in counted if r.killed or not (r.argued and not r.lenient_killed())]
    lenient_killed = [r for r in lenient if r.lenient_killed()]
    times = [r.ttk if r.killed and r.ttk is not None else math.inf for r in counted]
    lenient_times = [r.lenient_ttk() for r in lenient]
    fuzz_times = [
        r.ttk if r.killed and r.killed_by == "fuzz" and r.ttk is not None else math.inf
        for r in counted
    ]

    def count(values: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in values:
            out[v] = out.get(v, 0) + 1
        return out

    def fmt(x: float) -> float | None:
        return None if math.isinf(x) or math.isnan(x) else round(x, 3)

    def ratio(k: int, n: int) -> float | None:
        return round(k / n, 4) if n else None

    lt = [math.inf if t is None else t for t in lenient_times]
    return {
        "mutants": len(results),
        "stillborn": sum(r.verdict == "stillborn" for r in results),
        "identical_code": sum(r.verdict == "equivalent" for r in results),
        "counted": len(counted),
        "killed": len(killed),
        "killed_by_cause": count([r.cause for r in killed]),
        "killed_by_oracle": count([r.killed_by for r in killed]),
        "flaky": sum(r.verdict == "flaky" for r in counted),
        "errors": sum(r.verdict == "error" for r in counted),
        "unconfirmed_hangs": sum(r.verdict == "unconfirmed-hang" for r in counted),
        "argued_equivalent_not_killed": sum(r.verdict == "argued-equivalent" for r in counted),
        "argued_by_kind": count([r.equivalent_kind for r in counted if r.argued]),
        "equivalence_refuted": sum(r.verdict == "equivalence-refuted" for r in counted),
        "survived": sum(r.verdict == "survived" for r in counted),
        "score_strict": ratio(len(killed), len(counted)),
        "score_lenient": ratio(len(lenient_killed), len(lenient)),
        "lenient_denominator": len(lenient),
        "score_any_seed": ratio(
            len(killed) + sum(r.verdict == "flaky" for r in counted), len(counted)
        ),
        "score_fuzz": ratio(sum(r.killed_by == "fuzz" for r in killed), len(counted)),
        "killed_within_budget": sum(t <= budget for t in times),
        "median_ttk": fmt(statistics.median(times)) if times else None,
        "p95_ttk": fmt(percentile(times, 95)),
        "median_ttk_lenient": fmt(statistics.median(lt)) if lt else None,
        "median_ttk_fuzz": fmt(statistics.median(fuzz_times)) if fuzz_times else None,
        "p95_ttk_fuzz": fmt(percentile(fuzz_times, 95)),
        "max_ttk_killed": fmt(max((r.ttk for r in killed if r.ttk is not None), default=math.nan)),
        "survivors": [r.key for r in counted if not r.killed],
        **({"vectors": vector_figures(counted)} if any(r.vectors for r in counted) else {}),
    }


def vector_figures(counted: Sequence[MutantResult]) -> dict[str, Any]:
    """The vectors' pipeline (the shipped vectors replayed in place of fuzzing, the same
    other oracles), both ways, and the replay alone; which mutants the fuzzer's pipeline
    kills and the vectors' does not, and the other way round."""
    ran = [r for r in counted if r.vectors is not None]
    killed = [r for r in ran if r.vectors_verdict in KILLED]
    lenient = [r for r in ran if r.vectors_verdict in KILLED or not (
        r.argued and not r.vectors_lenient_killed())]  # fmt: skip
    replay = [r for r in ran if r.vectors is not None and r.vectors.killed]
    by: dict[str, int] = {}
    for r in killed:
        by[r.vectors_killed_by] = by.get(r.vectors_killed_by, 0) + 1

    def ratio(k: int, n: int) -> float | None:
        return round(k / n, 4) if n else None

    return {
        "counted": len(ran),
        "killed": len(killed),
        "killed_by_oracle": by,
        "score_strict": ratio(len(killed), len(ran)),
        "score_lenient": ratio(sum(r.vectors_lenient_killed() for r in lenient), len(lenient)),
        "lenient_denominator": len(lenient),
        "score_replay": ratio(len(replay), len(ran)),
        "fuzzer_only": [r.key for r in ran if r.killed and r.vectors_verdict not in KILLED],
        "vectors_only": [r.key for r in ran if r.vectors_verdict in KILLED and not r.killed],
    }


def line_of(r: MutantResult, width: int = 100) -> str:
    ttk = f"{r.ttk:7.2f}s" if r.ttk is not None and r.verdict != "survived" else "     -  "
    verdict = f"{r.verdict}/{r.cause}" if r.killed and r.cause else r.verdict
    head = f"{verdict:<22} {ttk}  {r.key:<26} {r.operator:<18} {r.label:<18}"
    tail = r.note or r.diff
    if r.verdict == "stillborn":
        tail += f"  [{r.reason}]"
    elif r.verdict == "equivalent" or r.argued:
        tail += f"  [{r.equivalent_kind}]"
    elif r.verdict in ("error", "unconfirmed-hang"):
        bad = next(
            (s for s in [*r.seeds, *r.oracles] if s.outcome in ("error", "unconfirmed")), None
        )
        if bad is not None:
            tail += f"  [{bad.oracle}: {bad.how}]"
    if r.vectors is not None and r.vectors_verdict not in KILLED:
        tail = f"[vectors: {r.vectors_verdict}] {tail}"
    elif r.vectors is not None and not r.killed:
        tail = f"[vectors: killed by {r.vectors_killed_by}] {tail}"
    text = f"{head} {tail}"
    return text if len(text) <= width + 60 else text[: width + 57] + "..."


def summary_text(results: Sequence[MutantResult], opts: Options, fig: dict[str, Any]) -> str:
    lines = [
        "",
        f"mutants: {fig['mutants']} ({fig['stillborn']} stillborn, {fig['identical_code']} "
        f"with the reference's machine code), counted {fig['counted']}",
        f"seeds {','.join(map(str, opts.seeds))}, budget {opts.budget:g} s per seed, "
        f"backend {opts.backend}, layers {'+'.join(opts.layers)}, oracles "
        f"{'+'.join(opts.oracles)}",
        f"killed {fig['killed']}: by cause {fig['killed_by_cause']}, by oracle "
        f"{fig['killed_by_oracle']}",
        f"not killed: flaky (some seeds) {fig['flaky']}, errors {fig['errors']}, unconfirmed "
        f"hangs {fig['unconfirmed_hangs']}, argued equivalent, not killed "
        f"{fig['argued_equivalent_not_killed']} {fig['argued_by_kind']}, survived "
        f"{fig['survived']}",
        f"mutation score: strict {_pct(fig['score_strict'])} ({fig['killed']} kills of "
        f"{fig['counted']} mutants with new code); lenient {_pct(fig['score_lenient'])} "
        f"(former rule: errors and unconfirmed hangs as kills, of {fig['lenient_denominator']})",
        f"differential fuzzing alone {_pct(fig['score_fuzz'])}; killed by any seed "
        f"{_pct(fig['score_any_seed'])}; within the budget: {fig['killed_within_budget']} of "
        f"{fig['counted']}",
        f"time to kill: median {_secs(fig['median_ttk'])} (lenient "
        f"{_secs(fig['median_ttk_lenient'])}), 95th percentile {_secs(fig['p95_ttk'])}, slowest "
        f"kill {_secs(fig['max_ttk_killed'])}; fuzzing alone: median "
        f"{_secs(fig['median_ttk_fuzz'])}, 95th percentile {_secs(fig['p95_ttk_fuzz'])}",
    ]
    if "vectors" in fig:
        v = fig["vectors"]
        lines += [
            f"vectors (the shipped vectors replayed in place of fuzzing, the same other "
            f"oracles): strict {_pct(v['score_strict'])} ({v['killed']} kills of "
            f"{v['counted']}, by oracle {v['killed_by_oracle']}); lenient "
            f"{_pct(v['score_lenient'])} (of {v['lenient_denominator']}); the replay alone "
            f"{_pct(v['score_replay'])}",
            f"killed by the fuzzer's pipeline only: {len(v['fuzzer_only'])} "
            f"{' '.join(v['fuzzer_only'])}".rstrip(),
            f"killed by the vectors' pipeline only: {len(v['vectors_only'])} "
            f"{' '.join(v['vectors_only'])}".rstrip(),
        ]
    if fig["equivalence_refuted"]:
        lines.append(
            f"EQUIVALENCE REFUTED (argued equivalent, yet killed): {fig['equivalence_refuted']}"
        )
    rest = [r for r in results if r.counted and not r.killed or r.verdict == "equivalence-refuted"]
    if rest:
        lines.append("not killed (and refuted equivalences):")
        for r in rest:
            lines.append(f"  {r.verdict:<19} {r.key}  {r.label}  {r.diff}")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _secs(x: float | None) -> str:
    return "inf (over budget)" if x is None else f"{x:.2f} s"


# --- the command ------------------------------------------------------------------------


def select_mutants(args: argparse.Namespace) -> tuple[list[Mutant], list[Mutant]]:
    """(hand-written, systematic in sample order) mutants the arguments ask for."""
    texts = source_texts()
    files = tuple(args.files.split(",")) if args.files else MUTABLE_FILES
    bad = [f for f in files if f not in MUTABLE_FILES]
    if bad:
        raise ValueError(f"unknown file {bad[0]!r}: one of {', '.join(MUTABLE_FILES)}")
    hand = [] if args.no_hand else [m for m in hand_mutants(texts) if m.file in files]
    system = shuffled(systematic_mutants(files), args.sample_seed) if args.sample else []
    if args.operators:
        ops = set(args.operators.split(","))
        hand = [m for m in hand if m.operator in ops or "hand" in ops]
        system = [m for m in system if m.operator in ops]
    if args.only:
        keys = set(args.only)
        everything = {m.key: m for m in [*hand_mutants(texts), *systematic_mutants()]}
        unknown = keys - set(everything)
        if unknown:
            raise ValueError(f"unknown mutant {sorted(unknown)[0]!r} (see --list)")
        hand = [everything[k] for k in args.only if everything[k].origin == "hand"]
        system = [everything[k] for k in args.only if everything[k].origin != "hand"]
    return hand, system


def _write_json(
    path: Path, opts: Options, results: Sequence[MutantResult], control: SeedRun | None
) -> None:
    data = {
        "schema": "recvmap-mutants/1",
        "config": {
            "seeds": list(opts.seeds),
            "budget": opts.budget,
            "backend": opts.backend,
            "layers": list(opts.layers),
            "widths": list(opts.widths),
        },
        "control": asdict(control) if control else None,
        "figures": figures(results, opts.budget),
        "results": [asdict(r) for r in results],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    """The body of ``recvmap mutants``: 0 when the targets are met, 1 otherwise, 2 on misuse."""
    try:
        seeds = tuple(int(s) for s in str(args.seeds).split(",") if s.strip())
        layers = tuple(x for x in str(args.layers).split(",") if x)
        if not seeds or any(x not in LAYERS for x in layers) or args.budget <= 0:
            raise ValueError("need seeds, a positive budget and layers among " + ", ".join(LAYERS))
        hand, system = select_mutants(args)
    except ValueError as err:
        print(f"recvmap mutants: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(
            f"recvmap mutants: needs the mutation extra (pip install 'recvmap[mutation]'): "
            f"no module {err.name!r}",
            file=sys.stderr,
        )
        return 2
    if args.patch:
        BASE_EDITS.clear()
        BASE_EDITS.update(
            {f: [(o, n) for o, n in e] for f, e in json.loads(args.patch.read_text()).items()}
        )
    oracles = tuple(x for x in str(args.oracles).split(",") if x)
    if any(x not in ORACLES for x in oracles):
        print(f"recvmap mutants: oracles are {', '.join(ORACLES)}", file=sys.stderr)
        return 2
    opts = Options(
        seeds,
        args.budget,
        args.hang_timeout,
        args.backend,
        layers,
        oracles=oracles,
        asan_budget=args.asan_budget,
        stress_budget=args.stress_budget,
        confirm_timeout=args.confirm_timeout,
    )
    if args.list:
        for m in hand + (system if args.sample < 0 or args.only else system[: args.sample]):
            print(f"{m.key:<26} {m.operator:<18} {m.label():<18} {m.note or m.diff()}")
        return 0
    previous: dict[str, MutantResult] = {}
    if args.resume and args.json and args.json.exists():
        saved = json.loads(args.json.read_text())
        cfg = saved.get("config", {})
        if (cfg.get("seeds"), cfg.get("budget"), cfg.get("backend")) == (
            list(opts.seeds),
            opts.budget,
            opts.backend,
        ):
            for d in saved.get("results", []):
                r = result_from_json(d)
                if r.verdict == "killed" and ("vectors" not in opts.oracles or r.vectors):
                    previous[f"{r.key}\0{r.diff}"] = r
    out = sys.stdout
    try:
        reference = {b: machine_code(build(None, b)) for b in opts.widths}
    except Stillborn as err:
        print(f"recvmap mutants: the reference does not build: {err}", file=sys.stderr)
        return 2
    control = None
    if not args.no_control:
        libs = {b: build(None, b) for b in opts.widths}
        runner = run_seed_cli if opts.backend == "cli" else run_seed
        control = runner(
            libs, opts.seeds[0], min(opts.budget, 30.0), opts.hang_timeout, opts.layers
        )
        if control.outcome != "clean":
            print(
                f"recvmap mutants: the UNMUTATED reference already fails ({control.outcome}: "
                f"{control.how}, "
                f"{control.layer}): {control.description}\nfix that first (or "
                "--no-control to measure anyway)",
                file=sys.stderr,
            )
            return 2
        if "vectors" in opts.oracles:
            clean = vectors_oracle(libs, confirm_timeout=opts.confirm_timeout)
            if clean.outcome != "clean":
                print(
                    f"recvmap mutants: the UNMUTATED reference fails the vectors "
                    f"({clean.outcome}: {clean.how}): {clean.description}",
                    file=sys.stderr,
                )
                return 2
            out.write(f"control: the reference passes the {clean.programs} vectors it runs\n")
        counts = f" ({control.programs:,} programs, {control.ops:,} operations)"
        out.write(
            f"control: the reference survives {min(opts.budget, 30.0):g} s"
            f"{counts if control.programs else ''}\n"
        )
    # Phase 1: build; the sample is the first N systematic mutants that compile.
    prepared: list[tuple[Mutant, MutantResult, dict[int, Path]]] = []
    want = len(system) if args.sample < 0 or args.only else args.sample
    taken = 0
    for m in hand + system:
        if m.origin != "hand" and taken >= want:
            break
        res, libs = prepare(m, opts, reference)
        old = previous.get(f"{res.key}\0{res.diff}")
        if res.verdict == "pending" and old is not None and old.verdict != "stillborn":
            res, libs = old, {}
        if m.origin != "hand" and res.verdict != "stillborn":
            taken += 1
        prepared.append((m, res, libs))
    total = len(prepared)
    out.write(
        f"{total} mutants built ({sum(r.verdict == 'stillborn' for _, r, _ in prepared)} "
        f"stillborn); fuzzing with seeds {','.join(map(str, seeds))}, "
        f"{opts.budget:g} s each\n"
    )
    results: list[MutantResult] = []
    done = [0]

    def finish(res: MutantResult) -> None:
        done[0] += 1
        results.append(res)
        out.write(f"[{done[0]:>4}/{total}] {line_of(res)}\n")
        out.flush()
        if args.json:
            _write_json(args.json, opts, results, control)

    pending = [(m, r, libs) for m, r, libs in prepared if r.verdict == "pending"]
    for _, r, _ in prepared:
        if r.verdict != "pending":
            finish(r)
    deferred: list[tuple[MutantResult, dict[int, Path]]] = []
    if args.jobs > 1:
        with ThreadPoolExecutor(args.jobs) as pool:
            work = pool.map(lambda p: fuzz_mutant(p[1], p[2], opts, p[0], deferred), pending)
            for res in work:
                finish(res)
    else:
        for m, r, libs in pending:
            finish(fuzz_mutant(r, libs, opts, m, deferred))
    if deferred:
        out.write(f"concurrency oracle for {len(deferred)} survivors (one at a time):\n")
        for res, libs in deferred:
            stress_deferred(res, libs, opts)
            out.write(f"       {line_of(res)}\n")
            out.flush()
        if args.json:
            _write_json(args.json, opts, results, control)
    fig = figures(results, opts.budget)
    out.write(summary_text(results, opts, fig) + "\n")
    if args.json:
        _write_json(args.json, opts, results, control)
        out.write(f"results: {args.json}\n")
    ok = (
        (fig["score_strict"] or 0) >= args.min_score
        and (fig["median_ttk"] is not None and fig["median_ttk"] <= args.max_median)
        and not fig["equivalence_refuted"]
    )
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--worker":
        return _worker(json.loads(argv[1]))
    if len(argv) == 2 and argv[0] == "--replay":
        return _replay_child(json.loads(argv[1]))
    if len(argv) == 2 and argv[0] == "--abort-oracle":
        return _abort_child(json.loads(argv[1]))
    parser = argparse.ArgumentParser(prog="recvmap mutants", description=__doc__.split("\n\n")[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
