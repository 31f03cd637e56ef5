# SPDX-License-Identifier: GPL-2.0-or-later
"""Systematic mutants of the C reference: universalmutator's C rules, where tree-sitter says
the code is.

universalmutator (its ``universal``, ``c`` and ``c_like`` rules, plus ``OWN_RULES`` below for
what they lack: shifts, ``~``, ``^`` and the atomic builtins) proposes one-line rewrites of
each source. tree-sitter-c parses the source once to keep only rewrites whose changed text
lies in a function body or a ``#define`` body and outside comments and string literals, and
names the function a mutant is in. Each rewrite becomes our edit form, (file, exact text,
replacement) matching exactly once (``fuzz/subjects/build.py``'s rule), under a key that does
not move when other lines change: file, the line's text, its occurrence, the new text.
``syntax_error`` rejects a mutant tree-sitter cannot parse before gcc is asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..subjects.build import source_dir
from .mutant import Mutant

try:  # optional (the mutation extra): the systematic mutants need them, the hand-written not
    import tree_sitter_c
    from tree_sitter import Language, Parser
    from universalmutator import mutator
except ImportError:
    tree_sitter_c = mutator = None

MUTABLE_FILES = ("bitops.c", "bitmap.c", "ram.c", "qemu_ref.h", "qemu_ref_ram.h")
UM_RULES = ("universal.rules", "c.rules", "c_like.rules")

# (operator, universalmutator rule): C rewrites the stock rules do not make.
OWN_RULES: tuple[tuple[str, str], ...] = (
    ("shift", r"<< ==> >>"),
    ("shift", r">> ==> <<"),
    ("unary-drop", r"~ ==> "),
    ("bitop", r"\^ ==> |"),
    (
        "atomic-plain",
        r"__atomic_fetch_or\(([^,]+), ([^,]+), __ATOMIC_\w+\) ==> "
        r"({ __typeof__(\1) p_ = (\1); __typeof__(*p_) o_ = *p_; *p_ = o_ | (\2); o_; })",
    ),
    (
        "atomic-plain",
        r"__atomic_fetch_and\(([^,]+), ([^,]+), __ATOMIC_\w+\) ==> "
        r"({ __typeof__(\1) p_ = (\1); __typeof__(*p_) o_ = *p_; *p_ = o_ & (\2); o_; })",
    ),
    (
        "atomic-plain",
        r"__atomic_exchange_n\(([^,]+), ([^,]+), __ATOMIC_\w+\) ==> "
        r"({ __typeof__(\1) p_ = (\1); __typeof__(*p_) o_ = *p_; *p_ = (\2); o_; })",
    ),
    ("atomic-plain", r"__atomic_store_n\(([^,]+), ([^,]+), __ATOMIC_\w+\) ==> (*(\1) = (\2))"),
    ("atomic-plain", r"__atomic_load_n\(([^,]+), __ATOMIC_\w+\) ==> (*(\1))"),
    ("atomic-plain", r"__atomic_thread_fence\(__ATOMIC_\w+\) ==> ((void)0)"),
    ("atomic-wrong", r"__atomic_fetch_or\(([^,]+), ([^,]+), __ATOMIC_\w+\) ==> (*(\1) |= (\2))"),
    ("atomic-wrong", r"__atomic_fetch_and\(([^,]+), ([^,]+), __ATOMIC_\w+\) ==> (*(\1) &= (\2))"),
    ("atomic-wrong", r"__atomic_exchange_n\(([^,]+), ([^,]+), __ATOMIC_\w+\) ==> (*(\1) = (\2))"),
)


def operator_of(rule: str) -> str:
    """Our operator class of a universalmutator rule (its text as in the rules file)."""
    for op, own in OWN_RULES:
        if rule == own:
            return op
    lhs, _, rhs = rule.partition(" ==> ")
    rhs = rhs.strip()
    if "break;" in rhs or "continue;" in rhs:
        return "insert-jump"
    if "/*" in rhs:
        return "drop-statement"
    if "0==1" in rhs or "1==1" in rhs:
        return "condition-constant"
    if lhs.startswith(("if", "while")) and "!" in rhs:
        return "negate"
    if lhs.startswith(r"(\D)(\d+)"):
        return "constant"
    if lhs.startswith("([,"):
        return "swap-args"
    table = {
        "while": "loop-once",
        "else": "drop-else",
        "min": "name-swap",
        "max": "name-swap",
        "begin": "name-swap",
        "end": "name-swap",
        r"\+\+": "incdec",
        "--": "incdec",
        r"\+=": "assign",
        "-=": "assign",
        "&&": "lcr",
        r"\|\|": "lcr",
        "([^&])&([^&])": "bitop",
        r"([^|])\|([^|])": "bitop",
        '".+"': "string",
    }
    if lhs in table:
        return table[lhs]
    if rhs in ("", r"\1"):
        return "unary-drop"
    if lhs in ("==", "!=", ">=", "<=", "<", "([^-])>"):
        return "ror"
    return "aor"


@dataclass(frozen=True)
class Shape:
    """What tree-sitter says about one source: where mutants may go."""

    regions: tuple[tuple[int, int, str], ...]  # (start, end byte, function name or "#define")
    excluded: tuple[tuple[int, int], ...]  # comments and literals
    has_error: bool


def _parser() -> Any:
    if tree_sitter_c is None:
        raise ImportError("systematic mutants need tree-sitter-c (the mutation extra)")
    return Parser(Language(tree_sitter_c.language()))


def _function_name(node: Any) -> str:
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type != "identifier":
        decl = decl.child_by_field_name("declarator")
    return decl.text.decode() if decl is not None and decl.text else "?"


# Nodes whose text is never code to mutate: comments, literals, #error/#pragma text, #include.
OPAQUE = frozenset(
    {"comment", "string_literal", "char_literal", "system_lib_string", "preproc_call",
     "preproc_include"}
)  # fmt: skip
_MACRO_WRAP = b"void m_(void) { ("


def _literals_in_macro(body: bytes, offset: int) -> list[tuple[int, int]]:
    """Comments and literals of a macro body (tree-sitter leaves it unparsed text): the body
    parsed again as an expression, spans moved back to ``offset``."""
    tree = _parser().parse(_MACRO_WRAP + body + b"); }")
    out, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in OPAQUE:
            lo = max(node.start_byte - len(_MACRO_WRAP), 0)
            hi = min(node.end_byte - len(_MACRO_WRAP), len(body))
            if lo < hi:
                out.append((offset + lo, offset + hi))
            continue
        stack.extend(node.children)
    return out


@lru_cache(maxsize=16)
def shape(text: str) -> Shape:
    """The function bodies and ``#define`` bodies of ``text``, and its comments/literals."""
    tree = _parser().parse(text.encode())
    regions: list[tuple[int, int, str]] = []
    excluded: list[tuple[int, int]] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            body = node.child_by_field_name("body")
            if body is not None:
                regions.append((body.start_byte, body.end_byte, _function_name(node)))
        elif node.type in ("preproc_def", "preproc_function_def"):
            value = node.child_by_field_name("value")
            name = node.child_by_field_name("name")
            if value is not None and value.text is not None:
                label = f"#define {name.text.decode() if name and name.text else '?'}"
                regions.append((value.start_byte, value.end_byte, label))
                excluded += _literals_in_macro(value.text, value.start_byte)
        elif node.type in OPAQUE:
            excluded.append((node.start_byte, node.end_byte))
            continue
        stack.extend(node.children)
    return Shape(tuple(sorted(regions)), tuple(sorted(excluded)), tree.root_node.has_error)


def region_of(sh: Shape, lo: int, hi: int) -> str | None:
    """The function (or define) holding bytes [lo, hi), None when outside or in a comment."""
    hi = max(hi, lo + 1)
    if any(a < hi and lo < b for a, b in sh.excluded):
        return None
    for a, b, name in sh.regions:
        if a <= lo and hi <= b:
            return name
    return None


def syntax_error_of(m: Mutant, texts: dict[str, str]) -> bool:
    """Whether tree-sitter rejects mutant ``m`` of the sources ``texts`` (before gcc is asked).

    Only C files tree-sitter parses cleanly, and only edits it can judge: GNU statement
    expressions ``({ ... })`` (the atomic rewrites) and preprocessor lines are left to gcc.
    """
    for file, old, new in m.edits:
        text = texts.get(file, "")
        if not file.endswith(".c") or text.count(old) != 1 or "({" in new:
            continue
        if m.after.lstrip().startswith("#"):
            continue
        if syntax_error(text, text.replace(old, new)):
            return True
    return False


def syntax_error(reference: str, mutated: str) -> bool:
    """Whether tree-sitter finds a syntax error in ``mutated`` that ``reference`` does not
    have (headers full of attribute macros already confuse it: those are left to gcc)."""
    if shape(reference).has_error:
        return False
    return bool(_parser().parse(mutated.encode()).root_node.has_error)


def _line_key(file: str, lines: list[str], n: int, new_line: str) -> str:
    """A name that survives edits elsewhere: file, the line, its occurrence, the change."""
    occurrence = sum(1 for k in range(n) if lines[k] == lines[n])
    raw = f"{file}\0{lines[n]}\0{occurrence}\0{new_line}"
    return f"{file}:{hashlib.sha1(raw.encode()).hexdigest()[:10]}"


def anchor(text: str, lines: list[str], first: int, last: int) -> tuple[int, int]:
    """The smallest line window around [first, last] whose text occurs once in ``text``."""
    lo, hi = first, last
    while True:
        chunk = "\n".join(lines[lo : hi + 1])
        if text.count(chunk) == 1:
            return lo, hi
        if lo == 0 and hi == len(lines) - 1:
            raise ValueError("no unique anchor")
        if lo > 0:
            lo -= 1
        if text.count("\n".join(lines[lo : hi + 1])) != 1 and hi < len(lines) - 1:
            hi += 1


def _rules_file() -> str:
    """OWN_RULES in universalmutator's format, in a file it can read."""
    body = "".join(rule + "\n" for _, rule in OWN_RULES)
    digest = hashlib.sha1(body.encode()).hexdigest()[:10]
    path = Path(tempfile.gettempdir()) / f"recvmap-mutation-{digest}.rules"
    if not path.exists():
        tmp = path.with_suffix(".tmp" + str(id(body)))
        tmp.write_text(body)
        tmp.replace(path)
    return str(path)


def _proposals(text: str) -> list[tuple[int, str, str]]:
    """universalmutator's (1-based line, new line(s), rule text) for one source."""
    if mutator is None:
        raise ImportError("systematic mutants need universalmutator (the mutation extra)")

    with contextlib.redirect_stdout(io.StringIO()):
        found = mutator.mutants_regexp(
            text.splitlines(keepends=True),
            ruleFiles=[*UM_RULES, _rules_file()],
            ignorePatterns=[],
        )
    return [(line, new, used[0]) for line, new, used, _ in found]


def _changed_span(old: str, new: str) -> tuple[int, int]:
    """[lo, hi) of ``old`` that differs from ``new`` (common prefix and suffix removed)."""
    lo = 0
    while lo < min(len(old), len(new)) and old[lo] == new[lo]:
        lo += 1
    hi_old, hi_new = len(old), len(new)
    while hi_old > lo and hi_new > lo and old[hi_old - 1] == new[hi_new - 1]:
        hi_old -= 1
        hi_new -= 1
    return lo, hi_old


def _same_line(line: str, after: str) -> str:
    """A statement universalmutator adds on a new line (``break;``, ``continue;``), put on the
    mutated line instead: the lines below keep their numbers, so the ``__LINE__`` of their
    asserts does not change the machine code of an equivalent mutant. Not after a comment,
    a directive or a continued line, where it would change meaning."""
    if "\n" not in after or "//" in line or "/*" in line:
        return after
    if line.lstrip().startswith("#") or line.rstrip().endswith("\\"):
        return after
    first, *rest = after.split("\n")
    return " ".join([first.rstrip(), *(part.strip() for part in rest)])


@lru_cache(maxsize=16)
def _file_mutants(file: str, text: str) -> tuple[Mutant, ...]:
    sh = shape(text)
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line.encode()) + 1)
    out: list[Mutant] = []
    seen: set[str] = set()
    for number, new, rule in _proposals(text):
        n = number - 1
        after = _same_line(lines[n], new[:-1] if new.endswith("\n") else new)
        if after == lines[n]:
            continue
        lo, hi = _changed_span(lines[n], after)
        base = starts[n]
        where = region_of(
            sh, base + len(lines[n][:lo].encode()), base + len(lines[n][:hi].encode())
        )
        if where is None:
            continue
        key = _line_key(file, lines, n, after)
        if key in seen:
            continue
        seen.add(key)
        first, last = anchor(text, lines, n, n)
        old = "\n".join(lines[first : last + 1])
        replacement = "\n".join(lines[first:n] + [after] + lines[n + 1 : last + 1])
        out.append(
            Mutant(
                key=key,
                operator=operator_of(rule),
                file=file,
                line=number,
                edits=((file, old, replacement),),
                before=lines[n],
                after=after,
                function=where,
            )
        )
    return tuple(out)


def file_mutants(file: str, text: str) -> list[Mutant]:
    """Every systematic mutant of one source file (not all of them compile)."""
    return list(_file_mutants(file, text))


def source_texts(src_dir: Path | None = None) -> dict[str, str]:
    """The C sources the mutants edit, as installed beside the libraries."""
    base = src_dir or source_dir()
    return {name: (base / name).read_text() for name in MUTABLE_FILES}


def systematic_mutants(
    files: Sequence[str] = MUTABLE_FILES, src_dir: Path | None = None
) -> list[Mutant]:
    """Every mutant the generator makes of ``files`` (stillborn ones included)."""
    texts = source_texts(src_dir)
    return [m for f in files for m in file_mutants(f, texts[f])]
