# SPDX-License-Identifier: GPL-2.0-or-later
"""The optional accelerator gives the plain rule's result (pymodel/accel.py).

bitmap_count_one and every other count of the model go through ``words._count``; with the
accelerator on, its byte-aligned interior is summed by NumPy. The plain code and the
accelerated one are run on the same maps and ranges (edges at every byte and word offset,
random, all-ones, all-zero data) and must agree, and a wrong accelerator is caught.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest

from recvmap.pymodel import accel
from recvmap.pymodel.words import _count

NUMPY = importlib.util.find_spec("numpy") is not None
SEED = 1107


@pytest.fixture
def plain_and_fast() -> Iterator[None]:
    if not accel.use(True):
        pytest.skip("needs the 'accel' extra (NumPy 2): pip install -e '.[accel]'")
    yield
    accel.use(True)


def counts(data: bytearray, ranges: list[tuple[int, int]]) -> list[int]:
    return [_count(data, lo, hi) for lo, hi in ranges]


def cases() -> tuple[list[bytearray], list[tuple[int, int]]]:
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    n = 1 << 20  # bits: large enough for the chunked paths
    maps = [
        bytearray(rng.randbytes(n // 8)),
        bytearray(b"\xff" * (n // 8)),
        bytearray(n // 8),
        bytearray(rng.choice((0, 1, 0x80, 0xFF)) for _ in range(n // 8)),
    ]
    ranges = [(0, n), (1, n - 1), (7, n - 9)]
    ranges += [(lo, n - hi) for lo in range(0, 130, 13) for hi in range(0, 130, 11)]
    ranges += sorted((rng.randrange(n // 2), rng.randrange(n // 2, n)) for _ in range(40))
    ranges += [(lo, lo + w) for lo in (0, 3, 64, 8191) for w in (8193, 8256, 70000)]
    return maps, ranges


def test_accelerated_count_equals_the_plain_rule(plain_and_fast: None) -> None:
    maps, ranges = cases()
    for data in maps:
        accel.use(False)
        plain = counts(data, ranges)
        assert accel.use(True)
        assert counts(data, ranges) == plain
        assert plain[0] == int.from_bytes(data, "little").bit_count()


def test_a_wrong_accelerator_is_caught(
    plain_and_fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above has teeth: an accelerator that drops the last aligned byte."""
    right = accel.ACTIVE.popcount
    assert right is not None
    monkeypatch.setattr(accel.ACTIVE, "popcount", lambda d, b0, b1: right(d, b0, b1 - 1))
    maps, ranges = cases()
    data = maps[1]  # all ones: every byte counts
    with monkeypatch.context() as m:
        m.setattr(accel.ACTIVE, "popcount", None)
        plain = counts(data, ranges)
    assert counts(data, ranges) != plain


def test_no_accel_in_the_environment_runs_the_plain_code() -> None:
    code = "from recvmap.pymodel import accel; print(accel.in_use())"
    env_off = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "RECVMAP_NO_ACCEL": "1"},
        check=True,
    )
    assert env_off.stdout.strip() == "none (standard library only)"
    if NUMPY:
        on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert on.stdout.strip() == "numpy bitwise_count"
