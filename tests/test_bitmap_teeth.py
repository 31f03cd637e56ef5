# SPDX-License-Identifier: GPL-2.0-or-later
"""The parity checks have teeth: deliberately broken C variants are reported.

Each variant is our C reference with one realistic mistake, compiled with gcc from the
installed sources. The same producers the suite trusts (decoded programs, the exhaustive
range sweep) must report a divergence naming the operation and the first differing byte.
"""

from __future__ import annotations

import random
import shutil

import pytest

from recvmap.fuzz.engine import Session, run_stream
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.program.decode_bitmap import decode_bitmap_program
from recvmap.fuzz.subjects.build import build_library
from recvmap.fuzz.subjects.impls import CImpl, ModelImpl
from recvmap.qemu_ref import load

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to build variants"
)

# (name, file, exact text, replacement): one plausible slip each.
VARIANTS = [
    (
        "last-word-mask-off-by-one",
        "qemu_ref.h",
        "(QREF_ULONG_MAX >> (-(nbits) & (QREF_BITS_PER_LONG - 1)))",
        "(QREF_ULONG_MAX >> (-((nbits) + 1) & (QREF_BITS_PER_LONG - 1)))",
    ),
    (
        "first-word-mask-wrong-shift",
        "qemu_ref.h",
        "(QREF_ULONG_MAX << ((start) & (QREF_BITS_PER_LONG - 1)))",
        "(QREF_ULONG_MAX << ((start + 1) & (QREF_BITS_PER_LONG - 1)))",
    ),
]


def campaign(impl: CImpl, programs: int, seed: int) -> str | None:
    """Run decoded random programs; the first divergence's description, or None."""
    model = ModelImpl(impl.layout)
    rng = random.Random(seed)
    for _ in range(programs):
        program, next_op = decode_bitmap_program(rng.randbytes(400), impl.layout)
        _, divergence = run_stream(program, next_op, Session(program, model, impl))
        if divergence is not None:
            return divergence.describe()
    return None


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_decoded_programs_catch_variant(variant: tuple[str, str, str, str], bits: int) -> None:
    _, file, old, new = variant
    impl = CImpl(load(build_library(bits, {file: [(old, new)]}), bits=bits))
    found = campaign(impl, programs=300, seed=1)
    assert found is not None, "a broken C library passed the parity check"
    assert "op #" in found and ("returned" in found or "differs first at byte" in found)


def test_unbroken_reference_built_the_same_way_passes() -> None:
    """The control: the same gcc build without an edit shows no divergence."""
    impl = CImpl(load(build_library(64), bits=64))
    assert campaign(impl, programs=100, seed=1) is None


def test_exhaustive_range_sweep_catches_last_word_mask() -> None:
    _, file, old, new = VARIANTS[0]
    impl = CImpl(load(build_library(64, {file: [(old, new)]}), bits=64))
    session = Session(Program(impl.layout, [ArraySpec(3)]), ModelImpl(impl.layout), impl)
    reports = []
    for start in range(0, 3 * 64 + 1, 7):
        for nr in range(0, 3 * 64 - start + 1):
            session.reset()
            _, divergence = session.step(0, Op("bitmap_set", (Ref(0), start, nr)))
            if divergence:
                reports.append(divergence.describe())
    assert reports, "bitmap_set with a broken last-word mask was not caught"
