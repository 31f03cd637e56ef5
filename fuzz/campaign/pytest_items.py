# SPDX-License-Identifier: GPL-2.0-or-later
"""The pytest plugin's items (``pytest_plugin``): the library under test, one item per
regression vector and one bounded fuzz item per layer.

Imported by the plugin only when a session asks for it (``--recvmap-impl``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import at_release, parse_rules
from recvmap.qemu_ref import LibraryError

from ..engine import DivergenceError, isolated
from ..subjects.impls import Subject
from ..vectors.files import iter_files, load_file, replay, vectors_dir
from .harness import Harness, run_random

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
            for case in load_file(path):
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
        verdict = replay(self.case, subject, release=self.config.getoption("recvmap_release"))
        if verdict.status == "skip":
            pytest.skip(verdict.message)
        if verdict.status == "fail":
            raise RecvmapFailure(
                f"{self.case.name}: {verdict.message}\n"
                f"vector: {self.case.test['comment']}\n"
                f"replay it: recvmap replay --impl {subject.path} {self.case.path}"
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
        status, message = isolated(_fuzz, self.layer, subject, seconds, seed, out, release)
        if status == "skip":
            pytest.skip(message)
        if status == "fail":
            raise RecvmapFailure(f"fuzz[{self.layer}] ({seconds:g} s, seed {seed}): {message}")

    def reportinfo(self) -> tuple[Path, int, str]:
        return Path(__file__), 0, f"recvmap fuzz[{self.layer}]"


def _fuzz(
    layer: str, subject: Any, seconds: float, seed: int, out: Path, release: str | None
) -> tuple[str, str]:
    """A bounded random-input fuzz of one layer (in a forked child): (status, message)."""
    try:
        h = Harness(layer, subject, out_dir=out, release=release)
    except ValueError as err:
        missing = {str(b): subject.ram_missing(b) for b in subject.widths}
        return "skip", f"{err} (lacks {missing})" if layer != "bitmap" else str(err)
    try:
        stats = run_random(h, seconds=seconds, seed=seed)
    except DivergenceError as err:
        return "fail", str(err)
    return "pass", f"{stats['programs']} programs, {stats['ops']} operations"
