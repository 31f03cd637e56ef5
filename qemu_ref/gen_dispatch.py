# SPDX-License-Identifier: GPL-2.0-or-later
"""Generate the replay driver's function table from the ``QREF_API`` lines of the headers.

The headers are the one statement of the ABI (docs/internals.md): this script reads every
``QREF_API`` declaration and writes, for each, a C wrapper that converts the driver's parsed
arguments to the declared C types, calls the function and records its result with its kind.
An argument or result type the driver cannot carry fails the build, so an ABI change cannot
silently skip the driver. The allocation functions are left out by name (``NOT_CARRIED``):
the driver owns every buffer it passes (``@k``), so an array the library allocates has no
place in it; the engine never calls them (they are checked by tests/test_bitmap_alloc.py).

``--only=NAME,NAME...`` keeps only the named functions (a build of a QEMU tree whose release
lacks some: the driver then answers ``has NAME`` with 0 for them, as the ctypes loader does).

Usage: ``gen_dispatch.py [--only=NAMES] OUTPUT.h HEADER.h...`` (stdlib only: meson runs it).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

_DECL = re.compile(r"^QREF_API\s+(?P<ret>[\w\s\*]+?)\s*\b(?P<name>\w+)\s*\((?P<args>[^)]*)\)\s*;")
_STRUCT = re.compile(r"\btypedef\s+struct\s+(\w+)\s*(?:\{|\w+\s*;)|^\s*struct\s+(\w+)\s*\{", re.M)

# Integer C types: the driver parses every integer as 64-bit two's complement bits.
SIGNED = {"int", "qref_long", "int64_t", "int32_t", "long"}
UNSIGNED = {"qref_ulong", "uint64_t", "uint32_t", "size_t", "qref_uptr", "unsigned long"}
BUFFERS = {"qref_ulong *", "uint8_t *"}  # driver buffers "@k"
ADDRESSES = {"void *"}  # host addresses: integers, never dereferenced
STRINGS = {"char *"}  # "$hex" tokens


@dataclass(frozen=True)
class Decl:
    name: str
    ret: str
    args: tuple[str, ...]


def _norm(spelling: str) -> str:
    return " ".join(spelling.replace("*", " * ").split()).replace("* *", "**")


def _param_type(param: str) -> str:
    """A parameter declaration without its name, spacing normalised."""
    words = _norm(param).split(" ")
    if words in (["void"], [""]):
        return ""
    if len(words) > 1 and words[-1] != "*" and re.fullmatch(r"\w+", words[-1]):
        words = words[:-1]
    return " ".join(words)


def parse(text: str) -> tuple[list[Decl], set[str]]:
    """The ``QREF_API`` declarations of a header and the struct names it declares."""
    decls = []
    for line in text.splitlines():
        m = _DECL.match(line.strip())
        if m:
            args = tuple(t for t in (_param_type(p) for p in m["args"].split(",")) if t)
            decls.append(Decl(m["name"], _norm(m["ret"]), args))
    structs = {a or b for a, b in _STRUCT.findall(text)}
    return decls, structs


def _base(spelling: str) -> str:
    return spelling.replace("const ", "").strip()


def arg_kind(spelling: str, structs: set[str]) -> tuple[str, str]:
    """(kind, C expression of argument ``k``) for one parameter type; kind is i/p/a/s/o."""
    base = _base(spelling)
    if base in SIGNED or base in UNSIGNED or base == "bool":
        return "i", f"({base})a[%d].i"
    if base in BUFFERS:
        return "p", f"({spelling})a[%d].p"
    if base in ADDRESSES:
        return "a", f"({spelling})(uintptr_t)a[%d].i"
    if base in STRINGS:
        return "s", f"({spelling})a[%d].s"
    if base.endswith(" *") and base[:-2] in structs:
        return "o", f"({spelling})a[%d].p"
    raise SystemExit(f"gen_dispatch: the driver cannot pass a {spelling!r} argument")


def result_code(ret: str, structs: set[str]) -> tuple[str, str]:
    """(kind, C statement storing ``ret``) for a result type; kind is v/s/u/b/o."""
    base = _base(ret)
    if base == "void":
        return "v", "%s;"
    if base == "bool":
        return "b", "r->u = %s;"
    if base in SIGNED:
        return "s", "r->i = (int64_t)%s;"
    if base in UNSIGNED:
        return "u", "r->u = (uint64_t)%s;"
    if base.endswith(" *") and base[:-2] in structs:
        return "o", "r->p = (void *)%s;"
    raise SystemExit(f"gen_dispatch: the driver cannot return a {ret!r}")


# Left out of the driver, by name (see the module docstring): a new function of an
# unknown type still fails the build.
NOT_CARRIED = frozenset({"bitmap_new", "bitmap_zero_extend", "qref_bitmap_free"})

MAX_ARGS = 8  # QREF_MAX_ARGS of replay.c


def wrapper(decl: Decl, structs: set[str]) -> tuple[str, str, list[str]]:
    """The C wrapper of one function, its signature string, its struct argument names."""
    if len(decl.args) > MAX_ARGS:
        raise SystemExit(f"gen_dispatch: {decl.name} has more than {MAX_ARGS} arguments")
    kinds, exprs, objs = [], [], []
    for k, spelling in enumerate(decl.args):
        kind, expr = arg_kind(spelling, structs)
        kinds.append(kind)
        exprs.append(expr % k)
        objs.append(_base(spelling)[:-2] if kind == "o" else "")
    rkind, store = result_code(decl.ret, structs)
    call = f"{decl.name}({', '.join(exprs)})"
    unused = "" if decl.args else "    (void)a;\n"
    return (
        (
            f"static void qd_{decl.name}(const QRefArg *a, QRefRet *r)\n{{\n{unused}"
            f"    r->kind = '{rkind}';\n    {store % call}\n}}\n"
        ),
        "".join(kinds) + rkind,
        objs,
    )


def generate(headers: list[Path], only: set[str] | None = None) -> str:
    decls: list[Decl] = []
    structs: set[str] = set()
    for h in headers:
        d, s = parse(h.read_text())
        decls += [x for x in d if only is None or x.name in only]
        structs |= s
    out = [
        "/* SPDX-License-Identifier: GPL-2.0-or-later */",
        f"/* Generated by gen_dispatch.py from {', '.join(h.name for h in headers)}. */",
    ]
    out += [f'#include "{h.name}"' for h in headers]
    rows = []
    for decl in decls:
        if decl.name in NOT_CARRIED:
            continue
        text, sig, objs = wrapper(decl, structs)
        out.append(text)
        types = ", ".join(f'"{o}"' if o else "NULL" for o in objs) or "NULL"
        rows.append(f'    {{ "{decl.name}", "{sig}", {{ {types} }}, qd_{decl.name} }},')
    out.append("static const QRefFn qref_functions[] = {")
    out += rows
    out.append("    { NULL, NULL, { NULL }, NULL },\n};")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    only = None
    if len(argv) > 1 and argv[1].startswith("--only="):
        only = {n for n in argv[1].removeprefix("--only=").split(",") if n}
        argv = [argv[0], *argv[2:]]
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    Path(argv[1]).write_text(generate([Path(h) for h in argv[2:]], only))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
