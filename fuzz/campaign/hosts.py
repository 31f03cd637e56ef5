# SPDX-License-Identifier: GPL-2.0-or-later
"""Campaigns on real other hosts (the C reference cross-built and run under qemu-user,
``recvmap.fuzz.subjects.hosts``).

- ``fuzz_host(name, seconds, seed)``: random decoded programs against the model configured
  for the host's layout; a summary dict (``recvmap fuzz --host NAME``).
- ``recovery_matrix(names, samples, seed)``: the postcopy recovery stream sent by each
  host's ram layer, reloaded by every host's (all pairs), each step compared with the model.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from recvmap.pymodel.errors import PreconditionError, RecoveryError
from recvmap.pymodel.ramblock import RamContext, Side, TargetPage
from recvmap.pymodel.words import Layout

from ..engine import Session, minimize, model_run, run_stream
from ..engine.ram import RamSession, model_factories
from ..program import Op, Program
from ..program.decode_bitmap import decode_bitmap_program
from ..program.decode_ram import decode_ram_program
from ..program.ram_setup import RAM_FUNCTIONS, ContextFactory
from ..subjects.hosts import (
    HOSTS,
    HostError,
    HostPool,
    available_hosts,
    host_driver,
    host_status,
    sender_hosts,
)
from ..subjects.impls import ModelImpl, bitmap_functions
from ..subjects.remote import Driver, DriverError, driver_context, driver_factory

# --- differential fuzzing on a host ---------------------------------------------------------


class _Recorder:
    """Hands out a decoder's operations and remembers them all, to replay a crash."""

    def __init__(self, next_op: Callable[[], Op | None]) -> None:
        self.next_op = next_op
        self.seen: list[Op] = []

    def __call__(self) -> Op | None:
        op = self.next_op()
        if op is not None:
            self.seen.append(op)
        return op


def pool_session(pool: HostPool, program: Program, name: str, sender: str | None = None) -> Any:
    """A session comparing ``program`` on the model and on host ``name`` of ``pool``."""
    if program.layer == "bitmap":
        return Session(program, ModelImpl(program.layout, program.release), pool.impl(name))
    make: ContextFactory = driver_factory(pool.driver(name))
    factories = {"destination": make, "source": make}
    if program.layer == "recovery":
        factories["destination"] = driver_factory(pool.driver(sender or name))
    return RamSession(program, model_factories(program.release), factories)


def pool_first_divergence(pool: HostPool, program: Program, name: str, sender: str | None) -> Any:
    session = pool_session(pool, program, name, sender)
    for i, op in enumerate(program.ops):
        _, divergence = session.step(i, op)
        if divergence is not None:
            return divergence
    return None


LAYERS = ("bitmap", "ram", "recovery")


def fuzz_host(
    name: str,
    seconds: float,
    seed: int = 0,
    max_programs: int | None = None,
    max_ops: int = 24,
    max_words: int = 64,
    keep_going: bool = False,
    layers: Sequence[str] = LAYERS,
    pool: HostPool | None = None,
    senders: dict[Layout, str] | None = None,
    release: str | None = None,
) -> dict[str, Any]:
    """Random decoded programs on host ``name`` against the model of its layout.

    Layers take turns: bitmap programs (program.decode_bitmap), ram programs (program.decode_ram)
    and recovery programs whose stream is sent by the C of another host (one per word layout,
    see ``sender_hosts``) and reloaded by this host's. Stops after ``seconds`` (or
    ``max_programs``) or at the first divergence, which is minimized and returned as a JSON
    program (``keep_going``: count diverging programs and go on; the first one is reported). A
    driver that dies on an operation the model accepted is a divergence too (a crash); the
    drivers are restarted. ``pool`` may bring other builds of the drivers (it is closed at the
    end), ``senders`` other recovery senders by layout, ``release`` the QEMU release the model
    follows (a QEMU tree's driver is judged at the tree's release).
    """
    if reason := host_status(name):
        raise HostError(f"host {name}: {reason}")
    layout = HOSTS[name].layout
    rng = random.Random(seed)
    start = time.monotonic()
    per_layer = {layer: {"programs": 0, "ops": 0} for layer in layers}
    summary: dict[str, Any] = {
        "host": name,
        "layout": f"{layout.bits_per_long}-bit {'big' if layout.big_endian else 'little'}-endian",
        "seed": seed,
        "programs": 0,
        "ops": 0,
        "layers": per_layer,
        "diverging_programs": 0,
        "crashes": 0,
        "divergence": None,
    }
    senders = sender_hosts() if senders is None else senders
    summary["senders"] = sorted(set(senders.values()))
    pool = HostPool() if pool is None else pool
    try:
        names = bitmap_functions(pool.impl(name))
        # ram functions the driver lacks (a QEMU tree's release): never generated
        absent = frozenset(n for n in RAM_FUNCTIONS if not pool.impl(name).has(n))
        while time.monotonic() - start < seconds:
            if max_programs is not None and summary["programs"] >= max_programs:
                break
            layer = layers[summary["programs"] % len(layers)]
            data = rng.randbytes(rng.randrange(8, 400))
            if layer == "bitmap":
                program, next_op = decode_bitmap_program(data, layout, max_ops, max_words, names)
            else:
                program, next_op = decode_ram_program(
                    data, layout, layer=layer, senders=list(senders), max_ops=max_ops, absent=absent
                )
            if release is not None:
                program = program.at(release)
            sender = None
            if layer == "recovery":
                s = program.setup["sender"]
                sender = senders[Layout(int(s["bits_per_long"]), bool(s["big_endian"]))]
            recorder = _Recorder(next_op)
            summary["programs"] += 1
            per_layer[layer]["programs"] += 1
            try:
                session = pool_session(pool, program, name, sender)
                kept, divergence = run_stream(program, recorder, session)
            except DriverError:
                summary["crashes"] += 1
                summary["diverging_programs"] += 1
                pool.close()
                if summary["divergence"] is None:
                    crashed = program.with_ops(_model_kept(program, recorder.seen))
                    summary["divergence"] = _report(crashed, pool, name, sender)
                if not keep_going:
                    break
                continue
            summary["ops"] += len(kept.ops)
            per_layer[layer]["ops"] += len(kept.ops)
            if divergence is not None:
                summary["diverging_programs"] += 1
                if summary["divergence"] is None:
                    summary["divergence"] = _report(kept, pool, name, sender)
                if not keep_going:
                    break
            if summary["programs"] % 50 == 0:
                pool.reset()  # drop the buffers, blocks and maps of finished programs
    finally:
        pool.close()
    summary["seconds"] = round(time.monotonic() - start, 2)
    return summary


def _model_kept(program: Program, ops: list[Op]) -> list[Op]:
    """The operations the model accepts, in order (those a session passed to the driver)."""
    kept: list[Op] = []
    for op in ops:
        if model_run(program.with_ops([*kept, op])).rejected is None:
            kept.append(op)
    return kept


def _report(program: Program, pool: HostPool, name: str, sender: str | None) -> dict[str, Any]:
    """Minimize a diverging (or crashing) program; its description and JSON."""

    def outcome(p: Program) -> str | None:
        try:
            divergence = pool_first_divergence(pool, p, name, sender)
        except DriverError as err:
            pool.close()  # restarted on next use
            return f"crash: {err}"
        return None if divergence is None else str(divergence.describe())

    small = minimize(program, lambda p: outcome(p) is not None)
    description = outcome(small) or "no longer reproduces (flaky?)"
    return {"description": description, "program": small.to_json(), "sender": sender}


# --- the recovery stream between hosts ------------------------------------------------------


@dataclass
class BlockPlan:
    """A block as both sides see it; ``source_used`` differs when the source resized it."""

    idstr: str
    used_length: int
    max_length: int
    source_used: int


@dataclass
class RecoveryPlan:
    """One migration's blocks, the pages the destination received, and a damaged stream."""

    page_bits: int
    blocks: list[BlockPlan]
    sets: list[tuple[str, int, int, int]]  # (kind, block, page, count)
    corrupt: int | None = None  # block whose stream loses its end mark on the way


def random_plan(rng: random.Random) -> RecoveryPlan:
    """Blocks whose page counts straddle 32- and 64-bit words, and received pages in them.

    Pages past used_length (up to max_length) may be received too: their bits sit in the
    last word of the map, so 64-bit hosts send them where 32-bit hosts send padding. One
    block in eight has another size on the source and one plan in six a damaged end mark:
    those streams must be rejected by every host, as the model rejects them.
    """
    bits = rng.choice((12, 12, 12, 10, 13, 14, 16))
    unit = max(4096, 1 << bits)  # lengths are multiples of max(host page, target page)
    per_unit = unit >> bits
    blocks = []
    for k in range(rng.randint(1, 3)):
        pages = rng.choice((1, 2, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, rng.randint(1, 300)))
        units = max(1, -(-pages // per_unit))
        extra = rng.choice((0, 0, 1, rng.randint(1, 40)))
        source = units if rng.randrange(8) else max(1, units + rng.choice((-1, 1, 2)))
        blocks.append(BlockPlan(f"blk{k}.ram", units * unit, (units + extra) * unit, source * unit))
    sets = []
    for _ in range(rng.randint(0, 12)):
        b = rng.randrange(len(blocks))
        npages = blocks[b].max_length >> bits
        page = rng.randrange(npages)
        count = rng.randint(1, npages - page)
        sets.append((rng.choice(("set", "range", "offset", "range")), b, page, count))
    corrupt = rng.randrange(len(blocks)) if rng.randrange(6) == 0 else None
    return RecoveryPlan(bits, blocks, sets, corrupt)


def _map_image(m: Any) -> bytes | None:
    return None if m is None else bytes(m.image())


def _contexts(plan: RecoveryPlan, driver: Driver, side: Side) -> tuple[Any, Any, list[Any]]:
    """A driver context and a model context of the driver's layout, with the plan's blocks."""
    tp = TargetPage.fixed(plan.page_bits)
    ctx = driver_context(driver, tp, side=side, checked=False)
    model = RamContext(tp, side=side, layout=ctx.layout, pointer_bits=ctx.pointer_bits)
    pairs = []
    for b in plan.blocks:
        used = b.used_length if side is Side.DESTINATION else b.source_used
        size = max(b.max_length, used)
        pairs.append(
            (ctx.ram_block_add(b.idstr, used, size), model.ram_block_add(b.idstr, used, size))
        )
    return ctx, model, pairs


def _destination(plan: RecoveryPlan, driver: Driver) -> tuple[list[bytes], list[str]]:
    """Run the plan on the driver's destination and on the model; the streams, mismatches."""
    ctx, model, pairs = _contexts(plan, driver, Side.DESTINATION)
    model.ramblock_recv_map_init()
    ctx.ramblock_recv_map_init()
    size = 1 << plan.page_bits
    problems: list[str] = []
    for kind, k, page, count in plan.sets:
        (crb, mrb) = pairs[k]
        for c, rb in ((model, mrb), (ctx, crb)):
            if kind == "set":
                c.ramblock_recv_bitmap_set(rb, rb.host + page * size)
            elif kind == "offset":
                c.ramblock_recv_bitmap_set_offset(rb, page * size)
            else:
                c.ramblock_recv_bitmap_set_range(rb, rb.host + page * size, count)
    streams = []
    for (crb, mrb), b in zip(pairs, plan.blocks, strict=True):
        if _map_image(crb.receivedmap) != _map_image(mrb.receivedmap):
            problems.append(f"{driver.name}: receivedmap of {b.idstr} differs from the model")
        sent = ctx.ramblock_recv_bitmap_send(b.idstr)
        expected = model.ramblock_recv_bitmap_send(b.idstr)
        if sent != expected:
            problems.append(
                f"{driver.name}: stream of {b.idstr} differs from the model: "
                f"{sent[0].hex()} ret {sent[1]} != {expected[0].hex()} ret {expected[1]}"
            )
        streams.append(sent[0])
    ctx.ram_load_cleanup()
    return streams, problems


def _reload(
    plan: RecoveryPlan, driver: Driver, streams: list[bytes], sender: str, counts: dict[str, int]
) -> list[str]:
    """Reload each block's stream on the driver's source and on the model; mismatches.

    A stream the model accepts must be accepted (0) with the same dirty bitmap; a stream
    the model rejects must be rejected with the same return value.
    """
    ctx, model, pairs = _contexts(plan, driver, Side.SOURCE)
    model.ram_list_init_bitmaps()
    ctx.ram_list_init_bitmaps()
    problems = []
    for k, ((crb, mrb), stream, b) in enumerate(zip(pairs, streams, plan.blocks, strict=True)):
        if k == plan.corrupt:
            stream = stream[:-1] + bytes([stream[-1] ^ 1])
        results: list[tuple[int, str]] = []
        for c, rb in ((model, mrb), (ctx, crb)):
            try:
                results.append((c.ram_dirty_bitmap_reload(rb, stream), ""))
            except RecoveryError as err:
                results.append((err.ret, err.reason))
        where = f"{sender} -> {driver.name}: {b.idstr}"
        if results[0] != results[1]:
            problems.append(f"{where}: reload gave {results[1]}, model {results[0]}")
        elif _map_image(crb.bmap) != _map_image(mrb.bmap):
            problems.append(f"{where}: bmap after reload differs from the model")
        key = "accepted" if results[1][0] == 0 else "rejected"
        counts[key] = counts.get(key, 0) + 1
    ctx.ram_save_cleanup()
    return problems


def check_recovery(
    plan: RecoveryPlan, drivers: dict[str, Driver], counts: dict[str, int]
) -> list[str]:
    """One plan on every driver as destination, each stream reloaded on every driver.

    Returns the mismatches with the model; ``counts`` gains pairs, accepted and rejected
    reloads, and identical_streams (1 if every host sent the same bytes).
    """
    problems: list[str] = []
    sent = {}
    for name, d in drivers.items():
        d.ask("reset")
        sent[name], bad = _destination(plan, d)
        problems += bad
    first = next(iter(sent.values()))
    counts["identical_streams"] = counts.get("identical_streams", 0) + all(
        s == first for s in sent.values()
    )
    for sender, streams in sent.items():
        for d in drivers.values():
            d.ask("reset")
            problems += _reload(plan, d, streams, sender, counts)
            counts["pairs"] = counts.get("pairs", 0) + 1
    return problems


def recovery_matrix(names: Sequence[str], samples: int = 4, seed: int = 0) -> dict[str, Any]:
    """Streams sent by every host's ram layer, reloaded by every host's (all pairs).

    Each destination's maps and streams and each source's reload result and dirty bitmap
    are compared with the model of that host's layout. The summary counts host pairs,
    block reloads accepted and rejected (in agreement with the model), plans whose
    streams were byte-identical on all hosts, and lists every mismatch (empty when all
    hosts agree with the model).
    """
    rng = random.Random(seed)
    start = time.monotonic()
    drivers: dict[str, Driver] = {}
    problems: list[str] = []
    counts = {"pairs": 0, "accepted": 0, "rejected": 0, "identical_streams": 0}
    try:
        for name in names:
            drivers[name] = host_driver(name)
            if not drivers[name].info.get("ram"):
                raise HostError(f"host {name}: driver built without the ram layer")
        for _ in range(samples):
            problems += check_recovery(random_plan(rng), drivers, counts)
    except PreconditionError as err:
        problems.append(f"plan outside QEMU's domain (a bug of the plan): {err}")
    finally:
        for d in drivers.values():
            d.close()
    return {
        "hosts": list(names),
        "samples": samples,
        **counts,
        "problems": problems,
        "seconds": round(time.monotonic() - start, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recvmap.fuzz.campaign.hosts [HOST...]``: build, fuzz briefly, cross-check
    recovery."""
    ap = argparse.ArgumentParser(
        prog="python -m recvmap.fuzz.campaign.hosts", description=main.__doc__
    )
    ap.add_argument("hosts", nargs="*", help="default: every available host")
    ap.add_argument("--seconds", type=float, default=10.0, help="fuzzing time per host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=4, help="recovery plans (all pairs each)")
    args = ap.parse_args(argv)
    names = args.hosts or available_hosts()
    for n in HOSTS:
        if n not in names:
            print(f"# {n}: not run: {host_status(n) or 'not selected'}")
    status = 0
    for n in names:
        s = fuzz_host(n, args.seconds, args.seed)
        print(json.dumps(s))
        status |= s["divergence"] is not None
    m = recovery_matrix(names, args.samples, args.seed)
    print(json.dumps(m))
    return status | bool(m["problems"])


if __name__ == "__main__":
    sys.exit(main())
