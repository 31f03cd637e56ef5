# SPDX-License-Identifier: GPL-2.0-or-later
"""One fuzzer input's bytes and what each of them decides: the harnesses' byte contract.

A harness (``campaign.harness``) hands each input to ``decode_input``; nothing else reads
an input's bytes. For an input ``data`` of n bytes::

    data[0]             the word layout: layouts[data[0] % len(layouts)] (the first for b"")
    data[1:]            the BODY, read forward from its start: the program
                        (decode_bitmap: arrays, then operations; decode_ram: target,
                        host, blocks, then operations); bytes past the end read as zeros
    data[n-1] & 1       the side of the guard page of the arrays handed to C
                        (1: before them, 0: after; for b"", after)
    data[n-2] & 15 == 0 the bitmap layer only, n >= 3: one array is allocated by the
                        implementation, its choices read BACKWARD from data[n-3]
                        (decode_alloc: one input in sixteen)

The forward and the backward reads share bytes: a program long enough to reach the end
reads the bytes the allocation step reads too (and the guard's), which keeps every input a
valid program and the allocation step from changing the program's bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from recvmap.pymodel.words import Layout

from .decode_alloc import decode_allocations
from .decode_bitmap import decode_bitmap_program
from .decode_ram import decode_ram_program
from .format import Op, Program

GUARDS = ("after", "before")  # by the last byte's bit 0


@dataclass(frozen=True)
class Input:
    """An input's layout byte, guard side and body (the bytes the decoders read)."""

    layout: Layout
    guard: str
    body: bytes


def split_input(data: bytes, layouts: Sequence[Layout]) -> Input:
    """The layout byte, the guard side and the body of ``data``."""
    layout = layouts[data[0] % len(layouts)] if data else layouts[0]
    return Input(layout, GUARDS[data[-1] & 1] if data else GUARDS[0], data[1:])


def decode_input(
    data: bytes,
    layouts: Sequence[Layout],
    layer: str,
    *,
    names: Callable[[Layout], Sequence[str]] | None = None,
    max_ops: int = 24,
    max_words: int = 64,
    targets: Sequence[str] | None = None,
    hosts: Sequence[str] | None = None,
    senders: Sequence[Layout] = (),
    absent: Callable[[Layout], frozenset[str]] | None = None,
    release: str | None = None,
) -> tuple[Input, Program, Callable[[], Op | None]]:
    """``data`` split and its program decoded at ``release`` (and its guard side): the
    arrays or the setup now, the operations from the function returned (None when done).

    Bitmap layer: ``names(layout)`` are the functions the program may call. Ram and
    recovery layers: ``targets``, ``hosts`` and ``senders`` (recovery) restrict the setup,
    ``absent(layout)`` are functions the implementation lacks (``decode_ram_program``).
    """
    inp = split_input(data, layouts)
    if layer == "bitmap":
        allowed = names(inp.layout) if names is not None else None
        program, next_op = decode_bitmap_program(inp.body, inp.layout, max_ops, max_words, allowed)
        if allowed is not None:
            program = decode_allocations(inp.body, program, allowed)
        return inp, program.at(release).with_guard(inp.guard), next_op
    program, next_op = decode_ram_program(
        inp.body,
        inp.layout,
        layer=layer,
        targets=targets,
        hosts=hosts,
        senders=senders,
        max_ops=max_ops,
        absent=frozenset() if absent is None else absent(inp.layout),
    )
    return inp, program.at(release).with_guard(inp.guard), next_op
