# SPDX-License-Identifier: GPL-2.0-or-later
"""Each fact of the project has one home; these tests hold the ones a test can see.

A fact written twice drifts (issue 24 found copies that disagreed), so each test here
checks that the users of a fact read it from its home, or that a second statement of it
(a table in the docs) says the same as the home.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from recvmap.fuzz.campaign import launch
from recvmap.fuzz.campaign.harness_env import HarnessConfig
from recvmap.fuzz.program.decode_bitmap import MODEL_ONLY, bitmap_signatures
from recvmap.fuzz.subjects.impls import ModelImpl
from recvmap.pymodel import LP64_LE, at_release

ROOT = Path(__file__).resolve().parents[1]


def _sources(*folders: str) -> list[Path]:
    return [p for f in folders for p in sorted((ROOT / f).rglob("*.py"))]


def test_the_model_function_table_is_pymodels() -> None:
    """``pymodel.releases`` answers which functions a release has; the engine's model and
    the decoder read that table, and nothing outside the model builds one again by
    walking the model's modules (``__all__``)."""
    table = at_release().functions()
    assert ModelImpl(LP64_LE).functions == table
    assert set(bitmap_signatures()) == set(table) - MODEL_ONLY
    old = at_release("v2.12.0").functions()
    assert ModelImpl(LP64_LE, "v2.12.0").functions == old and set(old) < set(table)
    walkers = [
        str(p.relative_to(ROOT))
        for p in _sources("fuzz", "qemu_ref", "bench")
        if any(
            isinstance(n, ast.Attribute) and n.attr == "__all__"
            for n in ast.walk(ast.parse(p.read_text()))
        )
        or '"__all__"' in p.read_text()
    ]
    assert not walkers, f"a second table of the model's functions: {walkers}"


FULL = HarnessConfig(
    word_bits=32,
    impl=Path("/x/libmine.so"),
    native=((64, Path("/a/lib64.so")), (32, Path("/a/lib32.so"))),
    arches=("x86_64", "aarch64"),
    hosts=("linux-x86_64",),
    receiver_bits=64,
    release="v8.2.0",
    max_ops=7,
    max_words=9,
    out_dir=Path("/o"),
    stats=Path("/s/stats.json"),
    stats_per_process=True,
    timeout=0.25,
    deadline=1754035200.125,
    skip=("ab", "cd"),
    engine="random",
)


def test_the_harness_environment_contract_round_trips() -> None:
    """``HarnessConfig`` is the harness's environment: what ``to_env`` writes ``from_env``
    reads back, every field; a process's other variables pass, the contract's are the
    configuration's only (a stale RECVMAP_IMPL of the parent does not leak)."""
    changed = [f.name for f in dataclasses.fields(FULL) if getattr(FULL, f.name) == f.default]
    assert not changed, f"FULL leaves {changed} at the default: the round trip misses them"
    for config in (HarnessConfig(), FULL, FULL.replace(timeout=0.0, word_bits=None)):
        assert HarnessConfig.from_env(config.to_env()) == config
    env = HarnessConfig().to_env({"PATH": "/bin", "RECVMAP_IMPL": "/old.so", "RECVMAP_GUARD": "x"})
    assert env["PATH"] == "/bin" and env["RECVMAP_GUARD"] == "x" and "RECVMAP_IMPL" not in env
    assert len(HarnessConfig.variables()) == len(dataclasses.fields(HarnessConfig))


def test_only_the_contract_names_the_harness_variables() -> None:
    """Outside ``harness_env.py`` no module of the campaign room spells a RECVMAP_ variable
    (they write and read a HarnessConfig), and the table of the harness scripts' manual
    (``launch``) is the contract's own ``describe()``."""
    spelled = {
        str(p.relative_to(ROOT)): found
        for p in sorted((ROOT / "fuzz" / "campaign").glob("*.py"))
        if p.name != "harness_env.py"
        and (found := re.findall(r"[\"'](RECVMAP_[A-Z_]+)[\"']", p.read_text()))
    }
    assert not spelled, spelled
    assert HarnessConfig.describe() in "\n".join(
        line.removeprefix("    ") for line in (launch.__doc__ or "").splitlines()
    )


def _model_only_sessions(tree: ast.AST) -> int:
    """Sessions built with the model on both sides (the model-alone runner, copied)."""
    model_makers = {"ModelImpl", "model_factories"}

    def name(node: ast.AST) -> str:
        if isinstance(node, ast.Call):
            node = node.func
        return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")

    return sum(
        1
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and name(n.func) in ("Session", "RamSession")
        and sum(1 for a in n.args if name(a) in model_makers) >= 2
    )


def test_one_model_runner() -> None:
    """A program runs on the model alone through the engine's session without a subject
    (``engine.model_session`` / ``model_run``): the vectors' runner is the engine's, and
    nobody builds a session with the model on both sides to get one."""
    from recvmap.fuzz import engine
    from recvmap.fuzz.vectors import files

    assert files.model_run is engine.model_run
    copies = {
        str(p.relative_to(ROOT)): n
        for p in _sources("fuzz", "bench")
        if (n := _model_only_sessions(ast.parse(p.read_text())))
    }
    assert not copies, copies
    old = "Session(program, ModelImpl(program.layout), ModelImpl(program.layout))"
    assert _model_only_sessions(ast.parse(old)) == 1  # the check sees the old copies


def test_one_decoder_reads_an_inputs_bytes() -> None:
    """``program.decode_input`` is the byte contract: the layout from the first byte, the
    guard side from the last, the program from the rest. The harness decodes through it
    (so the guard it sets and the layout it runs are the contract's), and no module of the
    campaign or engine rooms indexes an input's bytes itself."""
    import random

    from recvmap.fuzz.campaign.harness import Harness
    from recvmap.fuzz.program.decode_input import split_input
    from recvmap.fuzz.subjects.impls import Subject
    from recvmap.qemu_ref.loader import guard_from_env, guard_mode, set_guard

    h = Harness("bitmap", Subject(None, None), out_dir=ROOT / "fuzz-out")
    rng = random.Random(24)
    try:
        for data in [
            b"",
            b"\x01",
            b"\x01\x02",
            *(rng.randbytes(rng.randrange(3, 90)) for _ in range(40)),
        ]:
            program, _, _ = h.decode(data)
            inp = split_input(data, h.layouts)
            assert program.layout == inp.layout, data.hex()
            assert guard_from_env() or guard_mode() == inp.guard, data.hex()
    finally:
        set_guard(None)
    readers = {
        str(p.relative_to(ROOT)): ast.unparse(n)
        for p in _sources("fuzz/campaign", "fuzz/engine")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == "data"
    }
    assert not readers, readers


def test_one_face_of_the_c_ram_layer() -> None:
    """QEMU's ram functions have two implementations in Python, the model's RamContext and
    the C face CRamContext (over ctypes or a replay driver), and ``ram_block_add``'s
    arguments are written once, in the model: the face and the factories pass them on."""
    defining: dict[str, list[str]] = {}
    keywords = []
    for p in _sources("pymodel", "qemu_ref", "fuzz"):
        for node in ast.walk(ast.parse(p.read_text())):
            protocol = isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", "") == "Protocol" for b in node.bases
            )
            if isinstance(node, ast.ClassDef) and not protocol:  # RamApi states the API
                names = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                if "ramblock_recv_bitmap_set" in names:
                    defining.setdefault(node.name, []).append(str(p.relative_to(ROOT)))
            if isinstance(node, ast.FunctionDef) and node.name == "ram_block_add":
                keywords.append([a.arg for a in node.args.kwonlyargs])
    assert defining == {
        "RamContext": ["pymodel/ramblock.py"],
        "CRamContext": ["qemu_ref/ram.py"],
    }, defining
    written = [k for k in keywords if k]  # the others take *args and **kwargs, or nothing
    assert written == [["page_size", "host", "postcopy_length", "migratable", "ignored"]]
