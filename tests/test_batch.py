# SPDX-License-Identifier: GPL-2.0-or-later
"""The batch interpreter finds exactly what the per-operation path finds.

``run_stream`` runs a program on our C in one foreign call (``qemu_ref/batch.c``) and compares
the recorded results and images with the model's trace. The per-operation path
(``Session.step``, a library without the interpreter) is the reference: on the same inputs
both must keep the same operations and report the same first divergence -- on our library
(none) and on mutants of it (the divergences the per-operation path finds, result and
memory ones alike).
"""

from __future__ import annotations

import random
import shutil

import pytest

from recvmap.fuzz.engine import Session
from recvmap.fuzz.engine.session import _raw, _run_stream_steps, _value, run_stream
from recvmap.fuzz.program import Op, Ref
from recvmap.fuzz.program.decode_bitmap import decode_bitmap_program
from recvmap.fuzz.subjects.impls import CImpl, ModelImpl
from recvmap.qemu_ref import load
from recvmap.qemu_ref.loader import LibraryError


def compare_paths(lib_path: object, bits: int, inputs: int, seed: int) -> list[str]:
    """Run the same random inputs both ways; return the divergences' kinds."""
    lib = load(lib_path, bits=bits)  # type: ignore[arg-type]
    batch, steps, model = CImpl(lib), CImpl(lib, batch=False), ModelImpl(lib.layout)
    assert batch.batch_kinds is not None, "the batch interpreter is not installed"
    assert steps.batch_kinds is None
    rng = random.Random(seed)
    kinds = []
    for _ in range(inputs):
        data = rng.randbytes(rng.randrange(0, 900))
        p1, next1 = decode_bitmap_program(data, lib.layout)
        p2, next2 = decode_bitmap_program(data, lib.layout)
        kept1, div1 = run_stream(p1, next1, Session(p1, model, batch))
        kept2, div2 = _run_stream_steps(p2, next2, Session(p2, model, steps))
        assert kept1.to_json() == kept2.to_json()
        assert (div1 is None) == (div2 is None), (div1, div2)
        if div1 is not None and div2 is not None:
            assert div1.describe() == div2.describe()
            assert (div1.what, div1.array, div1.offset) == (div2.what, div2.array, div2.offset)
            kinds.append(div1.what)
    return kinds


@pytest.mark.parametrize("bits", [64, 32])
def test_reference_same_on_both_paths(bits: int) -> None:
    assert compare_paths(None, bits, 400, bits) == []


@pytest.mark.extra("mutation")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the mutants")
@pytest.mark.parametrize(
    "key, bits",
    [("hand:test-and-clear-resets-mask", 64), ("hand:bit-mask-hardcoded-64", 32)],
)
def test_mutant_same_divergences_on_both_paths(key: str, bits: int) -> None:
    from recvmap.fuzz.mutation import mutants

    mutant = {m.key: m for m in mutants.all_mutants()}[key]
    kinds = compare_paths(mutants.build(mutant, bits), bits, 600, 1)
    assert kinds, f"{key}: no divergence in 600 inputs: the comparison lost its teeth"
    if bits == 32:
        assert {"result", "memory"} <= set(kinds), kinds


def test_interpreter_refuses_bad_codes() -> None:
    impl = CImpl(load(bits=64))
    ok = impl.run_batch((1,), bytes(8), [Op("set_bit", (3, Ref(0)))])
    assert ok[0] == [0] and bytes(ok[1]) == (8).to_bytes(8, "little")
    with pytest.raises(LibraryError):  # array 1 does not exist
        impl.run_batch((1,), bytes(8), [Op("set_bit", (3, Ref(1)))])


@pytest.mark.parametrize(
    "kind, value, raw",
    [
        ("s", -1, 0xFFFF_FFFF_FFFF_FFFF),
        ("s", -(1 << 63), 1 << 63),
        ("s", 5, 5),
        ("u", (1 << 64) - 1, 0xFFFF_FFFF_FFFF_FFFF),
        ("b", True, 1),
        ("b", False, 0),
        ("v", None, 0),
    ],
)
def test_raw_results_round_trip(kind: str, value: object, raw: int) -> None:
    assert _raw(kind, value) == raw
    assert _value(kind, raw) == value


@pytest.mark.parametrize(
    "kind, value", [("v", 0), ("s", 1 << 63), ("b", 2), ("s", None), ("b", None)]
)
def test_results_ctypes_never_returns_never_match(kind: str, value: object) -> None:
    """A model result C cannot produce matches no raw result (raw results are >= 0)."""
    assert _raw(kind, value) == -1
