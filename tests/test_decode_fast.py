# SPDX-License-Identifier: GPL-2.0-or-later
"""The decoder's inlined fast path reads the same choices as its readable form.

``decode_op`` calls ``_boundary``, a copy of ``boundary_number`` with the one-byte reads
inlined for speed; the readable ``boundary_number`` is the definition. Same bytes, same
position: same number and same bytes consumed, including inputs that run out mid-number.
"""

from __future__ import annotations

import random

import pytest

from recvmap.fuzz.program.decode_bitmap import Source, _boundary, boundary_number


@pytest.mark.parametrize("bpl", [32, 64])
def test_boundary_fast_path_matches_definition(bpl: int) -> None:
    rng = random.Random(bpl)
    for _ in range(20_000):
        data = rng.randbytes(rng.randrange(0, 6))
        limit = rng.choice([0, 1, bpl - 1, bpl, 3 * bpl, 64 * bpl, 300 * bpl + 5])
        start = rng.randrange(0, 3)
        a, b = Source(data), Source(data)
        a.pos = b.pos = start
        assert _boundary(a, bpl, limit) == boundary_number(b, bpl, limit), (data, limit)
        assert a.pos == b.pos, (data, limit)
