# SPDX-License-Identifier: GPL-2.0-or-later
"""Run ram- and recovery-layer programs on the model and on a C ram face, side by side.

A ram program's ``setup`` names the target (and its page bits), the host whose page sizes
apply, the side of the migration and the RAM blocks; ``@k`` in an operation is block k.
Both implementations get the same blocks (same host addresses). After every operation the
return values, the ``error_report`` line it produced, and the memory image of every map
(``receivedmap`` and ``bmap`` of every block) must be equal.

The recovery layer runs two contexts: the destination (word layout ``setup["sender"]``)
and the source (the program's layout). ``ram_list_init_bitmaps``, ``ram_save_cleanup`` and
``ram_dirty_bitmap_reload`` run on the source, everything else on the destination.
``ramblock_recv_bitmap_send`` keeps its stream in a register that the ``stream_*``
operations damage (as a broken network would) or replace (``stream_load("hex")``) and
``ram_dirty_bitmap_reload(@k)`` reads.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from recvmap.pymodel import arch
from recvmap.pymodel.errors import PreconditionError, RecoveryError
from recvmap.pymodel.ramblock import RamApi, model_context
from recvmap.pymodel.words import Words
from recvmap.qemu_ref.ram import CRamContext, check_spare

from ..program import Op, Program, Ref
from ..program.ram_setup import (
    RAM_FUNCTIONS,
    SOURCE_FUNCTIONS,
    STREAM_OPS,
    ContextFactory,
    RamSetup,
    block_kwargs,
    target_page,
)
from .session import INVALID, Divergence, first_difference, word_pair


class RamWorld:
    """One implementation's contexts, blocks and stream register for one program."""

    def __init__(self, program: Program, setup: RamSetup, factories: dict[str, ContextFactory]):
        tp = target_page(setup.target, setup.target_page_bits)
        host = arch.host(setup.host)
        self.contexts: dict[str, RamApi] = {}
        self.blocks: dict[str, list[Any]] = {}
        for role, (side, layout) in setup.roles(program).items():
            ctx = factories[role](
                tp,
                side=side,
                layout=layout,
                host_page_size=setup.host_page_size,
                pointer_bits=layout.bits_per_long,
                strict=setup.strict,
                host=host,
            )
            self.blocks[role] = [
                ctx.ram_block_add(str(b["idstr"]), **block_kwargs(b)) for b in setup.blocks
            ]
            self.contexts[role] = ctx
        self.stream = b""
        self._views: dict[tuple[int, int], memoryview] = {}

    def role_of(self, name: str) -> str:
        if len(self.contexts) == 1:
            return next(iter(self.contexts))
        return "source" if name in SOURCE_FUNCTIONS else "destination"

    def call(self, op: Op) -> Any:
        """Run ``op``; PreconditionError and RecoveryError propagate."""
        if op.name in STREAM_OPS:
            self.stream = damage(self.stream, op)
            return None
        role = self.role_of(op.name)
        ctx, blocks = self.contexts[role], self.blocks[role]
        args = [blocks[a.index] if isinstance(a, Ref) else a for a in op.args]
        if op.name == "ram_dirty_bitmap_reload":
            args.append(self.stream)
        if op.name not in RAM_FUNCTIONS:
            raise PreconditionError(op.name, "name", "a function of the ram layer")
        if op.name == "ramblock_recv_bitmap_send":
            result = send(ctx, *args)
            self.stream = result[0]
            return result
        return getattr(ctx, op.name)(*args)

    def errors(self) -> int:
        return sum(len(c.error_log) for c in self.contexts.values())

    def last_error(self) -> str | None:
        logs = [c.error_log for c in self.contexts.values() if c.error_log]
        return logs[-1][-1] if logs else None

    def maps(self) -> list[tuple[str, bytes | None]]:
        """(label, image or None) of every map of every block of every context."""
        return [(label, None if m is None else bytes(m)) for label, m in self.live_maps()]

    def live_maps(self) -> list[tuple[str, Any]]:
        """Like ``maps`` but without copying: buffers that show the maps' current bytes."""
        out = []
        for role, blocks in self.blocks.items():
            for b in blocks:
                for attr in ("receivedmap", "bmap"):
                    m = getattr(b, attr)
                    out.append((f"{role}:{b.idstr}.{attr}", None if m is None else self._live(m)))
        return out

    def _live(self, m: Any) -> Any:
        if isinstance(m, Words):
            return m.image() if m.layout.big_endian else m.data
        address = getattr(m, "address", None)
        if address is None:
            return m.image()
        size = m.nwords * m.bits_per_long // 8
        view = self._views.get((address, size))
        if view is None:  # a C map: a view of its memory, made once per allocation
            view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
            self._views[(address, size)] = view
        return view


def send(ctx: RamApi, block_name: str, spare: int = 0) -> tuple[bytes, int]:
    """``ramblock_recv_bitmap_send(name[, spare])`` of a program: a C face's sender gets a
    buffer ``spare`` bytes larger (``qemu_ref.ram``); the model's sender has no buffer.
    The spare is checked on either side, so the model rejects one out of range first."""
    check_spare(spare)
    if isinstance(ctx, CRamContext):
        return ctx.ramblock_recv_bitmap_send(block_name, spare)
    return ctx.ramblock_recv_bitmap_send(block_name)


def damage(stream: bytes, op: Op) -> bytes:
    """The stream register after a ``stream_*`` operation (pure, the same on both sides).

    stream_truncate(n): keep n bytes; stream_xor(pos, mask): flip bits of byte pos % len;
    stream_append(n, byte): n more bytes; stream_set_size(v): be64 v as the size field;
    stream_load("hex"): a stream written by hand.
    """
    if op.name == "stream_load":
        return bytes.fromhex(str(op.args[0]))
    a = [int(x) for x in op.args if isinstance(x, int)]
    if op.name == "stream_truncate":
        return stream[: a[0]]
    if op.name == "stream_append":
        return stream + bytes([a[1] & 0xFF]) * a[0]
    if op.name == "stream_set_size":
        return (a[0] % (1 << 64)).to_bytes(8, "big") + stream[8:]
    if not stream:
        return stream
    pos = a[0] % len(stream)
    return stream[:pos] + bytes([stream[pos] ^ (a[1] & 0xFF)]) + stream[pos + 1 :]


def outcome_value(world: RamWorld, op: Op) -> Any:
    """The result of ``op`` on ``world``, with a RecoveryError as a value: its return
    value and the error text the release gives (error_report line or Error message)."""
    try:
        return world.call(op)
    except RecoveryError as err:
        return ("RecoveryError", err.ret, world.last_error() or "")


class RamSession:
    """A ram or recovery program's worlds on both sides, ready for operations; without
    implementation factories (``impl=None``), the model's world alone."""

    def __init__(
        self,
        program: Program,
        model: dict[str, ContextFactory],
        impl: dict[str, ContextFactory] | None,
    ) -> None:
        self.program = program
        self.setup = RamSetup.of(program)
        self.factories = (model, impl)
        self.reset()

    def reset(self) -> None:
        self.model = RamWorld(self.program, self.setup, self.factories[0])
        impl = self.factories[1]
        self.impl = None if impl is None else RamWorld(self.program, self.setup, impl)

    def step(self, index: int, op: Op) -> tuple[Any, Divergence | None]:
        """Run one operation on both sides; (model result, divergence or None)."""
        model_errors = self.model.errors()
        try:
            expected = outcome_value(self.model, op)
        except PreconditionError as err:
            return (INVALID, str(err)), None
        if self.impl is None:
            return expected, None
        impl_errors = self.impl.errors()
        actual = outcome_value(self.impl, op)
        if not same(expected, actual):
            return expected, Divergence(index, op, "result", expected, actual)
        merr = self.model.last_error() if self.model.errors() > model_errors else None
        ierr = self.impl.last_error() if self.impl.errors() > impl_errors else None
        if merr != ierr:
            return expected, Divergence(index, op, "error_report", merr, ierr)
        return expected, self.compare_memory(index, op)

    def compare_memory(self, index: int, op: Op) -> Divergence | None:
        assert self.impl is not None
        pairs = zip(self.model.live_maps(), self.impl.live_maps(), strict=True)
        for (label, mimg), (_, iimg) in pairs:
            if (mimg is None) == (iimg is None) and (mimg is None or mimg == iimg):
                continue
            if mimg is None or iimg is None or len(mimg) != len(iimg):
                return Divergence(index, op, "map", _shape(mimg), _shape(iimg), label=label)
            off = first_difference(mimg, iimg)
            words = word_pair(mimg, iimg, off, 8)
            return Divergence(index, op, "memory", mimg[off], iimg[off], None, off, label, words)
        return None

    def model_images(self) -> dict[str, bytes | None]:
        """The model's maps, keyed as a vector's ``memory`` (``role:block.map``)."""
        return dict(self.model.maps())


def _shape(image: bytes | None) -> str:
    return "no map (NULL)" if image is None else f"a map of {len(image)} bytes"


def same(expected: Any, actual: Any) -> bool:
    """Results are equal as C values (bool and int compare by value; tuples elementwise)."""
    if isinstance(expected, tuple) and isinstance(actual, tuple):
        return len(expected) == len(actual) and all(
            same(e, a) for e, a in zip(expected, actual, strict=True)
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, int | bool) and int(expected) == int(actual)
    return bool(expected == actual)


def model_factories(release: str | None = None) -> dict[str, ContextFactory]:
    """The model's contexts for both roles, at ``release`` (default: the newest)."""
    factory = functools.partial(model_context, release=release)
    return {"destination": factory, "source": factory}
