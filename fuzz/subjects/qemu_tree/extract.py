# SPDX-License-Identifier: GPL-2.0-or-later
"""Find QEMU's received-bitmap functions in a source tree, by name, with a real C parser.

The definitions are located with tree-sitter and its C grammar (the ``qemu-tree`` extra), not
with regular expressions: QEMU's macros (``RAMBLOCK_FOREACH_NOT_IGNORED(rb) { ... }``,
``g_autofree``, ``coroutine_fn``) only make the parser produce local error nodes, and a
function definition is still recognised as one. Each result carries the tree's own text of the
definition and its file:line; nothing is stored in the project, the text is read from the
user's tree at build time and compiled by ``ram.py`` inside our glue.

``RAM_FUNCTIONS`` lists the functions of the ABI (``qemu_ref_ram.h``) taken from the tree,
each with the files QEMU kept it in over the releases; ``HELPERS`` the static helpers and
macros of the same files that those bodies use and that we prefer to take from the tree
rather than write in glue. A function a release lacks is simply not found (``v2.12.0`` has no
recovery send/reload, nothing before ``v10.x`` has ``ramblock_recv_bitmap_set_offset``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

RAM_C = ("migration/ram.c",)
RAM_H = ("migration/ram.h",)
PHYSMEM = ("system/physmem.c", "softmmu/physmem.c", "exec.c")
RAM_ADDR = ("include/system/ram_addr.h", "include/exec/ram_addr.h")
POSTCOPY = ("migration/postcopy-ram.c",)


@dataclass(frozen=True)
class Wanted:
    """A definition to look for: ``name`` in the first of ``files`` that defines it."""

    name: str
    files: tuple[str, ...]
    kind: str = "function"  # "function" or "macro"
    # the ABI function this definition implements, when it is one
    abi: str | None = None


# The received-bitmap functions of the ABI, in the files QEMU kept them in.
RAM_FUNCTIONS: tuple[Wanted, ...] = (
    Wanted("ramblock_recv_map_init", RAM_C, abi="ramblock_recv_map_init"),
    Wanted("ramblock_recv_bitmap_offset", RAM_ADDR, abi="ramblock_recv_bitmap_offset"),
    Wanted("ramblock_recv_bitmap_test", RAM_C, abi="ramblock_recv_bitmap_test"),
    Wanted(
        "ramblock_recv_bitmap_test_byte_offset",
        RAM_C,
        abi="ramblock_recv_bitmap_test_byte_offset",
    ),
    Wanted("ramblock_recv_bitmap_set", RAM_C, abi="ramblock_recv_bitmap_set"),
    Wanted("ramblock_recv_bitmap_set_range", RAM_C, abi="ramblock_recv_bitmap_set_range"),
    Wanted("ramblock_recv_bitmap_set_offset", RAM_C, abi="ramblock_recv_bitmap_set_offset"),
    Wanted("ram_load_cleanup", RAM_C, abi="ram_load_cleanup"),
    Wanted("ram_discard_range", RAM_C, abi="ram_discard_range"),
    Wanted("ram_block_discard_range", PHYSMEM, abi="ram_block_discard_range"),
    Wanted("ramblock_recv_bitmap_send", RAM_C, abi="ramblock_recv_bitmap_send"),
    Wanted("ram_dirty_bitmap_reload", RAM_C, abi="ram_dirty_bitmap_reload"),
    Wanted("ram_list_init_bitmaps", RAM_C, abi="ram_list_init_bitmaps"),
    Wanted("ram_save_cleanup", RAM_C, abi="ram_save_cleanup"),
    # the receivedmap update of postcopy placement: the userfaultfd copy helper sets the bits
    Wanted("qemu_ufd_copy_ioctl", POSTCOPY, abi="postcopy_place_page"),
)

# Helpers the bodies above call or expand, taken from the tree when it has them.
HELPERS: tuple[Wanted, ...] = (
    Wanted("qemu_ram_block_by_name", PHYSMEM, abi="qemu_ram_block_by_name"),
    Wanted("qemu_ram_is_migratable", PHYSMEM),
    Wanted("qemu_ram_is_shared", PHYSMEM),
    Wanted("qemu_ram_is_named_file", PHYSMEM),
    Wanted("qemu_ram_pagesize", PHYSMEM),
    Wanted("ramblock_is_pmem", PHYSMEM),  # ram_load_cleanup asks it (v3.1.0 on)
    Wanted("ramblock_is_ignored", RAM_C, abi="ramblock_is_ignored"),
    Wanted("migrate_ram_is_ignored", RAM_C, abi="ramblock_is_ignored"),
    Wanted("ram_bytes_total_common", RAM_C),
    Wanted("ram_bytes_total_with_ignored", RAM_C),
    Wanted("ram_bytes_total", RAM_C),
    Wanted("ram_bitmaps_destroy", RAM_C),
    Wanted("clear_bmap_size", RAM_ADDR),
    Wanted("postcopy_place_page", POSTCOPY),
    Wanted("RAMBLOCK_FOREACH_MIGRATABLE", (*RAM_H, *RAM_C), kind="macro"),
    Wanted("RAMBLOCK_FOREACH_NOT_IGNORED", (*RAM_H, *RAM_C), kind="macro"),
    Wanted("RAMBLOCK_RECV_BITMAP_ENDING", RAM_C, kind="macro"),
)


class ExtractError(RuntimeError):
    """The parser is missing or a file cannot be read; the message says which."""


@dataclass(frozen=True)
class Definition:
    """One definition found in a tree: its name, file (relative), first line and text."""

    name: str
    kind: str
    path: str
    line: int
    text: str
    is_static: bool = False
    params: tuple[str, ...] = ()
    return_type: str = ""
    abi: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Extraction:
    """Everything found in one tree; ``absent`` lists the wanted names it lacks."""

    root: Path
    found: dict[str, Definition] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)

    def get(self, name: str) -> Definition | None:
        return self.found.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.found

    def ordered(self) -> list[Definition]:
        """The definitions in compile order: macros first, then by file and line."""
        order = {p: i for i, p in enumerate((*RAM_ADDR, *PHYSMEM, *RAM_H, *RAM_C, *POSTCOPY))}
        return sorted(
            self.found.values(),
            key=lambda d: (d.kind != "macro", order.get(d.path, 99), d.line),
        )


@cache
def _parser() -> Any:
    try:
        # lazy: optional (the qemu-tree extra); its absence is a one-line error when a
        # tree's ram functions are wanted, not when the campaign imports this module
        import tree_sitter_c
        from tree_sitter import Language, Parser
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ExtractError(
            "the ram functions of a QEMU tree need tree-sitter and tree-sitter-c "
            "(pip install 'recvmap[qemu-tree]')"
        ) from err
    return Parser(Language(tree_sitter_c.language()))


def _function_name(node: Any) -> tuple[str, Any] | None:
    """The declared name of a function_definition node and its function_declarator."""
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type != "function_declarator":
        decl = decl.child_by_field_name("declarator")
    if decl is None:
        return None
    ident = decl.child_by_field_name("declarator")
    if ident is None or ident.type != "identifier":
        return None
    return ident.text.decode(), decl


def _walk(node: Any, in_else: bool = False) -> Iterator[tuple[Any, bool]]:
    """Top-level definitions, descending into preprocessor conditionals (``#else`` noted)."""
    for child in node.children:
        if child.type in ("function_definition", "preproc_def", "preproc_function_def"):
            yield child, in_else
        elif child.type in ("preproc_else", "preproc_elif", "preproc_elifdef"):
            yield from _walk(child, True)
        elif child.type.startswith("preproc_") or child.type in ("ERROR", "linkage_specification"):
            yield from _walk(child, in_else)


def _params(decl: Any) -> tuple[str, ...]:
    plist = decl.child_by_field_name("parameters")
    if plist is None:
        return ()
    return tuple(
        " ".join(p.text.decode().split()) for p in plist.children if p.type.endswith("declaration")
    )


@lru_cache(maxsize=64)  # bounded: ``recvmap history`` reads thousands of file versions
def _index(path: Path, mtime_ns: int, size: int) -> dict[str, list[Definition]]:
    """Every definition of one file by name (first the ones outside ``#else`` branches)."""
    del mtime_ns, size  # cache key only
    return parse_definitions(path.read_bytes())


def parse_definitions(src: bytes) -> dict[str, list[Definition]]:
    """Every definition of the C text ``src`` by name (first those outside ``#else``
    branches); paths are left empty."""
    tree = _parser().parse(src)
    out: dict[str, list[tuple[bool, Definition]]] = {}
    for node, in_else in _walk(tree.root_node):
        line = node.start_point[0] + 1
        text = src[node.start_byte : node.end_byte].decode("utf-8", "replace")
        if node.type == "function_definition":
            named = _function_name(node)
            if named is None:
                continue
            name, decl = named
            storage = [
                c.text.decode() for c in node.children if c.type == "storage_class_specifier"
            ]
            rtype = node.child_by_field_name("type")
            d = Definition(
                name,
                "function",
                "",
                line,
                text,
                is_static="static" in storage,
                params=_params(decl),
                return_type=rtype.text.decode() if rtype is not None else "",
            )
        else:
            ident = node.child_by_field_name("name")
            if ident is None:
                continue
            name = ident.text.decode()
            d = Definition(name, "macro", "", line, text.rstrip("\n"))
        out.setdefault(name, []).append((in_else, d))
    return {k: [d for _, d in sorted(v, key=lambda e: e[0])] for k, v in out.items()}


def definitions(path: Path) -> dict[str, list[Definition]]:
    """The definitions of one C file (parsed once per file version)."""
    try:
        st = path.stat()
    except OSError as err:
        raise ExtractError(f"cannot read {path}: {err.strerror}") from err
    return _index(path, st.st_mtime_ns, st.st_size)


def find(root: Path, wanted: Wanted) -> Definition | None:
    """``wanted`` in the first of its files (that exists in ``root``) defining it."""
    for rel in wanted.files:
        path = root / rel
        if not path.is_file():
            continue
        for d in definitions(path).get(wanted.name, []):
            if d.kind == wanted.kind:
                return Definition(
                    d.name,
                    d.kind,
                    rel,
                    d.line,
                    d.text,
                    d.is_static,
                    d.params,
                    d.return_type,
                    wanted.abi,
                )
    return None


def extract(root: Path | str, wanted: Sequence[Wanted] = (*RAM_FUNCTIONS, *HELPERS)) -> Extraction:
    """Look for every wanted definition in the tree at ``root``."""
    root = Path(root)
    result = Extraction(root)
    for w in wanted:
        d = find(root, w)
        if d is None:
            result.absent.append(w.name)
        else:
            result.found[w.name] = d
    return result
