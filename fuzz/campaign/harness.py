# SPDX-License-Identifier: GPL-2.0-or-later
"""What every harness does with one fuzzer input: decode, run on both sides, compare.

``Harness.one_input(data)`` is libFuzzer's TestOneInput for one layer: the bytes decode to a
program (``program.decode_input`` states an input's byte contract), each operation runs on
the model first (an operation outside QEMU's domain is dropped, never passed on) and then on the
implementation under test, and return values and memory images are compared after every
operation. On a divergence the program is minimized, written as a regression vector file, and
``DivergenceError`` is raised naming the first differing operation, both results and the first
differing byte.

The atheris scripts (``harness_bitmap.py`` ...) and the in-process loop (``run_random``,
used by the bench and where atheris is missing) share this class. A harness process is
configured by its environment, so libFuzzer's fork, merge and minimize modes see the same
harness: ``Harness.from_config(layer, HarnessConfig.from_env())``, the contract being
``harness_env.HarnessConfig``.

A suspected hang: a watchdog thread (ctypes releases the GIL during a C call, so it
runs while the library loops) saves the input as ``hang-<layer>-<sha>.input`` in the
output folder, records it in the statistics file and ends the process with HANG_EXIT.
The campaign then re-runs the input alone (``alone.py``) before it calls it a HANG.

A harness process of its own (``conduct``: a campaign job, a re-run alone, the pytest
plugin's fuzz item) also checks, after every input, that the library left the process as
it found it: no process started (``fork``), its descriptors open. Either is a finding
(``MisbehaviourError``), and so is a library that ends the process inside a function: the
input being run is kept in shared memory (``record.InputRecord``) for the parent to read.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recvmap.pymodel.releases import FUNCTION_KEY, parse_rules
from recvmap.pymodel.words import Layout
from recvmap.qemu_ref import load
from recvmap.qemu_ref.loader import guard_from_env, guard_mode, set_guard

from ..engine import (
    DivergenceError,
    Session,
    first_divergence,
    minimize,
    open_session,
    run_stream,
)
from ..engine.alloc import allocates, check_allocations
from ..engine.isolate import NEVER, Conduct
from ..engine.ram import RamSession
from ..program import Program
from ..program.decode_input import decode_input
from ..subjects.impls import ModelImpl, Subject
from ..vectors.files import replay_command, subject_record, write_divergence
from .harness_env import HarnessConfig
from .record import InputRecord, record_path

LAYERS = ("bitmap", "ram", "recovery")
HANG_EXIT = 86  # the exit status of a harness whose input hung


class MisbehaviourError(Exception):
    """The library did to the harness's process what QEMU's functions never do (started a
    process, closed its descriptors): a finding, its input left running in the record."""


def subject_of(config: HarnessConfig) -> Subject:
    """The implementation under test that the configuration names (default: ours)."""
    bits = config.word_bits
    if config.native:
        libs = {b: p for b, p in config.native if bits is None or b == bits}
        return Subject(libraries={b: load(p, b) for b, p in libs.items()})
    return Subject(config.impl, bits)


class Harness:
    """One layer's TestOneInput, with counters the campaign reads."""

    def __init__(
        self,
        layer: str,
        subject: Subject,
        *,
        targets: Sequence[str] | None = None,
        hosts: Sequence[str] | None = None,
        out_dir: str | os.PathLike[str] = "fuzz-out",
        stats_path: str | os.PathLike[str] | None = None,
        max_ops: int = 24,
        max_words: int = 64,
        keep_going: bool = False,
        receiver_bits: int | None = None,
        timeout: float | None = None,
        release: str | None = None,
        deadline: float | None = None,
        skip: Sequence[str] = (),
        record: InputRecord | None = None,
    ) -> None:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}: one of {', '.join(LAYERS)}")
        self.layer = layer
        self.subject = subject
        # The QEMU release the model runs at; programs and reproducers carry it.
        self.release = None if release is None else parse_rules(release).name
        # the ram functions the rules lack: the decoder leaves them out as it does those
        # the library lacks (the model would reject every call)
        self.lacking = frozenset(
            f for f in FUNCTION_KEY if not parse_rules(release).has_function(f)
        )
        self.targets = targets
        self.hosts = hosts
        self.out_dir = Path(out_dir)
        self.stats_path = Path(stats_path) if stats_path else None
        self.max_ops = max_ops
        self.max_words = max_words
        self.keep_going = keep_going  # count divergences instead of stopping (the bench)
        self.divergences = 0
        self.layouts = [Layout(b, False) for b in subject.widths if self._runs(Layout(b, False))]
        self.senders = list(self.layouts)  # recovery: the destination's word layouts
        if receiver_bits is not None:
            self.layouts = [lay for lay in self.layouts if lay.bits_per_long == receiver_bits]
        self.programs = 0
        self.ops = 0
        self.dropped = 0
        self.cells: dict[str, set[str]] = {
            "targets": set(),
            "hosts": set(),
            "page_sizes": set(),
            "widths": set(),
        }
        self.started = time.monotonic()
        self.timeout = timeout or None
        self.skip = frozenset(skip)  # sha256 of inputs not to run
        self.deadline = deadline  # time.time() by which report() has written its vector
        self._current: tuple[float, bytes] | None = None
        self._watchdog: threading.Thread | None = None
        self._last_write = 0.0
        self._bitmap: dict[Layout, tuple[ModelImpl, Any, list[str]]] = {}
        self.record = record  # the running input, for the parent (record.py)
        self.conduct: Conduct | None = None  # set by a process of its own: check_conduct()
        if not self.layouts:
            raise ValueError(f"{subject.name}: nothing of the {layer} layer to fuzz")

    @classmethod
    def from_config(cls, layer: str, config: HarnessConfig) -> Harness:
        """The harness a process configured by ``config`` runs (the environment contract)."""
        return cls(
            layer,
            subject_of(config),
            targets=config.arches,
            hosts=config.hosts,
            out_dir=config.out_dir,
            stats_path=config.stats_file,
            max_ops=config.max_ops,
            max_words=config.max_words,
            receiver_bits=config.receiver_bits,
            timeout=config.timeout,
            release=config.release,
            deadline=config.deadline,
            skip=config.skip,
            record=(
                InputRecord(record_path(config.stats))
                if config.stats is not None and not config.stats_per_process
                else None
            ),
        )

    def check_conduct(self) -> None:
        """From now on, check after every input what the library did to the process (for a
        harness that has its process to itself; see the module's doc)."""
        self.conduct = Conduct()

    def _runs(self, layout: Layout) -> bool:
        if self.layer == "bitmap":
            return bool(self.subject.bitmap_functions(layout))
        if hasattr(self.subject, "ram_runs"):
            return bool(self.subject.ram_runs(layout, self.layer))
        return self.subject.ram(layout) is not None

    def skipped(self) -> dict[str, list[str]]:
        """Symbols of the ABI the library lacks, per word width (never silently skipped)."""
        out = {}
        for bits in self.subject.widths:
            missing = self.subject.missing(bits)
            if missing:
                out[str(bits)] = missing
        return out

    # --- one input ----------------------------------------------------------------------

    def decode(self, data: bytes) -> tuple[Program, Callable[[], Any], Session | RamSession]:
        """``data`` as the byte contract says (``program.decode_input``): its program, the
        function yielding its operations, and the session they run in; the arrays handed
        to C (and those our C allocates) get the input's guard page side (unless
        RECVMAP_GUARD chose one), and the program records the side."""
        inp, program, next_op = decode_input(
            data,
            self.layouts,
            self.layer,
            names=lambda layout: self._bitmap_of(layout)[2],
            max_ops=self.max_ops,
            max_words=self.max_words,
            targets=self.targets,
            hosts=self.hosts,
            senders=self.senders if self.layer == "recovery" else (),
            absent=lambda layout: (
                frozenset(self.subject.ram_missing(layout.bits_per_long)) | self.lacking
            ),
            release=self.release,
        )
        if not guard_from_env():  # the guard page after the arrays, then before them
            set_guard(inp.guard)
        program = program.with_guard(guard_mode())  # the side it runs with, on record
        self.cells["widths"].add(str(inp.layout.bits_per_long))
        if self.layer == "bitmap":
            model, impl, _ = self._bitmap_of(inp.layout)
            return program, next_op, Session(program, model, impl)
        s = program.setup
        if "sender" in s:
            pair = f"{s['sender']['bits_per_long']}->{inp.layout.bits_per_long}"
            self.cells.setdefault("pairs", set()).add(pair)
        self.cells["targets"].add(f"{s['target']}:{s['target_page_bits']}")
        self.cells["hosts"].add(str(s["host"]))
        self.cells["page_sizes"].update(str(b["page_size"]) for b in s["blocks"])
        return program, next_op, open_session(program, self.subject)

    def _bitmap_of(self, layout: Layout) -> tuple[ModelImpl, Any, list[str]]:
        """The model, the implementation and the functions a bitmap program of ``layout``
        may call (the library's, not those the release lacks: the model would reject
        every call), made once per layout."""
        if layout not in self._bitmap:
            impl = self.subject.bitmap(layout)
            model = ModelImpl(layout, self.release)
            names = [n for n in self.subject.bitmap_functions(layout) if model.has(n)]
            self._bitmap[layout] = (model, impl, names)
        return self._bitmap[layout]

    def one_input(self, data: bytes) -> None:
        if self.skip and hashlib.sha256(data).hexdigest() in self.skip:
            return
        if self.record is not None:
            self.record.start(data)
        if self.timeout is not None:
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, daemon=True)
                self._watchdog.start()
            self._current = (time.monotonic(), data)
        try:
            self._one_input(data)
        finally:
            self._current = None
        if self.conduct is not None:
            problem = self.conduct.problem()
            if problem is not None:  # the record keeps the input running: a crash
                problem += f" during an input ({NEVER})"
                print(f"MISBEHAVIOUR: {problem}", file=sys.stderr, flush=True)
                raise MisbehaviourError(problem)
        if self.record is not None:
            self.record.done()  # a divergence or a crash leaves it marked running

    def _watch(self) -> None:
        """The watchdog: an input running longer than ``timeout`` is a HANG."""
        assert self.timeout is not None
        while True:
            time.sleep(min(0.1, self.timeout / 4))
            current = self._current
            if current is not None and time.monotonic() - current[0] > self.timeout:
                self.hang(current[1])

    def hang(self, data: bytes) -> None:
        """Save the hanging input, say so, and end the process (never returns)."""
        path = self.out_dir / f"hang-{self.layer}-{hashlib.sha256(data).hexdigest()[:12]}.input"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if self.stats_path is not None:
                self.write_stats(time.monotonic(), hang=str(path), timeout=self.timeout)
        finally:
            print(
                f"HANG: an input ran longer than {self.timeout} s; input saved: {path}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(HANG_EXIT)

    def _one_input(self, data: bytes) -> None:
        program, next_op, session = self.decode(data)
        if self.layer == "bitmap" and allocates(program):
            assert isinstance(session, Session)
            first = check_allocations(program, session.impl, verify=False)
            if first is not None:  # the implementation's new array differs: no operation runs
                self.programs += 1
                self.divergences += 1
                if not self.keep_going:
                    self.report(program.with_ops([]), first)
                return
        kept, divergence = run_stream(program, next_op, session)
        self.programs += 1
        self.ops += len(kept.ops)
        now = time.monotonic()
        if self.stats_path is not None and now - self._last_write > 0.5:
            self.write_stats(now)
        if divergence is not None:
            self.divergences += 1
            if not self.keep_going:
                current, until = self._current, self._until()
                if current is not None and until is not None:
                    # minimizing is ours, bounded by the deadline: the watchdog waits for it
                    self._current = (max(current[0], until), current[1])
                self.report(kept, divergence)

    # --- divergence ---------------------------------------------------------------------

    def report(self, program: Program, first: Any = None) -> None:
        """Minimize, write the reproducer vector, raise DivergenceError naming it.

        A divergence that does not come back when the program runs again (it depends on
        something outside the program: uninitialized memory, a race) is reported as
        non-deterministic with the original program kept, never minimized.
        """
        record = subject_record(self.subject)
        cut: list[str] = []
        until = self._until()

        def fails(p: Program) -> bool:
            if until is not None and time.monotonic() > until:
                if not cut:
                    cut.append("minimization")
                return False  # the smallest program so far is the reproducer
            return first_divergence(p, self.subject)[1] is not None

        _, again = first_divergence(program, self.subject)
        if again is None and first is not None:
            divergence = first
            path = write_divergence(
                program,
                divergence,
                self.subject.name,
                self.out_dir,
                "nondeterministic",
                record,
                deadline=until,
                cut=cut,
            )
            description = (
                "NON-DETERMINISTIC: diverged once, not when the program ran again: "
                + divergence.describe()
            )
        else:
            early = None
            if again is not None and self.stats_path is not None and until is not None:
                # in a campaign: the finding first, as found, so that a stop (the
                # campaign's end, libFuzzer's -timeout) during the minimization loses
                # nothing; the minimized vector replaces it
                early = write_divergence(
                    program, again, self.subject.name, self.out_dir, subject=record,
                    deadline=time.monotonic(), cut=["minimization (running)"],
                )  # fmt: skip
                self._report_stats(early, again, again.describe() + " [not minimized yet]", record)
            small = minimize(program, fails) if again is not None else program
            _, divergence = first_divergence(small, self.subject)
            if divergence is None:  # the minimized program stopped diverging
                small, divergence = program, again or first
            path = write_divergence(
                small, divergence, self.subject.name, self.out_dir, subject=record,
                deadline=until, cut=cut,
            )  # fmt: skip
            description = divergence.describe()
            if cut:
                description += f" [cut short by --max-time: {', '.join(cut)}]"
            if early is not None and early != path:
                early.unlink(missing_ok=True)
        if self.stats_path is not None:
            self._report_stats(path, divergence, description, record)
        err = DivergenceError(divergence, self.subject.name)
        head = err.args[0] if description == divergence.describe() else description
        err.args = (f"{head}\nreplay it: {replay_command(path, record)}\nreproducer: {path}",)
        err.path = path  # type: ignore[attr-defined]
        raise_by_kind(err)

    def _until(self) -> float | None:
        """The deadline on the monotonic clock (what the watchdog and write_divergence read)."""
        if self.deadline is None:
            return None
        return time.monotonic() + (self.deadline - time.time())

    def _report_stats(self, path: Path, divergence: Any, description: str, record: Any) -> None:
        self.write_stats(
            time.monotonic(),
            divergence=str(path),
            description=description,
            replay=replay_command(path, record),
            detail=divergence.to_json(),
        )

    # --- statistics ---------------------------------------------------------------------

    def stats(self, now: float | None = None) -> dict[str, Any]:
        elapsed = (now or time.monotonic()) - self.started
        return {
            "layer": self.layer,
            "impl": self.subject.name,
            "release": self.release or parse_rules(None).name,
            "programs": self.programs,
            "ops": self.ops,
            "elapsed": round(elapsed, 3),
            "cells": {k: sorted(v) for k, v in self.cells.items()},
            "skipped": self.skipped(),
        }

    def write_stats(self, now: float, **extra: Any) -> None:
        assert self.stats_path is not None
        self._last_write = now
        tmp = self.stats_path.with_name(self.stats_path.name + ".tmp")
        tmp.write_text(json.dumps({**self.stats(now), **extra}))
        os.replace(tmp, self.stats_path)


def raise_by_kind(err: DivergenceError) -> None:
    """Raise ``err`` from a frame named after the diverging function and what differed.

    ClusterFuzz and OSS-Fuzz deduplicate crashes by their stack: raised from one place,
    every divergence would be one crash. From ``diverges_in_bitmap_set_memory`` (a function
    made for the purpose, in a file named ``<recvmap: bitmap_set memory>``) each kind of
    divergence is its own crash, and the same kind again is a duplicate.
    """
    d = err.divergence
    name = "diverges_in_" + re.sub(r"\W", "_", f"{d.op.name}_{d.what}")
    scope: dict[str, Any] = {}
    source = f"def {name}(err):\n    raise err\n"
    exec(compile(source, f"<recvmap: {d.op.name} {d.what}>", "exec"), scope)  # noqa: S102
    scope[name](err)


def run_random(
    harness: Harness,
    seconds: float | None = None,
    runs: int | None = None,
    seed: int = 0,
    max_len: int = 600,
) -> dict[str, Any]:
    """Without atheris: random inputs through the same decoder, until time or runs run out."""
    rng = random.Random(seed)
    deadline = None if seconds is None else time.monotonic() + seconds
    while (runs is None or harness.programs < runs) and (
        deadline is None or time.monotonic() < deadline
    ):
        harness.one_input(rng.randbytes(rng.randrange(1, max_len)))
    if harness.stats_path is not None:
        harness.write_stats(time.monotonic())
    return harness.stats()


def random_main(layer: str, argv: list[str]) -> int:
    """libFuzzer's -runs, -max_total_time and -seed, honoured without atheris."""
    flags = dict(a[1:].split("=", 1) for a in argv[1:] if a.startswith("-") and "=" in a)
    harness = Harness.from_config(layer, HarnessConfig.from_env())
    harness.check_conduct()  # this process is the harness's own
    seconds = float(flags["max_total_time"]) if "max_total_time" in flags else None
    runs = int(flags["runs"]) if "runs" in flags else None
    if seconds is None and runs is None:
        seconds = 10.0
    try:
        stats = run_random(harness, seconds, runs, int(flags.get("seed", "0")))
    except (DivergenceError, MisbehaviourError) as err:  # the record keeps the input
        print(err, file=sys.stderr)
        return 1
    print(f"Done {stats['programs']} runs, {stats['ops']} operations compared", file=sys.stderr)
    return 0
