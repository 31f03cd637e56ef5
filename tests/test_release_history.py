# SPDX-License-Identifier: GPL-2.0-or-later
"""The release table is checked by QEMU's history (issue 21 point 6).

For every change of ``pymodel.releases.CHANGES``: its upstream commit is found in
../shared/qemu-history (tests/qemu_history.py; skipped without it), the commit and its
parent are built with the tree build (cached by content), and a program that tells the old
rule from the new one shows that the commit is where QEMU's behaviour changes:

- the rules by history differ exactly there (the change is in the commit, not its parent);
- the model's outcome of the program differs between the two rule sets;
- the commit's own code agrees with the model under the commit's rules, and the parent's
  with the model under the parent's rules; the parent's code does NOT agree with the new
  rule (the program fails the parent, so the agreement is not a blind spot).

A new function is checked by its absence from the parent's build and its presence, with a
program that runs it, in the commit's; a fixed crash (a change marked ``bug``) by the
parent's code dying on the program the new rule accepts. ``PROGRAMS`` needs an entry for
every change: a change added without one fails ``test_every_change_has_a_history_check``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import qemu_history
from qemu_history import git

from recvmap.fuzz.engine.ram import RamWorld, model_factories, outcome_value
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.program.ram_setup import RamSetup
from recvmap.fuzz.subjects.impls import Subject
from recvmap.fuzz.subjects.qemu_tree.build import build_tree, origins
from recvmap.fuzz.subjects.qemu_tree.ram import GLUE_RAM
from recvmap.fuzz.subjects.qemu_tree.repo import Repo, rules_of_mask
from recvmap.fuzz.subjects.qemu_tree.tree import QemuTree
from recvmap.fuzz.vectors.files import Case, load_obj, model_run, replay
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import CHANGES, Change, Rules, at_release
from recvmap.pymodel.words import LP64_LE
from recvmap.qemu_ref import LibraryError

pytestmark = [
    pytest.mark.skipif(not qemu_history.available(), reason=qemu_history.SKIP_REASON),
    pytest.mark.slow,
]

HOST = 0x7F0000000000
TPS = 0x1000


def block(idstr: str = "pc.ram", used: int = 0x10000, **kw: Any) -> dict[str, Any]:
    b = {
        "idstr": idstr,
        "host": HOST if idstr == "pc.ram" else HOST + 0x100000000,
        "used_length": used,
        "max_length": used,
        "page_size": TPS,
        "postcopy_length": used,
        "migratable": True,
        "ignored": False,
    }
    b.update(kw)
    return b


def ram(
    ops: list[Op],
    blocks: list[dict[str, Any]] | None = None,
    side: str = "destination",
    target: tuple[str, int] = ("x86_64", 12),
) -> Program:
    setup = {
        "target": target[0],
        "target_page_bits": target[1],
        "host": "x86_64",
        "host_page_size": 4096,
        "side": side,
        "strict": False,
        "blocks": blocks or [block()],
    }
    return Program(LP64_LE, [], ops, "ram", setup)


def recovery(ops: list[Op], blocks: list[dict[str, Any]] | None = None) -> Program:
    p = ram(ops, blocks)
    setup = {**p.setup, "sender": {"bits_per_long": 64, "big_endian": False}}
    return Program(LP64_LE, [], ops, "recovery", setup)


def bitmap(ops: list[Op], words: dict[int, int] | None = None) -> Program:
    return Program(LP64_LE, [ArraySpec(2, words or {0: 0b101}), ArraySpec(2, {0: 0xF0})], ops)


SEND = [
    Op("ramblock_recv_map_init", ()),
    Op("ram_list_init_bitmaps", ()),
    Op("ramblock_recv_bitmap_set", (Ref(0), HOST)),
    Op("ramblock_recv_bitmap_send", ("pc.ram",)),
]
RELOAD = Op("ram_dirty_bitmap_reload", (Ref(0),))
INIT = [Op("ramblock_recv_map_init", ())]

ALPHA_DISCARD = ram(
    [
        *INIT,
        Op("ramblock_recv_bitmap_set_range", (Ref(0), HOST, 2)),
        Op("ram_discard_range", ("pc.ram", 0, 0x2000)),
    ],
    [block(used=0x4000)],
    target=("alpha", 13),
)

# The program that tells each change's old rule from its new one (audit, section 6).
PROGRAMS: dict[str, Program] = {
    "recovery_stream": recovery([*SEND, RELOAD]),
    "recv_map_migratable_only": ram(INIT, [block(), block("vga", 0x4000, migratable=False)]),
    "discard_no_map_on_source": ram(
        [Op("ram_list_init_bitmaps", ()), Op("ram_discard_range", ("pc.ram", 0, TPS))],
        side="source",
    ),
    "count_one_zero": bitmap([Op("bitmap_count_one", (Ref(0), 0))]),
    "count_one_with_offset": bitmap([Op("bitmap_count_one_with_offset", (Ref(0), 1, 3))]),
    "ignore_shared": ram(INIT, [block(), block("shm", 0x4000, ignored=True)]),
    "copy_with_offset": bitmap(
        [
            Op("bitmap_copy_with_src_offset", (Ref(1), Ref(0), 1, 8)),
            Op("bitmap_copy_with_dst_offset", (Ref(1), Ref(0), 2, 8)),
        ]
    ),
    "discard_unaligned_length": ram([*INIT, Op("ram_block_discard_range", (Ref(0), 0, 0x800))]),
    "reload_end_mark_hex": recovery([*SEND, Op("stream_xor", (23, 0xFF)), RELOAD]),
    "discard_overrun_max_length": ram(
        [*INIT, Op("ram_block_discard_range", (Ref(0), 0x8000, TPS))],
        [block(used=0x8000, max_length=0x10000, postcopy_length=0x8000)],
    ),
    "send_postcopy_length": recovery(SEND, [block(used=0x41000, postcopy_length=0x40000)]),
    "bitmap_new_zero": bitmap([]),  # checked through bitmap_new itself (_bitmap_new_zero)
    "test_and_clear": bitmap([Op("bitmap_test_and_clear", (Ref(0), 1, 2))]),
    "reload_bool_error": recovery([*SEND, Op("stream_truncate", (12,)), RELOAD]),
    "clear_bit_atomic": bitmap([Op("clear_bit_atomic", (2, Ref(0)))]),
    "recv_bitmap_set_offset": ram([*INIT, Op("ramblock_recv_bitmap_set_offset", (Ref(0), TPS))]),
    "recv_bitmap_test_byte_offset": ram(
        [*INIT, Op("ramblock_recv_bitmap_test_byte_offset", (Ref(0), 0))]
    ),
    "recv_bitmap_size_div_round_up": recovery(SEND, [block(used=TPS)]),
    "bmap_blank": ram([Op("ram_list_init_bitmaps", ())], side="source"),
    "bmap_dirty_again": ram([Op("ram_list_init_bitmaps", ())], side="source"),
    "reload_error_setg": recovery([*SEND, Op("stream_set_size", (0x10,)), RELOAD]),
    # the host-page changes of the audit (section 4), added to the table with the glue's
    # host page setting: an anonymous block of 4K pages under alpha's 8K target pages on a
    # 4K host returns -9 with an error (seed), -1 silently (v2.12..v8.2), 0 (v9.0 on)
    "discard_fallocate_by_fd": ALPHA_DISCARD,
    "discard_real_host_page": ALPHA_DISCARD,
}


def test_every_change_has_a_history_check() -> None:
    missing = sorted({c.key for c in CHANGES} - PROGRAMS.keys())
    assert not missing, f"add a program telling old from new to PROGRAMS for {missing}"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    repo = Repo.at(qemu_history.clone(tmp_path_factory.mktemp("release-history") / "qemu"))
    assert repo is not None
    return repo


@dataclass
class Side:
    """One side of a change: a commit, its rules by history, its build."""

    commit: str
    rules: Rules
    tree: QemuTree
    lib: Path

    @property
    def subject(self) -> Subject:
        return Subject(self.lib)


@cache
def _side(repo_root: Path, commit: str, folder: Path) -> Side:
    repo = Repo(repo_root)
    mask = repo.masks([commit])[commit]
    rules = rules_of_mask(mask, repo.unknown_changes()).rules
    assert rules is not None, commit
    dest = folder / commit[:12]
    if not dest.exists():
        dest.mkdir(parents=True)
        repo.materialise(commit, dest)
    tree = QemuTree.open(dest, rules, "by history (test)")
    return Side(commit, rules, tree, build_tree(tree))


def sides(repo: Repo, change: Change, folder: Path) -> tuple[Side, Side]:
    """(parent, commit) of the commit that brings ``change``, each with rules and build."""
    carriers = repo.carriers()[change.key]
    assert carriers, f"{change.commit} is not in the history"
    for commit in sorted(carriers):
        parent = git(repo.root, "rev-parse", f"{commit}^")
        masks = repo.masks([commit, parent])
        if change.key in masks[commit] and change.key not in masks[parent]:
            return _side(repo.root, parent, folder), _side(repo.root, commit, folder)
    raise AssertionError(f"no commit of {change.commit} is where {change.key} enters")


def case_at(program: Program, rules: Rules) -> Case:
    """The program as a test whose expectations are the model's under ``rules``."""
    return load_obj(program.at(rules.name).to_json(), Path(f"history-{rules.name}.json"))[0]


def outcome(program: Program, rules: Rules) -> tuple[Any, ...]:
    """The model's results, memory and error texts of ``program`` under ``rules``."""
    run = model_run(program, rules)
    texts: list[str | None] = []
    if program.layer != "bitmap":
        world = RamWorld(program, RamSetup.of(program), model_factories(rules.name))
        for op in program.ops:
            before = world.errors()
            try:
                outcome_value(world, op)
            except PreconditionError:
                break
            texts.append(world.last_error() if world.errors() > before else None)
    return (repr(run.results), run.rejected, sorted(run.images.items()), texts)


GLUE_SYMBOLS = ("pmem_persist", "ramblock_is_pmem")  # v3.1-v4.2 call them (issue 21.3)


def needs_glue(side: Side) -> str | None:
    """Why a side cannot run here yet: glue that issue 21.3 adds (the glue branch)."""
    try:
        side.subject.library(64)
    except LibraryError as err:
        missing = [s for s in GLUE_SYMBOLS if f"undefined symbol: {s}" in str(err)]
        if missing:
            return f"{side.commit[:12]}: the glue lacks {missing[0]} (issue 21.3)"
        raise
    bridge = (GLUE_RAM / "ram_bridge.c.inc").read_text()
    if "QTRAM_RELOAD_BOOL" not in bridge and side.tree.root.joinpath("migration/ram.c").is_file():
        text = side.tree.text("migration/ram.c")
        if "int ram_dirty_bitmap_reload(MigrationState *s, RAMBlock *block, Error" in text:
            return (
                f"{side.commit[:12]}: the glue maps an int-returning reload with an Error ** "
                "as a bool one (audit row 18; QTRAM_RELOAD_BOOL, issue 21.3)"
            )
    return None


def agrees(program: Program, side: Side, rules: Rules) -> tuple[str, str]:
    verdict = replay(case_at(program, rules), side.subject, release=rules.name, timeout=60)
    return verdict.status, verdict.message


def _bitmap_new_zero(side: Side) -> subprocess.CompletedProcess[str]:
    code = (
        "import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); lib.bitmap_new.restype = "
        "ctypes.c_void_p; print(lib.bitmap_new(ctypes.c_long(0)))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(side.lib)], capture_output=True, text=True
    )


CHECKS: dict[str, Callable[[Change, Side, Side], None]] = {}


def check_new_function(change: Change, old: Side, new: Side) -> None:
    old_found = {o.function: o.kind for o in origins(old.tree)}
    new_found = {o.function: o.kind for o in origins(new.tree)}
    for f in change.functions:
        assert old_found[f] == "absent", (f, old.commit)
        assert new_found[f] != "absent", (f, new.commit)
        assert not old.rules.has_function(f) and new.rules.has_function(f)
    program = PROGRAMS[change.key]
    assert agrees(program, new, new.rules) == ("pass", ""), new.commit
    assert model_run(program, old.rules).rejected is not None  # the old rules lack it


def check_fixed_crash(change: Change, old: Side, new: Side) -> None:
    program = PROGRAMS[change.key]
    assert agrees(program, new, new.rules)[0] == "pass", new.commit
    rejected = model_run(program, old.rules)
    assert rejected.rejected == len(program.ops) - 1 and change.commit in rejected.reason
    status, message = agrees(program, old, new.rules)
    assert status == "fail" and "crashed (SIGSEGV)" in message, (old.commit, message)


def check_bitmap_new_zero(change: Change, old: Side, new: Side) -> None:
    died = _bitmap_new_zero(old)
    assert died.returncode < 0, (old.commit, died)  # g_try_malloc0(0) is NULL: abort()
    lived = _bitmap_new_zero(new)
    assert lived.returncode == 0 and lived.stdout.strip() == "None", lived
    with pytest.raises(PreconditionError):
        at_release(old.rules).bitmap_new(0, LP64_LE)
    assert at_release(new.rules).bitmap_new(0, LP64_LE).nwords == 0


def check_rule(change: Change, old: Side, new: Side) -> None:
    program = PROGRAMS[change.key]
    assert outcome(program, old.rules) != outcome(program, new.rules), "tells nothing apart"
    assert agrees(program, new, new.rules) == ("pass", ""), new.commit
    assert agrees(program, old, old.rules) == ("pass", ""), old.commit
    status, _ = agrees(program, old, new.rules)
    assert status == "fail", f"{old.commit[:12]} already has the new rule of {change.key}"


def check_for(change: Change) -> Callable[[Change, Side, Side], None]:
    if change.key == "bitmap_new_zero":
        return check_bitmap_new_zero
    if change.bug:
        return check_fixed_crash
    if change.old.startswith(("absent", "no recovery")):
        return check_new_function
    return check_rule


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.key)
def test_the_commit_of_each_change_is_where_qemu_changes(
    change: Change, bundle: Repo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if change.key not in PROGRAMS:
        pytest.fail(f"no program for {change.key} (test_every_change_has_a_history_check)")
    folder = tmp_path_factory.getbasetemp() / "release-history-trees"
    old, new = sides(bundle, change, folder)
    assert change.key in new.rules.applied and change.key not in old.rules.applied
    for side in (old, new):
        if why := needs_glue(side):
            pytest.skip(why)
    check_for(change)(change, old, new)
