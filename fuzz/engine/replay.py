# SPDX-License-Identifier: GPL-2.0-or-later
"""Open the session that runs a program on the model and on a subject; replay it to its
first divergence. A program on the model alone is a session without a subject
(``model_session``, ``model_run``): the one model runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recvmap.pymodel.releases import Release, Rules, parse_rules
from recvmap.pymodel.words import Layout

from ..program import Program
from ..subjects.impls import ModelImpl, Subject
from .alloc import allocates, check_allocations
from .ram import RamSession, model_factories
from .session import INVALID, Divergence, Session

ROLES = {"destination": "stream's sender", "source": "source that reloads the stream"}


def open_session(program: Program, subject: Subject) -> Session | RamSession:
    """A session running ``program`` on the model and on ``subject``.

    Raises ValueError when the subject cannot run the program's layout (a big-endian
    program here, or a word width the library was not built for).
    """
    if program.layer == "bitmap":
        impl = subject.bitmap(program.layout)
        if impl is None:
            raise ValueError(
                f"{subject.name} cannot run a bitmap program of {program.layout.text} words here"
            )
        return Session(program, ModelImpl(program.layout, program.release), impl)
    factories: dict[str, Any] = {}
    layouts = {program.setup.get("side", "destination"): program.layout}
    if program.layer == "recovery":
        s = program.setup["sender"]
        layouts = {
            "destination": Layout(int(s["bits_per_long"]), bool(s["big_endian"])),
            "source": program.layout,
        }
    for role, layout in layouts.items():
        make = subject.ram(layout, program.layer) if hasattr(subject, "ram_runs") else None
        make = make or subject.ram(layout)
        if make is None:
            raise ValueError(
                f"{subject.name} cannot run the ram layer with {layout.text} words here"
                + (f" (the {ROLES[role]})" if program.layer == "recovery" else "")
            )
        factories[role] = make
    return RamSession(program, model_factories(program.release), factories)


def first_divergence(program: Program, subject: Subject) -> tuple[list[Any], Divergence | None]:
    """Replay ``program``: the model's results up to the first divergence (or all)."""
    results, divergence, _ = replay_images(program, subject)
    return results, divergence


def replay_images(
    program: Program, subject: Subject
) -> tuple[list[Any], Divergence | None, dict[str, bytes | None]]:
    """``first_divergence``, and the IMPLEMENTATION's memory images after the program
    (keyed as a vector's ``memory``: ``@k`` for arrays, ``role:block.map`` for ram maps);
    empty after a divergence."""
    session = open_session(program, subject)
    if isinstance(session, Session) and allocates(program):
        divergence = check_allocations(program, session.impl)
        if divergence is not None:
            return [], divergence, {}
    results = []
    for i, op in enumerate(program.ops):
        result, divergence = session.step(i, op)
        results.append(result)
        if divergence is not None:
            return results, divergence, {}
    if isinstance(session, Session):
        images: dict[str, bytes | None] = {
            f"@{k}": bytes(session.impl.image(ih)) for k, (_, ih) in enumerate(session.handles)
        }
    else:
        images = dict(session.impl.maps())
    return results, None, images


def model_session(
    program: Program, release: str | Release | Rules | None = None
) -> Session | RamSession:
    """A session running ``program`` on the model alone, at ``release`` (a release or
    rules; default: the program's own, else the newest)."""
    rel = parse_rules(release or program.release).name
    if program.layer == "bitmap":
        return Session(program, ModelImpl(program.layout, rel), None)
    return RamSession(program, model_factories(rel), None)


@dataclass
class ModelRun:
    """The model's results, the memory after the program, and the rejected op if any."""

    results: list[Any] = field(default_factory=list)
    images: dict[str, bytes | None] = field(default_factory=dict)
    rejected: int | None = None
    reason: str = ""
    errors: dict[int, str] = field(default_factory=dict)  # ram: op index -> error_report


def model_run(program: Program, release: str | Release | Rules | None = None) -> ModelRun:
    """Run ``program`` on the model only, at ``release`` (a release or rules; default: the
    program's own, else the newest); stop at the first operation it rejects. A ram
    operation that printed an error_report line has it in ``errors``."""
    session = model_session(program, release)
    world = session.model if isinstance(session, RamSession) else None
    out = ModelRun()
    for i, op in enumerate(program.ops):
        printed = 0 if world is None else world.errors()
        result, _ = session.step(i, op)
        if isinstance(result, tuple) and result and result[0] == INVALID:
            out.rejected, out.reason = i, result[1]
            break
        out.results.append(result)
        if world is not None and world.errors() > printed:
            out.errors[i] = world.last_error() or ""
    out.images = dict(session.model_images())
    return out
