# SPDX-License-Identifier: GPL-2.0-or-later
"""Each fact of the project has one home; these tests hold the ones a test can see.

A fact written twice drifts (issue 24 found copies that disagreed), so each test here
checks that the users of a fact read it from its home, or that a second statement of it
(a table in the docs) says the same as the home.
"""

from __future__ import annotations

import ast
from pathlib import Path

from recvmap.fuzz.program.decode_bitmap import MODEL_ONLY, bitmap_signatures
from recvmap.fuzz.subjects.impls import ModelImpl
from recvmap.pymodel import LP64_LE, at_release

ROOT = Path(__file__).resolve().parents[1]


def _sources(*folders: str) -> list[Path]:
    return [p for f in folders for p in sorted((ROOT / f).rglob("*.py"))]


def test_the_model_function_table_is_pymodels() -> None:
    """``pymodel.releases`` answers which functions a release has; the engine's model and
    the decoder read that table, and nothing outside the model builds one again by
    walking the model's modules (``__all__``)."""
    table = at_release().functions()
    assert ModelImpl(LP64_LE).functions == table
    assert set(bitmap_signatures()) == set(table) - MODEL_ONLY
    old = at_release("v2.12.0").functions()
    assert ModelImpl(LP64_LE, "v2.12.0").functions == old and set(old) < set(table)
    walkers = [
        str(p.relative_to(ROOT))
        for p in _sources("fuzz", "qemu_ref", "bench")
        if any(
            isinstance(n, ast.Attribute) and n.attr == "__all__"
            for n in ast.walk(ast.parse(p.read_text()))
        )
        or '"__all__"' in p.read_text()
    ]
    assert not walkers, f"a second table of the model's functions: {walkers}"
