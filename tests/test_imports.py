# SPDX-License-Identifier: GPL-2.0-or-later
"""Imports point one way: no cycle between modules or rooms, no room imports a higher one.

Every module of pymodel/, qemu_ref/ and fuzz/ is parsed with ``ast`` (nothing is imported);
every ``import`` counts, also those inside functions (lazy imports) and those under
``if TYPE_CHECKING:`` (a cycle closed by annotations is a cycle of the design, only
hidden from the interpreter). Importing ``a.b.c`` runs the ``__init__`` of ``a.b`` too, so
that is an edge as well (unless the importer is inside ``a.b`` already).

The rooms, lowest first, are fuzz/rooms.txt (docs/internals.md, "Rooms", shows them and is
held to the file here); a room may import only itself and lower rooms.

Imports belong at the top of their module. A function-level import (outside tests) must
say why on its line or in the comment right above it (``# lazy: ...``: a start-up cost
measured, an import that must wait for instrumentation, an optional dependency), and
there are at most MAX_LAZY of them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"pymodel": "recvmap.pymodel", "qemu_ref": "recvmap.qemu_ref", "fuzz": "recvmap.fuzz"}
ROOMS_FILE = ROOT / "fuzz" / "rooms.txt"  # the one list of rooms, lowest first
ROOMS = tuple(
    line for line in ROOMS_FILE.read_text().splitlines() if line and not line.startswith("#")
)


def modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package)."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            if "__pycache__" in rel:
                continue
            is_package = rel[-1] == "__init__"
            name = ".".join((package, *(rel[:-1] if is_package else rel)))
            out[name] = (path, is_package)
    return out


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (type-only ones included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _known(name: str, known: Mapping[str, object]) -> str | None:
    """The longest module of ``known`` that ``name`` is or lies in (``pkg.func`` -> pkg)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported(name: str, is_package: bool, tree: ast.AST, known: Mapping[str, object]) -> set[str]:
    """The modules of ``known`` that importing module ``name`` (parsed as ``tree``) runs."""
    here = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = here
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = node.module or ""
            base = ".".join(p for p in (base if node.level else "", mod) if p)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in names:
            if not n.startswith("recvmap."):
                continue
            target = _known(n, known)
            if target is None or target == "recvmap":
                raise AssertionError(f"{name}: imports {n}, which is no module of recvmap")
            targets.add(target)
            parent = target.rpartition(".")[0]
            while parent in known:  # its packages' __init__ run first
                if not (name == parent or name.startswith(parent + ".")):
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
    targets.discard(name)
    return targets


def module_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: imported(name, is_package, ast.parse(path.read_text(), str(path)), known)
        for name, (path, is_package) in known.items()
    }


def room(module: str) -> str:
    """The room of ``module``: the longest room name it is or lies in; the fuzz package's
    own ``__init__`` is at the top, with the command line."""
    for r in sorted(ROOMS, key=len, reverse=True):
        if module == r or module.startswith(r + "."):
            return r
    assert module == "recvmap.fuzz", f"{module} is in no room"
    return "recvmap.fuzz.cli"


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def room_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {r: set() for r in ROOMS}
    for a, targets in graph.items():
        rooms[room(a)].update(room(b) for b in targets if room(b) != room(a))
    return rooms


def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


def test_lazy_type_only_and_relative_imports_are_edges() -> None:
    names = [
        "recvmap.fuzz",
        "recvmap.fuzz.a",
        "recvmap.fuzz.b",
        "recvmap.fuzz.r",
        "recvmap.fuzz.r.m",
    ]
    known = dict.fromkeys(names)
    tree = ast.parse("def f():\n    from .r.m import g\nif TYPE_CHECKING:\n    from .b import T\n")
    assert imported("recvmap.fuzz.a", False, tree, known) == {
        "recvmap.fuzz.r",
        "recvmap.fuzz.r.m",
        "recvmap.fuzz.b",
    }
    # the campaign room's old cycle, closed by a type-only import of report.py
    graph = {
        "report": {"campaign"},
        "campaign": {"harness"},
        "harness": {"report"},
    }
    assert find_cycle(graph) == ["campaign", "harness", "report", "campaign"]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    g = module_graph()
    assert len(g) > 40 and "recvmap.fuzz.engine.session" in g, sorted(g)
    return g


def test_no_module_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_room_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(room_graph(graph))
    assert cycle is None, "rooms import each other: " + " -> ".join(cycle or [])


def test_rooms_import_only_lower_rooms(graph: dict[str, set[str]]) -> None:
    rank = {r: i for i, r in enumerate(ROOMS)}
    wrong = sorted(
        f"{a} ({room(a)}) imports {b} ({room(b)})"
        for a, targets in graph.items()
        for b in targets
        if rank[room(b)] > rank[room(a)]
    )
    assert not wrong, "imports pointing up:\n" + "\n".join(wrong)


def test_every_room_says_what_it_holds() -> None:
    for r in ROOMS:
        if not r.startswith("recvmap.fuzz.") or r.endswith(".cli"):
            continue
        init = ROOT / "fuzz" / r.rpartition(".")[2] / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc, f"{init.relative_to(ROOT)}: no docstring naming its imports"


def test_the_rooms_are_one_list() -> None:
    """fuzz/rooms.txt is the list: the docs' table shows it in its order, the harness
    launcher guides atheris by its lowest room, and meson installs the sub-packages of
    fuzz/ that are rooms of it (each folder of fuzz/ with modules is one)."""
    from recvmap.fuzz.campaign import launch

    docs = (ROOT / "docs" / "internals.md").read_text()
    table = docs[docs.index("\n## Rooms") :].split("\n## ", 2)[1]
    shown = tuple(re.findall(r"^\| `(recvmap[.\w]*)` \|", table, re.MULTILINE))
    assert shown == ROOMS, f"docs/internals.md's table {shown} is not fuzz/rooms.txt {ROOMS}"
    assert launch.ROOMS == ROOMS and launch.MODEL == ROOMS[0] == "recvmap.pymodel"
    meson = (ROOT / "meson.build").read_text()
    assert "fs.read('fuzz/rooms.txt')" in meson and "fuzz_rooms = [" in meson
    packages = {p.parent.name for p in (ROOT / "fuzz").glob("*/__init__.py")}
    assert packages == {r.rpartition(".")[2] for r in ROOMS if r.startswith("recvmap.fuzz.")} - {
        "cli"
    }


LAZY_FOLDERS = ("pymodel", "qemu_ref", "fuzz", "bench")  # outside tests
MAX_LAZY = 30


def function_level_imports(source: str) -> list[tuple[int, bool]]:
    """(line, has a reason) of every import inside a function of ``source``: the reason is
    a ``# lazy:`` comment on the import's line or in the comment and import lines that
    directly precede it."""
    lines = source.splitlines()
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                k = child.lineno - 1
                reason = "# lazy:" in lines[k]
                while not reason and k > 0:
                    k -= 1
                    text = lines[k].strip()
                    if not text.startswith(("#", "from ", "import ")):
                        break
                    reason = "# lazy:" in text
                found.append((child.lineno, reason))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(source), False)
    return found


def test_the_lazy_import_counter_counts_and_reads_reasons() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    # lazy: measured, 100 ms\n"
        "    import a\n"
        "    from b import c\n"
        "    x = 1\n"
        "    import d\n"
        "    import e  # lazy: optional\n"
    )
    assert function_level_imports(source) == [(4, True), (5, True), (7, False), (8, True)]


def test_function_level_imports_are_few_and_say_why() -> None:
    found = {
        str(path.relative_to(ROOT)): function_level_imports(path.read_text())
        for folder in LAZY_FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    bare = [f"{name}:{line}" for name, imports in found.items() for line, ok in imports if not ok]
    assert not bare, "function-level imports without a '# lazy:' reason: " + ", ".join(bare)
    total = sum(len(imports) for imports in found.values())
    assert total <= MAX_LAZY, f"{total} function-level imports, at most {MAX_LAZY}: " + ", ".join(
        f"{name} {len(imports)}" for name, imports in found.items() if imports
    )
