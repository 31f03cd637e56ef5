# SPDX-License-Identifier: GPL-2.0-or-later
"""The pytest plugin's items (``pytest_plugin``): the library under test, one item per
regression vector and one bounded fuzz item per layer.

Imported by the plugin only when a session asks for it (``--recvmap-impl``).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import at_release, parse_rules
from recvmap.qemu_ref import LibraryError

from ..engine import DivergenceError, isolated
from ..engine.isolate import confirm_budget
from ..subjects.impls import Subject
from ..vectors.files import (
    VectorError,
    iter_files,
    load_file,
    replay,
    replay_command,
    subject_record,
    vectors_dir,
)
from .alone import input_argv, rerun_alone
from .findings import input_reproducer
from .harness import HANG_EXIT, Harness, MisbehaviourError, run_random, subject_of
from .harness_env import HarnessConfig
from .record import InputRecord

LAYERS = ("bitmap", "ram", "recovery")
SUBJECT = pytest.StashKey[Any]()


def configure(config: pytest.Config) -> None:
    """Check ``--recvmap-release``, load the library and keep it in the session."""
    release = config.getoption("recvmap_release")
    if release is not None:
        try:
            parse_rules(release)
        except PreconditionError as err:
            raise pytest.UsageError(f"--recvmap-release {release}: {err.rule}") from None
    config.stash[SUBJECT] = _subject(config)


def _subject(config: pytest.Config) -> Any:
    given = str(config.getoption("recvmap_impl"))
    path = Path(given)
    if not path.is_file():
        raise pytest.UsageError(f"--recvmap-impl {given}: no such file")
    try:
        subject = Subject(path.resolve(), config.getoption("recvmap_word_bits"))
        for bits in subject.widths:
            subject.library(bits)
    except LibraryError as err:
        raise pytest.UsageError(f"--recvmap-impl {given}: {err}") from None
    return subject


class RecvmapFailure(AssertionError):
    """A divergence or a failed vector: shown as its message alone."""


class RecvmapCollector(pytest.Collector):
    def collect(self) -> Iterator[pytest.Item]:
        folder = self.config.getoption("recvmap_vectors") or vectors_dir()
        for path in iter_files([folder]):
            try:
                cases = load_file(path)
            except VectorError as err:  # was an INTERNALERROR traceback, exit 3
                raise pytest.UsageError(f"--recvmap-vectors {folder}: {err}") from None
            for case in cases:
                yield VectorItem.from_parent(
                    self, name=f"{path.name}[tc{case.test['tcId']}]", case=case
                )
        if self.config.getoption("recvmap_fuzz_seconds") > 0:
            for layer in LAYERS:
                yield FuzzItem.from_parent(self, name=f"fuzz[{layer}]", layer=layer)


class RecvmapItem(pytest.Item):
    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, RecvmapFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class VectorItem(RecvmapItem):
    def __init__(self, *, case: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.case = case

    def runtest(self) -> None:
        subject = self.config.stash[SUBJECT]
        program = self.case.program
        why = _not_applicable(subject, program)
        if why:
            pytest.skip(why)
        release = self.config.getoption("recvmap_release")
        verdict = replay(self.case, subject, release=release, timeout=HarnessConfig.timeout)
        if verdict.status == "skip":
            pytest.skip(verdict.message)
        if verdict.status in ("slow", "unconfirmed"):
            warnings.warn(f"{self.case.name}: {verdict.message}", stacklevel=1)
        elif verdict.status != "pass":
            command = replay_command(self.case.path, subject_record(subject), release=release)
            raise RecvmapFailure(
                f"{self.case.name}: {verdict.message}\n"
                f"vector: {self.case.test['comment']}\n"
                f"replay it: {command}"
            )

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.case.path, 0, f"recvmap vector {self.case.name}"


def _not_applicable(subject: Any, program: Any) -> str | None:
    """Why the library cannot run ``program`` here (None: it can)."""
    layout = program.layout
    if layout.big_endian or layout.bits_per_long not in subject.widths:
        return (
            f"vector for {layout.text} words; the library runs "
            f"{'/'.join(map(str, subject.widths))}-bit little-endian words here"
        )
    if program.layer == "bitmap":
        have = set(subject.bitmap_functions(layout))

        lacks = sorted({op.name for op in program.ops if at_release().has(op.name)} - have)
        if lacks:
            return f"the library lacks {', '.join(lacks)}"
        return None
    missing = subject.ram_missing(layout.bits_per_long)
    if missing:
        return f"the library lacks the ram layer ({', '.join(missing[:4])} ...)"
    if program.layer == "recovery":
        sender = program.setup["sender"]
        if sender["big_endian"] or int(sender["bits_per_long"]) not in subject.widths:
            return "the vector's sender has a word layout the library does not run"
    return None


class FuzzItem(RecvmapItem):
    def __init__(self, *, layer: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.layer = layer

    def runtest(self) -> None:
        subject = self.config.stash[SUBJECT]
        seconds = float(self.config.getoption("recvmap_fuzz_seconds"))
        seed = int(self.config.getoption("recvmap_seed"))
        out = Path(self.config.getoption("recvmap_out")).resolve()
        release = self.config.getoption("recvmap_release")
        timeout = HarnessConfig.timeout
        config = HarnessConfig(
            impl=subject.path,
            word_bits=subject.widths[0] if len(subject.widths) == 1 else None,
            release=release,
            out_dir=out,
            timeout=timeout,
        )
        record = InputRecord()  # the input the child runs, read here if it dies in one
        try:
            status, message = isolated(
                _fuzz, self.layer, config, seconds, seed, record,
                timeout=seconds + 2 * timeout + STARTUP,
            )  # fmt: skip
            if status == "fail" and not message.startswith(DIVERGES):
                status, message = _crash_or_hang(self.layer, config, message, record.running())
        finally:
            record.close()
        head = f"fuzz[{self.layer}] ({seconds:g} s, seed {seed})"
        if status == "skip":
            pytest.skip(message)
        if status == "warn":
            warnings.warn(f"{head}: {message}", stacklevel=1)
        elif status != "pass":
            raise RecvmapFailure(f"{head}: {message}")

    def reportinfo(self) -> tuple[Path, int, str]:
        return Path(__file__), 0, f"recvmap fuzz[{self.layer}]"


DIVERGES = "divergence: "  # the start of a divergence's message from _fuzz
STARTUP = 30.0  # seconds past its fuzzing the child may take (a loaded machine)


def _fuzz(
    layer: str, config: HarnessConfig, seconds: float, seed: int, record: InputRecord
) -> tuple[str, str]:
    """A bounded random-input fuzz of one layer (in a forked child): (status, message).
    The harness keeps its running input in ``record``, checks after every input what the
    library did to the process, and ends the process when an input outruns --timeout."""
    try:
        h = Harness.from_config(layer, config)
    except ValueError as err:
        subject = subject_of(config)
        missing = {str(b): subject.ram_missing(b) for b in subject.widths}
        return "skip", f"{err} (lacks {missing})" if layer != "bitmap" else str(err)
    h.record = record
    h.check_conduct()
    try:
        stats = run_random(h, seconds=seconds, seed=seed)
    except DivergenceError as err:
        return "fail", DIVERGES + str(err)
    except MisbehaviourError as err:
        return "fail", str(err)  # the record keeps the input: a crash like any other
    return "pass", f"{stats['programs']} programs, {stats['ops']} operations"


def _crash_or_hang(
    layer: str, config: HarnessConfig, message: str, data: bytes | None
) -> tuple[str, str]:
    """The fuzz child died (or hung) in an input: confirmed alone, a failure with its
    program, reproducer and replay command; not confirmed, a warning (not a finding)."""
    if data is None:
        return "error", f"{message} (no input was running: recvmap's failure, not the library's)"
    hung = message.startswith("HANG") or f"(exit status {HANG_EXIT})" in message
    kind = "hang" if hung else "crash"
    config.out_dir.mkdir(parents=True, exist_ok=True)
    kept = config.out_dir / f"{kind}-{layer}-{hashlib.sha256(data).hexdigest()[:12]}.input"
    kept.write_bytes(data)
    budget = confirm_budget(config.timeout) if hung else 20.0
    env = config.replace(timeout=budget if hung else config.timeout).to_env(os.environ)
    rerun = rerun_alone(input_argv(layer, kept), budget + 3.0, env)
    ending, how = rerun.ending()
    if ending not in ("crashed", "hung", "running", "diverged"):
        return "warn", f"a suspected {kind} ({message}) not confirmed alone: {ending} {how}"
    what = f"HANG: an input ran longer than {config.timeout:g} s" if hung else message
    if ending in ("running", "hung"):
        how = f"still running after {budget:g} s alone"
    out = isolated(_reproducer, layer, config, data, kind, timeout=60.0)
    if not isinstance(out, dict):
        return "fail", f"{what}; confirmed alone ({how}); input {kept}; no reproducer: {out}"
    return "fail", (
        f"{what}\nconfirmed alone: {how}\ninput: {kept}\nprogram: {out['program']}\n"
        f"reproducer: {out['vector']}\nreplay it: {out['replay']}"
    )


def _reproducer(layer: str, config: HarnessConfig, data: bytes, kind: str) -> dict[str, str]:
    h = Harness.from_config(layer, config)
    path, replay, _ = input_reproducer(h, data, kind, config.timeout, time.monotonic() + 50)
    (case,) = load_file(path)
    p = case.program
    where = [f"@{i}: {a.nwords} words" for i, a in enumerate(p.arrays)]
    where += [f"{len(p.setup['blocks'])} RAM blocks, {p.setup['target']}"] if p.setup else []
    head = f"{p.layer}, {p.layout.bits_per_long}-bit words ({', '.join(where)})"
    text = f"{head}: {'; '.join(str(op) for op in p.ops)}"
    return {"vector": str(path), "replay": replay, "program": text}
