# SPDX-License-Identifier: GPL-2.0-or-later
"""Arrays the implementation allocates (``program.decode_alloc``), compared with the model.

Before the first operation, each array with an ``alloc`` is allocated by the
implementation as the program says (``bitmap_new``, or ``bitmap_new`` loaded with the old
words then ``bitmap_zero_extend``) and its whole new array, BITS_TO_LONGS(nbits) words
with the tail bits of the last one, must equal the model's (the array's initial words).
The operations then run on those words as on any array. A NULL where the model has
words is a result divergence, a differing byte a memory divergence of that array.

A separate step, not an operation of the stream: ``Session``, ``run_stream`` and the
batch interpreter (whose arrays are the engine's) stay as they are.
"""

from __future__ import annotations

import ctypes
from typing import Any

from recvmap.pymodel.words import Layout
from recvmap.qemu_ref.loader import LibraryError

from ..program import Op, Program, Ref
from ..program.decode_alloc import ALLOCATORS, alloc_words, old_words
from ..program.format import Alloc
from ..subjects.impls import Implementation
from .session import Divergence, first_difference, initial_image, word_pair


def allocates(program: Program) -> bool:
    """Whether an array of ``program`` is allocated by the implementation."""
    return program.layer == "bitmap" and any(a.alloc is not None for a in program.arrays)


def check_allocations(
    program: Program, impl: Implementation, verify: bool = True
) -> Divergence | None:
    """Allocate each array with an ``alloc`` on ``impl``: the first divergence from the
    model's array (the array's initial words), or None. ValueError when ``impl`` has no
    allocators, or (``verify``) when an array's words are not what the model's allocation
    gives (a program edited by hand; the decoder's are, and the harness skips the check)."""
    layout = program.layout
    for k, spec in enumerate(program.arrays):
        a = spec.alloc
        if a is None:
            continue
        expected = initial_image(program, k)
        if verify and alloc_words(layout, a).image() != expected:
            raise ValueError(f"array @{k}: its words are not what its allocation gives")
        if not all(impl.has(name) for name in ALLOCATORS):
            raise ValueError(f"{impl.name} cannot allocate arrays: no {' or '.join(ALLOCATORS)}")
        if a.old_nbits is None:
            op = Op("bitmap_new", (a.nbits,))
        else:
            op = Op("bitmap_zero_extend", (Ref(k), a.old_nbits, a.nbits))
        try:
            handle = _allocate(impl, layout, a)
        except LibraryError:  # NULL where the model has words
            return Divergence(-1, op, "result", f"{spec.nwords} words", "NULL")
        try:
            got = bytes(impl.image(handle))
        finally:
            free = getattr(handle, "free", None)
            if free is not None:
                free()
        if got != expected:
            off = first_difference(expected, got)
            words = word_pair(expected, got, off, layout.bytes_per_long)
            label = f"@{k} (allocated by {op.name})"
            return Divergence(-1, op, "memory", expected[off], got[off], k, off, label, words)
    return None


M_PERTURB = -6  # glibc's mallopt parameter
PERTURB = 0x5A  # malloc then returns bytes of 0xa5 (not calloc), free leaves 0x5a


def _mallopt() -> Any:
    """glibc's mallopt, or None (another C library: no perturbation)."""
    try:
        fn = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


_MALLOPT = _mallopt()


def _allocate(impl: Implementation, layout: Layout, a: Alloc) -> Any:
    """The implementation's array of ``a`` (its old array, if any, loaded first).

    Memory that malloc or realloc hand out is uninitialized; fresh from the system it is
    zero, and an implementation that leaves the words a reallocation adds uninitialized
    would pass. So the calls run with glibc's M_PERTURB set (malloc fills what it returns
    with 0xa5; calloc still zeroes): such words then show, the same on every run, except
    in blocks glibc's per-thread cache hands back (small ones: they hold what the last
    user left). It is set back to 0 after (a perturbation set from the environment ends
    there)."""
    if _MALLOPT is not None:
        _MALLOPT(M_PERTURB, PERTURB)
    try:
        if a.old_nbits is None:
            return impl.call("bitmap_new", a.nbits)
        old = None
        if a.old_nbits:  # QEMU's callers extend NULL from 0 bits
            old = impl.call("bitmap_new", a.old_nbits)
            impl.load(old, old_words(layout, a).image())
        return impl.call("bitmap_zero_extend", old, a.old_nbits, a.nbits)
    finally:
        if _MALLOPT is not None:
            _MALLOPT(M_PERTURB, 0)
