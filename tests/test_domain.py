# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's asserts: the C reference aborts where QEMU asserts, the model rejects the same inputs.

The C side runs in a subprocess, since an abort ends the process. The model side must raise
``PreconditionError`` naming the argument and QEMU's rule, and leave memory untouched.
"""

from __future__ import annotations

import subprocess

import helpers
import pytest

from recvmap.pymodel import bitmap
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.words import ILP32_LE, LP64_LE, Layout, Words

ASSERTING = [
    "bitmap_set",
    "bitmap_set_atomic",
    "bitmap_clear",
    "bitmap_test_and_clear",
    "bitmap_test_and_clear_atomic",
]
BAD = [(-1, 3), (5, -1), (-64, -64)]


def run_c(bits: int, call: str) -> subprocess.CompletedProcess[str]:
    return helpers.run_c(bits, "w = lib.words(4)", call)


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("name", ASSERTING)
@pytest.mark.parametrize("start,nr", BAD)
def test_c_reference_aborts_on_negative(bits: int, name: str, start: int, nr: int) -> None:
    proc = run_c(bits, f"lib.{name}(w, {start}, {nr})")
    helpers.assert_c_aborted(proc)


@pytest.mark.parametrize("bits", [64, 32])
def test_c_reference_returns_inside_domain(bits: int) -> None:
    """The control: the same call inside the domain returns normally."""
    proc = run_c(bits, "lib.bitmap_set(w, 1, 3)")
    helpers.assert_c_returned(proc)


@pytest.mark.parametrize("layout", [LP64_LE, ILP32_LE], ids=["64", "32"])
@pytest.mark.parametrize("name", ASSERTING)
@pytest.mark.parametrize("start,nr", BAD)
def test_model_rejects_negative(layout: Layout, name: str, start: int, nr: int) -> None:
    words = Words(layout, 4)
    words.set_word(1, 0x5A)
    before = words.image()
    with pytest.raises(PreconditionError) as err:
        getattr(bitmap, name)(words, start, nr)
    assert err.value.function == name
    assert err.value.argument == ("start" if start < 0 else "nr")
    assert "start >= 0" in err.value.rule and "assert" in err.value.rule
    assert words.image() == before


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda w: bitmap.bitmap_fill(w, 0), "nbits"),
        (lambda w: bitmap.bitmap_zero(w, 0), "nbits"),
        (lambda w: bitmap.bitmap_set(w, 4 * 64 - 3, 10), "map"),
        (lambda w: bitmap.bitmap_copy(w, Words(LP64_LE, 1), 200), "src"),
    ],
    ids=["fill-0", "zero-0", "set-past-end", "copy-short-src"],
)
def test_model_rejects_outside_domain(call: object, argument: str) -> None:
    words = Words(LP64_LE, 4)
    before = words.image()
    with pytest.raises(PreconditionError) as err:
        call(words)  # type: ignore[operator]
    assert err.value.argument == argument
    assert str(err.value).startswith(f"{err.value.function}: {argument}: ")
    assert words.image() == before
