# SPDX-License-Identifier: GPL-2.0-or-later
"""pytest plugin: check YOUR implementation of QEMU's bitmap helpers inside your own pytest.

Installed with recvmap (entry point ``pytest11``) and inert until asked::

    pytest --recvmap-impl ./libmine.so

adds one test item per regression vector (``recvmap::bitmap-rules.json[tc4]`` ...) and one
short bounded fuzz item per layer (``recvmap::fuzz[bitmap]`` ...) to the session. Each item
replays its program on the model and on the library (QEMU's symbol names, the ABI of
``qemu_ref.h``) and compares every return value and memory image; a divergence is the
item's assertion message, naming the first differing operation, both values, the first
differing byte and that word's expected and actual value. Vectors for another word width
or byte order, or for functions the library lacks, are skipped with the reason, never
passed. The library runs in forked children, so a
crash fails one item instead of ending the session.

Options: ``--recvmap-word-bits``, ``--recvmap-release`` (the QEMU release the library
follows), ``--recvmap-fuzz-seconds`` (per layer, default 5; 0 turns the fuzz items off),
``--recvmap-seed``, ``--recvmap-vectors DIR``, ``--recvmap-out DIR`` (reproducers of fuzz
divergences).
"""

from __future__ import annotations

from types import ModuleType

import pytest

from .options import MONTH, SEED_MAX, help_range, number

_ITEMS = pytest.StashKey[ModuleType]()


def _items() -> ModuleType:
    """The plugin's working part (``pytest_items``), imported when a session asks for it."""
    # lazy: pytest loads this plugin in every session of an environment with recvmap;
    # importing the model, the loader and the engine there would cost every session 0.14 s
    # (pytest with the plugin 0.17 s, with its items 0.31 s: least of 15 processes)
    from . import pytest_items

    return pytest_items


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("recvmap", "recvmap: vectors and fuzzing against QEMU's model")
    g.addoption(
        "--recvmap-impl",
        metavar="PATH",
        default=None,
        help="a shared library exporting QEMU's bitmap (and ram) functions to check",
    )
    g.addoption("--recvmap-word-bits", type=int, choices=(32, 64), default=None)
    # ranges as recvmap fuzz's (campaign.options): nan, inf or 1e300 seconds turned the
    # fuzz items off unsaid or failed them with an OverflowError
    seconds = number("--recvmap-fuzz-seconds", float, 0, MONTH)
    g.addoption(
        "--recvmap-fuzz-seconds",
        type=seconds,
        default=5.0,
        metavar="S",
        help=f"seconds of fuzzing per layer, {help_range(seconds)} (0: no fuzz items)",
    )
    seed = number("--recvmap-seed", int, 0, SEED_MAX)
    g.addoption(
        "--recvmap-seed", type=seed, default=0, metavar="N", help=f"seed, {help_range(seed)}"
    )
    g.addoption(
        "--recvmap-release",
        default=None,
        metavar="vX.Y.Z",
        help="the QEMU release the library follows (default: the newest the model knows)",
    )
    g.addoption("--recvmap-vectors", metavar="DIR", default=None)
    g.addoption("--recvmap-out", metavar="DIR", default="recvmap-out")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("recvmap_impl", None):
        items = config.stash[_ITEMS] = _items()
        items.configure(config)


def pytest_report_header(config: pytest.Config) -> str | None:
    items = config.stash.get(_ITEMS, None)
    if items is None:
        return None
    subject = config.stash[items.SUBJECT]
    widths = "/".join(str(b) for b in subject.widths)
    return f"recvmap: {subject.path} ({widths}-bit words) against the model, plugin {__file__}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the recvmap items before the selection (-k, -m) and the reporting see the list."""
    module = config.stash.get(_ITEMS, None)
    if module is None:
        return
    collector = module.RecvmapCollector.from_parent(session, name="recvmap")
    items.extend(collector.collect())
