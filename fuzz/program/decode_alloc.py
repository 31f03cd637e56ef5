# SPDX-License-Identifier: GPL-2.0-or-later
"""Arrays the implementation allocates: ``bitmap_new`` and ``bitmap_zero_extend``.

The bitmap layer's arrays have a fixed size and are allocated by the engine. In one
program in sixteen (when the implementation exports both allocators), one of them is made
by the implementation instead: ``bitmap_new(nbits)``, or ``bitmap_new(old_nbits)`` given
some words and then ``bitmap_zero_extend(that, old_nbits, nbits)``, where
BITS_TO_LONGS(nbits) is the array's size. The array's initial words become the model's
result of the same allocation (``alloc_words``), which ``engine.alloc`` compares with the
implementation's whole new array, tail bits and added words included, before the
operations run on those words.

The choices come from the input read backwards (the byte contract of ``decode_input``:
the body's last byte but one decides, the bytes before it choose), so the program the
bitmap decoder reads from the front stays the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from recvmap.pymodel.bitmap import bitmap_new, bitmap_zero_extend
from recvmap.pymodel.words import BITS_TO_LONGS, Layout, Words

from .decode_bitmap import Source
from .format import Alloc, ArraySpec, Program

ALLOCATORS = ("bitmap_new", "bitmap_zero_extend")


def old_words(layout: Layout, alloc: Alloc) -> Words:
    """The array ``bitmap_zero_extend`` is given: bitmap_new(old_nbits) with the old words."""
    old = bitmap_new(alloc.old_nbits or 0, layout)
    for i, value in alloc.old.items():
        old.set_word(i, value)
    return old


def alloc_words(layout: Layout, alloc: Alloc) -> Words:
    """The model's array after ``alloc``: what the implementation must return."""
    if alloc.old_nbits is None:
        return bitmap_new(alloc.nbits, layout)
    return bitmap_zero_extend(old_words(layout, alloc), alloc.old_nbits, alloc.nbits)


def _words_of(w: Words) -> dict[int, int]:
    return {i: v for i in range(w.nwords) if (v := w.word(i))}


def decode_allocations(data: bytes, program: Program, names: Sequence[str]) -> Program:
    """``program`` with one array made by an allocator, in one input in sixteen (the
    implementation must export both); else ``program`` itself."""
    if len(data) < 2 or data[-2] & 15 or not all(n in names for n in ALLOCATORS):
        return program
    src = Source(data[-3::-1])
    bpl = program.layout.bits_per_long
    k = src.below(len(program.arrays))
    spec = program.arrays[k]
    n = spec.nwords
    nbits = (n - 1) * bpl + 1 + src.below(bpl)  # BITS_TO_LONGS(nbits) == n, tail bits left
    if src.below(4) == 0:
        alloc = Alloc(nbits)
    else:
        kind = src.below(4)
        if kind == 0:
            old_nbits = 0  # zero_extend(NULL, 0, nbits)
        elif kind == 1:
            old_nbits = nbits - src.below(min(nbits, bpl) + 1)  # within the last word(s)
        elif kind == 2:
            old_nbits = src.below(n) * bpl  # a word boundary
        else:
            old_nbits = src.below(nbits + 1)
        old_words = BITS_TO_LONGS(old_nbits, bpl)
        old = {i: v for i, v in spec.words.items() if i < old_words}
        alloc = Alloc(nbits, old_nbits, old)
    words = _words_of(alloc_words(program.layout, alloc))
    arrays = list(program.arrays)
    arrays[k] = ArraySpec(n, words, alloc)
    return dataclasses.replace(program, arrays=arrays)
