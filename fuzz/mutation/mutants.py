# SPDX-License-Identifier: GPL-2.0-or-later
"""Mutation testing of the differential fuzzer: how many broken C references does it catch?

A *mutant* is the C reference (``qemu_ref/*.c`` and the macros of its headers) with one small
edit: an operator, a constant, a mask off by one, a loop bound, a shift, swapped arguments,
an atomic read-modify-write replaced by a plain one, a dropped statement. Systematic mutants
come from the small generator below (stdlib only, a line-based C tokenizer); realistic ones,
modelled on plausible patch mistakes, are written by hand in ``mutants_hand.py``. Each mutant
is compiled in both word widths with ``build.build_library`` (edits match exactly once) and
fuzzed against the model, one fresh process per (mutant, seed), so a mutant that crashes or
hangs is a detection and never takes the runner down.

Survivors of the fuzzing meet the other oracles: QEMU's asserts (``abort``), threads through
the atomic helpers (``stress``: qemu_ref/stress.c and ``CLEAR_STRESS_C``), and fuzzing
under AddressSanitizer/UBSan/LeakSanitizer (``asan``).

Verdicts: *killed* (a divergence, a crash, an uncaught exception or a hang in every seed, or
a kill by another oracle), *flaky* (some seeds only), *survived*; *stillborn* (does not
compile with -Werror: not counted), *equivalent* (the same machine code as the reference, a
dropped barrier, or a reason written in ``mutants_hand``: not counted). The mutation score
is killed / non-equivalent; a mutant's time to kill is the median over its seeds (a
surviving seed counts as infinite). docs/mutants.md has the method and the figures.

``recvmap mutants`` (``add_parser`` / ``run``) prints one line per mutant and the summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .mutant import Mutant

MUTABLE_FILES = ("bitops.c", "bitmap.c", "ram.c", "qemu_ref.h", "qemu_ref_ram.h")
LAYERS = ("bitmap", "ram", "recovery")

# --- the mutants ------------------------------------------------------------------------


# --- a small C tokenizer ----------------------------------------------------------------


def code_mask(text: str) -> str:
    """``text`` with comments and string/char literals blanked (newlines kept)."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != "\n":
                    out[k] = " "
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                if out[k] != "\n":
                    out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


TOKEN = re.compile(
    r"0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*|[A-Za-z_]\w*"
    r"|<<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||\+=|-=|\*=|/=|%=|&=|\|=|\^="
    r"|[-+*/%&|^~!<>=?:;,(){}\[\].\\#]"
)
TYPES = frozenset(
    "void char int long unsigned signed short bool size_t uint8_t uint32_t uint64_t int32_t "
    "int64_t uintptr_t qref_ulong qref_long qref_uptr RAMBlock RAMList const static inline "
    "va_list struct".split()
)
KEYWORDS = frozenset("if for while switch return sizeof case do else goto".split())
NOT_CALLS = KEYWORDS | {"defined", "__attribute__", "format", "__typeof__"}

BINARY = {
    "+": ("-",),
    "-": ("+",),
    "*": ("/",),
    "/": ("*",),
    "%": ("/",),
    "<<": (">>",),
    ">>": ("<<",),
    "&": ("|",),
    "|": ("&",),
    "^": ("|",),
    "<": ("<=", "!="),
    "<=": ("<", "=="),
    ">": (">=", "!="),
    ">=": (">", "=="),
    "==": ("!=",),
    "!=": ("==",),
    "&&": ("||",),
    "||": ("&&",),
}
ASSIGN = {
    "+=": ("-=",),
    "-=": ("+=",),
    "|=": ("&=", "^="),
    "&=": ("|=",),
    "^=": ("|=",),
    "<<=": (">>=",),
    ">>=": ("<<=",),
    "%=": ("/=",),
    "*=": ("/=",),
    "/=": ("*=",),
}
OPERATOR_CLASS = {
    **{op: "aor" for op in ("+", "-", "*", "/", "%")},
    **{op: "shift" for op in ("<<", ">>", "<<=", ">>=")},
    **{op: "bitop" for op in ("&", "|", "^")},
    **{op: "ror" for op in ("<", "<=", ">", ">=", "==", "!=")},
    **{op: "lcr" for op in ("&&", "||")},
    **{op: "assign" for op in ("+=", "-=", "|=", "&=", "^=", "%=", "*=", "/=")},
}
# Atomic builtins: (plain with the same sequential effect, plain with the wrong old value).
ATOMICS = {
    "__atomic_fetch_or": (
        "({{ __typeof__({a}) p_ = ({a}); __typeof__(*p_) o_ = *p_; *p_ = o_ | ({b}); o_; }})",
        "(*({a}) |= ({b}))",
    ),
    "__atomic_fetch_and": (
        "({{ __typeof__({a}) p_ = ({a}); __typeof__(*p_) o_ = *p_; *p_ = o_ & ({b}); o_; }})",
        "(*({a}) &= ({b}))",
    ),
    "__atomic_exchange_n": (
        "({{ __typeof__({a}) p_ = ({a}); __typeof__(*p_) o_ = *p_; *p_ = ({b}); o_; }})",
        "(*({a}) = ({b}))",
    ),
    "__atomic_store_n": ("(*({a}) = ({b}))", None),
    "__atomic_load_n": ("(*({a}))", None),
    "__atomic_thread_fence": ("((void)0)", None),
}
# Operators whose mutants only a concurrent oracle can tell from the reference.
SEQUENTIAL_EQUIVALENT = {"atomic-plain"}
FENCE_REASON = (
    "a memory barrier dropped: on x86-64 only a store-to-load reordering with "
    "another thread could show it, and no oracle here observes that"
)


@dataclass
class Tok:
    text: str
    col: int


def tokens(masked_line: str, start: int = 0) -> list[Tok]:
    return [Tok(m.group(), m.start()) for m in TOKEN.finditer(masked_line, start)]


def _is_operand_end(tok: Tok | None) -> bool:
    """Whether a binary operator may follow ``tok`` (an identifier, number, ``)`` or ``]``)."""
    if tok is None:
        return False
    t = tok.text
    if t in (")", "]"):
        return True
    if t[0].isdigit():
        return True
    return bool(re.fullmatch(r"[A-Za-z_]\w*", t)) and t not in KEYWORDS and t not in TYPES


def _closing(toks: list[Tok], i: int) -> int:
    """Index of the token closing the bracket at ``toks[i]`` on this line, or -1."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text in "([":
            depth += 1
        elif toks[j].text in ")]":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split_args(toks: list[Tok], open_i: int, close_i: int) -> list[tuple[int, int]]:
    """Token index ranges [lo, hi) of the top-level arguments between two parentheses."""
    args, depth, lo = [], 0, open_i + 1
    for j in range(open_i + 1, close_i):
        t = toks[j].text
        if t in "([":
            depth += 1
        elif t in ")]":
            depth -= 1
        elif t == "," and depth == 0:
            args.append((lo, j))
            lo = j + 1
    if lo < close_i:
        args.append((lo, close_i))
    return args


@dataclass
class LineInfo:
    """What the generator may touch on one line: the column from which code is mutable."""

    number: int  # 0-based
    start: int  # first mutable column, -1: nothing
    statement_start: bool = False  # a statement begins on this line (function body)


def scan_lines(text: str, header: bool) -> tuple[list[str], list[str], list[LineInfo]]:
    """Lines, masked lines, and what is mutable: function bodies and #define bodies."""
    lines, masked = text.split("\n"), code_mask(text).split("\n")
    infos: list[LineInfo] = []
    depth, directive, prev_end = 0, "", ";"
    for n, m in enumerate(masked):
        stripped = m.strip()
        start = -1
        continued = bool(directive)
        if not continued and stripped.startswith("#"):
            d = re.match(r"\s*#\s*(\w+)", m)
            directive = d.group(1) if d else "?"
            if directive == "define":
                md = re.match(r"\s*#\s*define\s+\w+(\([^)]*\))?", m)
                start = md.end() if md else -1
        elif continued:
            start = 0 if directive == "define" else -1
        elif not header and depth > 0:
            start = 0
        is_directive = bool(directive)
        if is_directive:
            directive = directive if m.rstrip().endswith("\\") else ""
        else:
            depth += m.count("{") - m.count("}")
        stmt = not is_directive and start >= 0 and bool(stripped) and prev_end in (";", "{", "}")
        infos.append(LineInfo(n, start, stmt))
        if stripped and not is_directive:
            prev_end = stripped[-1]
    return lines, masked, infos


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


def _edit(
    file: str, text: str, lines: list[str], first: int, last: int, new_lines: list[str]
) -> tuple[str, str]:
    lo, hi = anchor(text, lines, first, last)
    old = "\n".join(lines[lo : hi + 1])
    new = "\n".join(lines[lo:first] + new_lines + lines[last + 1 : hi + 1])
    return old, new


def _line_mutations(toks: list[Tok], line: str) -> Iterator[tuple[str, str]]:
    """(operator, mutated line) for the token-level operators of one line."""
    for i, tok in enumerate(toks):
        t, col = tok.text, tok.col
        prev = toks[i - 1] if i else None

        def put(repl: str, lo: int = col, hi: int = col + len(t)) -> str:
            return line[:lo] + repl + line[hi:]

        if t in BINARY and _is_operand_end(prev):
            if t == "*" and prev is not None and prev.text in TYPES:
                continue
            for r in BINARY[t]:
                yield OPERATOR_CLASS[t], put(r)
        elif t in ASSIGN:
            for r in ASSIGN[t]:
                yield OPERATOR_CLASS[t], put(r)
        elif t in ("++", "--"):
            yield "incdec", put("--" if t == "++" else "++")
        elif t in ("~", "!") or (t == "-" and not _is_operand_end(prev)):
            yield "unary-drop", put("")
        elif t[0].isdigit():
            m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)([uUlL]*)", t)
            if not m:
                continue
            value = int(m.group(1), 0)
            hexa = m.group(1).lower().startswith("0x")
            for v in sorted({value + 1, value - 1 if value else 1} - {value}):
                yield "constant", put((hex(v) if hexa else str(v)) + m.group(2))
        elif t in ATOMICS and i + 1 < len(toks) and toks[i + 1].text == "(":
            close = _closing(toks, i + 1)
            if close < 0:
                continue
            args = [
                line[toks[lo].col : toks[hi - 1].col + len(toks[hi - 1].text)]
                for lo, hi in _split_args(toks, i + 1, close)
            ]
            a, b = (args + ["", ""])[:2]
            span = (col, toks[close].col + 1)
            plain, wrong = ATOMICS[t]
            yield "atomic-plain", put(plain.format(a=a, b=b), *span)
            if wrong is not None:
                yield "atomic-wrong", put(wrong.format(a=a, b=b), *span)
        if (
            re.fullmatch(r"[A-Za-z_]\w*", t)
            and t not in NOT_CALLS
            and t not in TYPES
            and i + 1 < len(toks)
            and toks[i + 1].text == "("
            and not t.startswith("__atomic_thread")
        ):
            close = _closing(toks, i + 1)
            if close < 0:
                continue
            ranges = _split_args(toks, i + 1, close)
            texts = [
                line[toks[lo].col : toks[hi - 1].col + len(toks[hi - 1].text)] for lo, hi in ranges
            ]
            for k in range(len(ranges) - 1):
                a, b = texts[k], texts[k + 1]
                if a == b or "__ATOMIC" in a + b:
                    continue
                lo_a = toks[ranges[k][0]].col
                hi_b = toks[ranges[k + 1][1] - 1].col + len(toks[ranges[k + 1][1] - 1].text)
                middle = line[lo_a + len(a) : hi_b - len(b)]
                yield "swap-args", line[:lo_a] + b + middle + a + line[hi_b:]
        if t in ("if", "while") and i + 1 < len(toks) and toks[i + 1].text == "(":
            close = _closing(toks, i + 1)
            if close > 0:
                lo, hi = toks[i + 1].col + 1, toks[close].col
                yield "negate", line[:lo] + "!(" + line[lo:hi] + ")" + line[hi:]


def _statement_end(masked: list[str], first: int) -> int:
    """Last line of the statement starting at ``first`` (ends in ``;`` at paren depth 0)."""
    depth = 0
    for n in range(first, min(len(masked), first + 6)):
        depth += masked[n].count("(") - masked[n].count(")")
        s = masked[n].strip()
        if "{" in s or "}" in s:
            return -1
        if depth == 0 and s.endswith(";"):
            return n
    return -1


def file_mutants(file: str, text: str) -> list[Mutant]:
    """Every systematic mutant of one source file (not all of them compile)."""
    lines, masked, infos = scan_lines(text, file.endswith(".h"))
    out: list[Mutant] = []
    seen: set[tuple[int, str]] = set()

    def add(op: str, first: int, last: int, new_lines: list[str]) -> None:
        after = "\n".join(new_lines)
        if (first, after) in seen or after == "\n".join(lines[first : last + 1]):
            return
        seen.add((first, after))
        old, new = _edit(file, text, lines, first, last, new_lines)
        out.append(
            Mutant(
                key=_line_key(file, lines, first, after),
                operator=op,
                file=file,
                line=first + 1,
                edits=((file, old, new),),
                before="\n".join(lines[first : last + 1]),
                after=after,
            )
        )

    for info in infos:
        if info.start < 0:
            continue
        n, line = info.number, lines[info.number]
        toks = tokens(masked[n], info.start)
        for op, new_line in _line_mutations(toks, line):
            add(op, n, n, [new_line])
        first_tok = toks[0].text if toks else ""
        droppable = first_tok in ("break", "continue") or (
            bool(first_tok) and first_tok not in TYPES | KEYWORDS and first_tok not in "{}"
        )
        if info.statement_start and droppable and not file.endswith(".h"):
            last = _statement_end(masked, n)
            if last >= 0:
                indent = line[: len(line) - len(line.lstrip())]
                add("drop-statement", n, last, [indent + ";"])
    return out


def source_texts(src_dir: Path | None = None) -> dict[str, str]:
    """The C sources the mutants edit, as installed beside the libraries."""
    from ..subjects.build import source_dir

    base = src_dir or source_dir()
    return {name: (base / name).read_text() for name in MUTABLE_FILES}


def systematic_mutants(
    files: Sequence[str] = MUTABLE_FILES, src_dir: Path | None = None
) -> list[Mutant]:
    """Every mutant the generator makes of ``files`` (stillborn ones included)."""
    texts = source_texts(src_dir)
    return [m for f in files for m in file_mutants(f, texts[f])]


def all_mutants(src_dir: Path | None = None) -> list[Mutant]:
    """The hand-written mutants, then the systematic ones."""
    from .mutants_hand import hand_mutants

    return [*hand_mutants(source_texts(src_dir)), *systematic_mutants(src_dir=src_dir)]


def shuffled(mutants: Sequence[Mutant], seed: int = 0) -> list[Mutant]:
    """A fixed pseudo-random order: a sample is the first N of it that compile."""
    order = list(mutants)
    random.Random(seed).shuffle(order)
    return order


# --- building and trivial compiler equivalence ------------------------------------------


class Stillborn(Exception):
    """The mutant does not compile (or no longer applies to the sources)."""


BASE_EDITS: dict[str, list[tuple[str, str]]] = {}  # --patch: applied under every mutant


SANITIZE_FLAGS = (
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
)


def build(m: Mutant | None, bits: int, sanitize: bool = False) -> Path:
    """The library of ``m`` (None: the reference) for ``bits``; gcc's ASan+UBSan if asked."""
    from ..subjects.build import BuildError, build_library

    edits = {f: list(e) for f, e in BASE_EDITS.items()}
    for f, e in (m.build_edits() if m else {}).items():
        edits.setdefault(f, []).extend(e)
    try:
        if sanitize:
            return build_library(bits, edits or None, flags=SANITIZE_FLAGS)
        return build_library(bits, edits or None)
    except BuildError as err:
        lines = str(err).splitlines()
        first = next((x for x in lines if "error" in x), lines[0] if lines else "")
        raise Stillborn(first.split("error:", 1)[-1].strip()[:200]) from None


def asan_env() -> dict[str, str]:
    """A worker's environment for sanitized libraries: gcc's ASan runtime preloaded, and
    Python's allocations through malloc so the ctypes word arrays get red zones too.
    LeakSanitizer runs at exit (mid-run it would see the C maps whose only pointers are
    Python ints as leaked); the reference leaves nothing behind."""
    runtime = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True
    ).stdout.strip()
    return dict(
        os.environ,
        LD_PRELOAD=runtime,
        PYTHONMALLOC="malloc",
        ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=0",
    )


_ASAN_OK: dict[tuple[Any, ...], bool] = {}


def asan_usable(opts: Any) -> bool:
    """Whether the sanitized reference builds and survives the sanitized run (once)."""
    key = (opts.seeds[0], opts.asan_budget, tuple(opts.widths), json.dumps(BASE_EDITS))
    if key not in _ASAN_OK:
        try:
            libs = {b: build(None, b, sanitize=True) for b in opts.widths}
            run = run_seed(
                libs,
                opts.seeds[0],
                opts.asan_budget,
                opts.hang_timeout * 3,
                opts.layers,
                env=asan_env(),
            )
            _ASAN_OK[key] = not run.killed
            if run.killed:
                print(
                    f"recvmap mutants: the sanitized reference fails ({run.how}: "
                    f"{run.description}); no asan oracle",
                    file=sys.stderr,
                )
        except (Stillborn, RuntimeError) as err:
            print(f"recvmap mutants: no asan oracle: {err}", file=sys.stderr)
            _ASAN_OK[key] = False
    return _ASAN_OK[key]


# QEMU's asserts, which the differential engine never reaches (the model rejects these
# inputs first): (function, args, must abort). tests/test_domain.py checks the reference.
ABORT_CASES: tuple[tuple[str, tuple[int, ...], bool], ...] = (
    *(
        (f, a, True)
        for f in (
            "bitmap_set",
            "bitmap_set_atomic",
            "bitmap_clear",
            "bitmap_test_and_clear",
            "bitmap_test_and_clear_atomic",
        )
        for a in ((-1, 1), (0, -1), (-1, -1), (-64, 0))
    ),
    *(("qref_set_target_page_bits", (b,), True) for b in (0, -1, 32, 33)),
    *(("qref_set_target_page_bits", (b,), False) for b in (1, 31)),
)


def _abort_child(config: dict[str, Any]) -> int:
    """Each case in a forked child: print which ones did not behave (abort or return)."""
    import signal

    from recvmap.qemu_ref import load

    libs = {int(b): load(Path(p), int(b)) for b, p in config["libs"].items()}
    wrong = []
    for bits, lib in libs.items():
        for name, args, must_abort in ABORT_CASES:
            pid = os.fork()
            if pid == 0:
                os.close(2)  # the assert message
                fn = lib.functions[name]
                if name.startswith("bitmap"):
                    fn(lib.words(4), *args)
                else:
                    fn(*args)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            aborted = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT
            if aborted != must_abort:
                wrong.append(
                    f"{bits}-bit {name}{args} "
                    + ("returned, QEMU asserts" if must_abort else "aborted")
                )
    print(json.dumps(wrong))
    return 0


def abort_oracle(libs: dict[int, Path]) -> SeedRun:
    """The abort oracle: QEMU's asserts fire where they must, and only there."""
    t0 = time.monotonic()
    config = {"libs": {str(b): str(p) for b, p in libs.items()}}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recvmap.fuzz.mutation.mutants",
            "--abort-oracle",
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    try:
        wrong = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return SeedRun(0, True, elapsed, "abort", "", f"oracle crashed: {proc.returncode}")
    return SeedRun(0, bool(wrong), elapsed if wrong else None, "abort", "", "; ".join(wrong[:3]))


def _elf_sections(data: bytes, names: Iterable[str]) -> dict[str, bytes]:
    """Contents of the named sections of a little-endian ELF64 file."""
    import struct

    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = heads[shstrndx]
    want, out = set(names), {}
    for name_off, kind, _flags, _addr, off, size in heads:
        end = data.index(b"\0", strtab[4] + name_off)
        name = data[strtab[4] + name_off : end].decode()
        if name in want:
            out[name] = b"" if kind == 8 else data[off : off + size]  # 8: SHT_NOBITS
    return out


def machine_code(lib: Path) -> bytes:
    """What a library computes: code and constant data, its own build folder name blanked."""
    data = lib.read_bytes()
    data = data.replace(lib.parent.name.encode(), b"#" * len(lib.parent.name))
    if data[:5] != b"\x7fELF\x02" or data[5] != 1:
        return data
    sections = _elf_sections(data, (".text", ".rodata", ".data"))
    return b"".join(sections.get(s, b"") for s in (".text", ".rodata", ".data"))


STRESS_ARGS = ("-n", "300")  # qref-stress rounds

# The clear side, which qemu_ref/stress.c does not exercise (built like it, per mutant).
CLEAR_STRESS_C = r"""/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Clear-side concurrency check of the atomic helpers: setters race clearers on
 * shared words.  1: clear_bit_atomic against set_bit_atomic (no set bit may be
 * lost); 2: two bitmap_test_and_clear_atomic sweepers over every word against
 * one set bit per word (each bit reported exactly once); 3:
 * bitmap_copy_and_clear_atomic sweeps against set bits (each bit collected
 * exactly once).  Exit 1 on a failure.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "qemu_ref.h"

#define NWORDS 64
#define NTHREADS 2              /* setters, and as many clearers */
#define BPL QREF_BITS_PER_LONG

static qref_ulong map[NWORDS], want[NWORDS], got[NTHREADS + 1][NWORDS];
static unsigned hits[NTHREADS + 1][NWORDS];
static int mode, setters_left, twice;
static pthread_barrier_t go;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *setter(void *arg)
{
    long id = (long)arg;

    pthread_barrier_wait(&go);
    for (long w = id; w < NWORDS; w += NTHREADS) {
        for (long b = 0; b < BPL; b++) {
            if (!(want[w] >> b & 1)) {
                continue;
            }
            set_bit_atomic(w * BPL + b, map);
        }
    }
    __atomic_fetch_sub(&setters_left, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* One sweep of clearer id (NTHREADS: the final sweep, every word). */
static void sweep(long id, uint64_t *s)
{
    long step = id == NTHREADS || mode == 2 ? 1 : NTHREADS;
    long first = id == NTHREADS || mode == 2 ? 0 : id;

    for (long w = first; w < NWORDS; w += step) {
        if (mode == 1) {
            for (long b = 1; b < BPL && id < NTHREADS; b += 2) {
                clear_bit_atomic(w * BPL + b, map);
            }
        } else if (mode == 2) {
            long k = id < NTHREADS && rnd(s) % 2 ? (long)(rnd(s) % BPL) : 0;

            if (bitmap_test_and_clear_atomic(map, w * BPL + k, BPL - k)) {
                hits[id][w]++;
            }
        } else {
            qref_ulong d = 0;

            bitmap_copy_and_clear_atomic(&d, &map[w], BPL);
            if (got[id][w] & d) {
                twice = 1;
            }
            got[id][w] |= d;
        }
    }
}

static void *clearer(void *arg)
{
    long id = (long)arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);

    pthread_barrier_wait(&go);
    do {
        sweep(id, &s);
    } while (mode != 1 && __atomic_load_n(&setters_left, __ATOMIC_SEQ_CST));
    return NULL;
}

static int check(void)
{
    for (long w = 0; w < NWORDS; w++) {
        qref_ulong all = 0;
        unsigned n = 0;

        for (int t = 0; t <= NTHREADS; t++) {
            all |= got[t][w];
            n += hits[t][w];
        }
        if ((mode == 1 && map[w] != want[w]) || (mode == 2 && n != 1) ||
            (mode == 3 && (all != want[w] || twice))) {
            printf("mode %d word %ld: map %#llx want %#llx hits %u FAIL\n", mode, w,
                   (unsigned long long)map[w], (unsigned long long)want[w], n);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    uint64_t s = 88172645463325252ull;
    pthread_t th[2 * NTHREADS];

    pthread_barrier_init(&go, NULL, 2 * NTHREADS);
    for (mode = 1; mode <= 3; mode++) {
        for (int r = 0; r < rounds; r++) {
            for (long w = 0; w < NWORDS; w++) {
                qref_ulong odd = (qref_ulong)0xaaaaaaaaaaaaaaaaull;

                want[w] = mode == 1 ? ~odd : mode == 2 ? (qref_ulong)1 << rnd(&s) % BPL
                                                       : (qref_ulong)rnd(&s);
                map[w] = mode == 1 ? odd : 0;
                for (int t = 0; t <= NTHREADS; t++) {
                    got[t][w] = 0;
                    hits[t][w] = 0;
                }
            }
            twice = 0;
            setters_left = NTHREADS;
            for (long t = 0; t < NTHREADS; t++) {
                pthread_create(&th[t], NULL, setter, (void *)t);
                pthread_create(&th[NTHREADS + t], NULL, clearer, (void *)t);
            }
            for (int t = 0; t < 2 * NTHREADS; t++) {
                pthread_join(th[t], NULL);
            }
            if (mode != 1) {
                sweep(NTHREADS, &s);
            }
            if (check()) {
                return 1;
            }
        }
    }
    printf("clear-side atomics: %d rounds of 3 modes OK\n", rounds);
    return 0;
}
"""


def _stress_programs(lib: Path, bits: int) -> list[tuple[str, list[str]]]:
    """Build (once) the stress programs on the mutant's sources: (path, arguments)."""
    from ..subjects.build import WARNINGS, source_dir

    work = lib.parent  # build_library leaves the edited sources beside the library
    clear_c = work / "clear_stress.c"
    if not clear_c.exists():
        clear_c.write_text(CLEAR_STRESS_C)
    out = []
    programs: tuple[tuple[str, Path, list[str], Sequence[str]], ...] = (
        ("qref-stress", source_dir() / "stress.c", ["-DQREF_STRESS_RAM"], STRESS_ARGS),
        ("clear-stress", clear_c, [], ()),
    )
    for name, source, defines, argv in programs:
        exe = work / f"{name}{bits}"
        if not exe.exists():
            cmd = [
                "gcc", *WARNINGS, "-O2", "-pthread", *defines, f"-I{work}",
                *(["-DQREF_BITS_PER_LONG=32"] if bits == 32 else []),
                str(source), *(str(work / f) for f in ("bitops.c", "bitmap.c", "ram.c")),
                "-o", str(exe) + ".tmp",
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise Stillborn(f"{name} build failed: {crash_line(proc.stderr)}")
            Path(str(exe) + ".tmp").replace(exe)
        out.append((str(exe), list(argv)))
    return out


def stress_oracle(libs: dict[int, Path], budget: float = 10.0) -> SeedRun:
    """The concurrency oracle, built on the mutant's sources: qemu_ref/stress.c (threads
    setting bits through the atomic helpers while readers test them: no bit lost, extra or
    vanished), then CLEAR_STRESS_C (clear_bit_atomic, bitmap_test_and_clear_atomic and
    bitmap_copy_and_clear_atomic racing set_bit_atomic: every bit taken exactly once).
    Races need both cores: the programs run again until ``budget`` seconds have passed."""
    programs = [(bits, p) for bits, lib in sorted(libs.items(), reverse=True)
                for p in _stress_programs(lib, bits)]  # fmt: skip
    t0 = time.monotonic()
    while True:
        for bits, (exe, argv) in programs:
            try:
                proc = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120)
                code, out = proc.returncode, (proc.stdout + proc.stderr).strip()
            except subprocess.TimeoutExpired:
                code, out = -1, "hang"
            if code != 0:
                line = out.splitlines()[-1] if out else f"exit {code}"
                name = f"{bits}-bit {Path(exe).name}"
                return SeedRun(0, True, time.monotonic() - t0, "stress", name, line[-200:])
        if time.monotonic() - t0 >= budget:
            return SeedRun(0, False, None, "stress")


# --- one (mutant, seed): a worker process -----------------------------------------------


class _Detected(Exception):
    pass


def hunt(
    libs: dict[int, Path],
    seed: int,
    budget: float,
    layers: Sequence[str] = LAYERS,
    max_ops: int = 24,
    max_len: int = 600,
    heartbeat: Any = None,
) -> dict[str, Any]:
    """Fuzz ``libs`` (one per word width) with every layer in turn: the first divergence.

    The engine of the campaign, in this process: random inputs through each layer's
    ``Harness`` (decoder, model first, compare after every operation), one input per layer
    in turn. Returns ``killed``, ``time`` (seconds to the detection), ``how``, ``layer``,
    ``description`` and the counts. ``heartbeat()`` is called about five times a second.
    """
    from recvmap.qemu_ref import load

    from ..campaign.harness import Harness
    from ..engine import first_divergence
    from ..program import Program
    from ..subjects.impls import Subject

    class Detector(Harness):
        def report(self, program: Program, first: object = None) -> None:
            raise _Detected(program)

    subject = Subject(libraries={b: load(Path(p), b) for b, p in libs.items()})
    harnesses = [
        Detector(layer, subject, out_dir=tempfile.gettempdir(), max_ops=max_ops) for layer in layers
    ]
    rngs = [random.Random(f"{seed}:{h.layer}") for h in harnesses]
    t0 = last = time.monotonic()
    result: dict[str, Any] = {"killed": False}
    while time.monotonic() - t0 < budget and not result["killed"]:
        for h, rng in zip(harnesses, rngs, strict=True):
            data = rng.randbytes(rng.randrange(1, max_len))
            try:
                h.one_input(data)
            except _Detected as det:
                program = det.args[0]
                _, divergence = first_divergence(program, subject)
                what = divergence.describe() if divergence else "divergence (not replayed)"
                result = {
                    "killed": True,
                    "how": "divergence",
                    "layer": h.layer,
                    "description": what,
                    "program": program.to_json(),
                }
            except Exception as err:  # a Python-level crash of the harness is a finding too
                result = {
                    "killed": True,
                    "how": "exception",
                    "layer": h.layer,
                    "description": f"{type(err).__name__}: {err}"[:300],
                }
            if result["killed"]:
                result["time"] = time.monotonic() - t0
                break
        now = time.monotonic()
        if heartbeat is not None and now - last >= 0.2:
            heartbeat()
            last = now
    result.setdefault("time", time.monotonic() - t0)
    result["programs"] = sum(h.programs for h in harnesses)
    result["ops"] = sum(h.ops for h in harnesses)
    return result


def _worker(config: dict[str, Any]) -> int:
    """``hunt`` in a worker process: prints ``ready``, heartbeats, one ``result {json}``.

    A crash or a hang is seen by the parent (no result line).
    """
    out = sys.stdout

    def beat() -> None:
        out.write(".\n")
        out.flush()

    libs = {int(b): Path(p) for b, p in config["libs"].items()}
    out.write("ready\n")
    out.flush()
    result = hunt(
        libs,
        int(config["seed"]),
        float(config["budget"]),
        config.get("layers", LAYERS),
        int(config.get("max_ops", 24)),
        int(config.get("max_len", 600)),
        beat,
    )
    out.write("result " + json.dumps(result) + "\n")
    out.flush()
    return 0


@dataclass
class SeedRun:
    seed: int
    killed: bool
    time: float | None  # seconds of fuzzing to the detection
    how: str = ""  # divergence, exception, crash, hang
    layer: str = ""
    description: str = ""
    programs: int = 0
    ops: int = 0


def run_seed(
    libs: dict[int, Path],
    seed: int,
    budget: float,
    hang_timeout: float = 3.0,
    layers: Sequence[str] = LAYERS,
    env: dict[str, str] | None = None,
) -> SeedRun:
    """One seed of one mutant in a fresh process; crashes and hangs are detections.

    A hang is ``hang_timeout`` seconds without the worker finishing an input (the slowest
    input of the reference takes well under 0.1 s); its time to kill includes that wait.
    """
    config = {
        "libs": {str(b): str(p) for b, p in libs.items()},
        "seed": seed,
        "budget": budget,
        "layers": list(layers),
    }
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recvmap.fuzz.mutation.mutants", "--worker", json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf, started, last = b"", None, time.monotonic()
        spawn = time.monotonic()
        result: dict[str, Any] | None = None
        hung = False
        while True:
            limit = hang_timeout if started else hang_timeout + 30.0
            ready, _, _ = select.select([fd], [], [], 0.5)
            now = time.monotonic()
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                last = now
                *done, buf = buf.split(b"\n")
                for line in done:
                    if line == b"ready":
                        started = now
                    elif line.startswith(b"result "):
                        result = json.loads(line[7:])
            elif now - last > limit or (started and now - started > budget + hang_timeout):
                hung = True
                proc.kill()
                break
        proc.wait()
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace").strip()
    elapsed = time.monotonic() - (started or spawn)
    if result is not None and not result["killed"] and proc.returncode != 0:
        result.update(
            killed=True,
            how=f"exit {proc.returncode}",
            time=elapsed,
            description=crash_line(tail)[:300],
        )
    if result is not None:
        return SeedRun(
            seed,
            bool(result["killed"]),
            result["time"] if result["killed"] else None,
            result.get("how", ""),
            result.get("layer", ""),
            result.get("description", ""),
            result.get("programs", 0),
            result.get("ops", 0),
        )
    if started is None and not hung:
        raise RuntimeError(f"worker failed before fuzzing (exit {proc.returncode}): {tail}")
    how = "hang" if hung else f"crash (exit {proc.returncode})"
    return SeedRun(seed, True, elapsed, how, "", crash_line(tail)[:300])


def crash_line(stderr: str) -> str:
    """The line of a crash's stderr that says what happened (sanitizer summary, assert...)."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    for key in ("SUMMARY:", "runtime error", "Assertion", "ERROR:"):
        for x in lines:
            if key in x:
                return x
    return lines[-1] if lines else ""


def run_seed_cli(
    libs: dict[int, Path],
    seed: int,
    budget: float,
    hang_timeout: float = 3.0,
    layers: Sequence[str] = LAYERS,
) -> SeedRun:
    """One seed through ``recvmap fuzz --impl LIB``, one campaign per word width (a library
    has one width), 64 first. The time to kill is that of the campaign that found it, from
    the command's start (a user runs the campaign of the width they build)."""
    script = Path(sys.executable).with_name("recvmap")
    for bits, lib in sorted(libs.items(), reverse=True):
        with tempfile.TemporaryDirectory(prefix="recvmap-mutant-") as tmp:
            summary = Path(tmp) / "summary.json"
            argv = [
                str(script),
                "fuzz",
                "--impl",
                str(lib),
                "--max-time",
                f"{budget:g}",
                "--seed",
                str(seed),
                "--json",
                str(summary),
            ]
            if tuple(layers) != LAYERS:
                argv += ["--target", ",".join(layers)]
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    cwd=tmp,
                    timeout=budget + 120 + hang_timeout,
                )
                code, out = proc.returncode, proc.stdout + proc.stderr
            except subprocess.TimeoutExpired:
                code, out = -1, "timeout"
            took = time.monotonic() - t0
            if code == 2:
                raise RuntimeError(f"recvmap fuzz refused the run: {out.strip()[-300:]}")
            if code != 0:
                desc = ""
                try:
                    data = json.loads(summary.read_text())
                    found = data.get("divergences") or data.get("crashes") or [{}]
                    desc = str(found[0].get("description") or found[0].get("tail", ""))
                except (OSError, ValueError):
                    desc = out.strip().splitlines()[-1] if out.strip() else ""
                how = "divergence" if code == 1 else f"exit {code}"
                return SeedRun(seed, True, took, how, f"{bits}-bit", desc[:300])
    return SeedRun(seed, False, None)


# --- a mutant's verdict -----------------------------------------------------------------


@dataclass
class MutantResult:
    key: str
    origin: str
    operator: str
    label: str
    diff: str
    note: str
    verdict: str  # killed, flaky, survived, equivalent, stillborn
    reason: str = ""  # why equivalent / stillborn
    equivalent_kind: str = ""  # "compiler", "reasoned", "sequential"
    ttk: float | None = None  # median seconds to kill over the seeds (None: not killed)
    killed_by: str = ""  # "fuzz", or the oracle that killed a fuzzing survivor
    seeds: list[SeedRun] = field(default_factory=list)
    oracles: list[SeedRun] = field(default_factory=list)  # runs of the extra oracles
    build_seconds: float = 0.0
    fingerprint: str = ""

    @property
    def counted(self) -> bool:
        return self.verdict in ("killed", "flaky", "survived")


def fingerprint(m: Mutant, opts: Any) -> str:
    """What a fuzzing result depends on: the mutant's edits, the seeds, budget and backend."""
    raw = json.dumps([m.edits, list(opts.seeds), opts.budget, opts.backend, BASE_EDITS])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def median_ttk(runs: Sequence[SeedRun]) -> float | None:
    times = sorted(r.time if r.killed and r.time is not None else math.inf for r in runs)
    if not times:
        return None
    mid = len(times) // 2
    value = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2
    return None if math.isinf(value) else value


ORACLES = ("fuzz", "abort", "stress", "asan")


@dataclass
class Options:
    seeds: tuple[int, ...] = (1, 2, 3)
    budget: float = 60.0
    hang_timeout: float = 3.0
    backend: str = "inprocess"  # or "cli"
    layers: tuple[str, ...] = LAYERS
    run_equivalent: bool = False  # fuzz the mutants documented as equivalent too
    widths: tuple[int, ...] = (64, 32)
    oracles: tuple[str, ...] = ORACLES  # what may kill a mutant, in this order
    asan_budget: float = 10.0  # seconds of sanitized fuzzing (first seed) for survivors
    stress_budget: float = 10.0  # seconds of the concurrency programs for survivors


def _sequential_reason(m: Mutant) -> str:
    """Why a systematic mutant only differs when threads race (or "")."""
    text = m.before.strip()
    if m.operator in SEQUENTIAL_EQUIVALENT:
        return (
            "an atomic read-modify-write replaced by a plain one with the same "
            "single-threaded effect: only concurrent writers can tell"
        )
    if m.operator == "drop-statement" and text.startswith("__atomic_thread_fence"):
        return FENCE_REASON
    if m.operator == "atomic-wrong" and text.startswith("__atomic_"):
        return (
            "an atomic read-modify-write replaced by a plain one whose value is not "
            "used: the same single-threaded effect; only concurrent writers can tell"
        )
    return ""


def prepare(
    m: Mutant, opts: Options, reference: dict[int, bytes] | None = None
) -> tuple[MutantResult, dict[int, Path]]:
    """Build ``m`` in every width and decide whether it is stillborn or known equivalent."""
    from .mutants_hand import SEQUENTIAL, equivalence

    res = MutantResult(
        m.key,
        m.origin,
        m.operator,
        m.label(),
        m.diff(),
        m.note,
        "pending",
        fingerprint=fingerprint(m, opts),
    )
    t0 = time.monotonic()
    try:
        libs = {b: build(m, b) for b in opts.widths}
    except Stillborn as err:
        res.verdict, res.reason = "stillborn", str(err)
        return res, {}
    res.build_seconds = round(time.monotonic() - t0, 3)
    reason, kind = equivalence(m)
    if reason:
        res.reason = reason
        res.equivalent_kind = "sequential" if kind == SEQUENTIAL else "reasoned"
    elif _sequential_reason(m) == FENCE_REASON:
        res.reason, res.equivalent_kind = FENCE_REASON, "barrier"
    elif _sequential_reason(m):
        res.reason, res.equivalent_kind = _sequential_reason(m), "sequential"
    elif reference and all(machine_code(libs[b]) == reference[b] for b in libs):
        res.reason = "the compiler emits the same machine code as for the reference"
        res.equivalent_kind = "compiler"
    final = res.equivalent_kind in ("compiler", "barrier")
    if final or res.equivalent_kind == "reasoned" and not opts.run_equivalent:
        res.verdict = "equivalent"
    return res, libs


def touches_assert(m: Mutant) -> bool:
    return any("assert(" in old or "assert(" in new for _, old, new in m.edits)


def fuzz_mutant(
    res: MutantResult,
    libs: dict[int, Path],
    opts: Options,
    m: Mutant | None = None,
    deferred: list[tuple[MutantResult, dict[int, Path]]] | None = None,
) -> MutantResult:
    """Fuzz a prepared mutant with each seed; survivors meet the extra oracles.

    killed: every seed found it (or an extra oracle did); flaky: some seeds; survived.
    With ``deferred``, the concurrency oracle is left for ``stress_deferred`` (races need
    idle cores, not cores busy fuzzing other mutants).
    """
    runner = run_seed_cli if opts.backend == "cli" else run_seed
    sequential = res.equivalent_kind == "sequential"  # only a concurrent oracle can tell
    if "fuzz" in opts.oracles and (not sequential or opts.run_equivalent):
        res.seeds = [
            runner(libs, seed, opts.budget, opts.hang_timeout, opts.layers) for seed in opts.seeds
        ]
    killed = sum(r.killed for r in res.seeds)
    res.ttk = median_ttk(res.seeds)
    if res.seeds and killed == len(res.seeds):
        res.verdict, res.killed_by = "killed", "fuzz"
    else:
        res.verdict = "flaky" if killed else "survived"
        res.oracles = extra_oracles(libs, opts, m, stress=deferred is None, asan=not sequential)
        hit = next((r for r in res.oracles if r.killed), None)
        if hit is not None:
            res.verdict, res.killed_by, res.ttk = "killed", hit.how.split(":")[0], hit.time
        elif deferred is not None and "stress" in opts.oracles and m is not None:
            deferred.append((res, libs))
    return settle(res)


def settle(res: MutantResult) -> MutantResult:
    """A documented equivalence is refuted by any kill (the mutant was fuzzed to check it)."""
    killed = any(r.killed for r in res.seeds) or bool(res.killed_by)
    if res.equivalent_kind == "reasoned":
        res.verdict = "equivalence-refuted" if killed else "equivalent"
    elif res.equivalent_kind == "sequential" and any(r.killed for r in res.seeds):
        res.verdict = "equivalence-refuted"
    return res


def stress_deferred(res: MutantResult, libs: dict[int, Path], opts: Options) -> MutantResult:
    """The concurrency oracle for a survivor of the other oracles (run alone, cores idle)."""
    try:
        run = stress_oracle(libs, opts.stress_budget)
    except Stillborn:
        return res
    res.oracles.append(run)
    if run.killed and res.verdict != "killed":
        res.verdict, res.killed_by, res.ttk = "killed", "stress", run.time
    return settle(res)


def extra_oracles(
    libs: dict[int, Path],
    opts: Options,
    m: Mutant | None,
    stress: bool = True,
    asan: bool = True,
) -> list[SeedRun]:
    """The oracles after fuzzing, cheapest first: QEMU's asserts (abort), the concurrency
    programs (stress), sanitized fuzzing (asan); the first kill ends the list."""
    runs: list[SeedRun] = []
    if "abort" in opts.oracles and m is not None and touches_assert(m):
        runs.append(abort_oracle(libs))
        if runs[-1].killed:
            return runs
    if stress and "stress" in opts.oracles and m is not None:
        try:
            runs.append(stress_oracle(libs, opts.stress_budget))
        except Stillborn:
            pass
        else:
            if runs[-1].killed:
                return runs
    if asan and "asan" in opts.oracles and m is not None and asan_usable(opts):
        try:
            slibs = {b: build(m, b, sanitize=True) for b in opts.widths}
        except Stillborn:
            return runs
        run = run_seed(
            slibs,
            opts.seeds[0],
            opts.asan_budget,
            opts.hang_timeout * 3,
            opts.layers,
            env=asan_env(),
        )
        run.how = f"asan: {run.how}" if run.killed else "asan"
        runs.append(run)
    return runs


def result_from_json(d: dict[str, Any]) -> MutantResult:
    seeds = [SeedRun(**s) for s in d.pop("seeds", [])]
    oracles = [SeedRun(**s) for s in d.pop("oracles", [])]
    return MutantResult(**d, seeds=seeds, oracles=oracles)


# --- the summary ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (inf stays inf)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def figures(results: Sequence[MutantResult], budget: float) -> dict[str, Any]:
    """The mutation score and the time-to-kill statistics of a run.

    Non-equivalent mutants are the counted ones (killed, flaky, survived) plus any whose
    documented equivalence was refuted. A mutant not killed counts as an infinite time.
    The ``fuzz`` figures give the differential engine alone (oracle kills count as not
    killed); the others count every oracle (an oracle kill's time is the oracle's own).
    """
    counted = [r for r in results if r.counted or r.verdict == "equivalence-refuted"]
    killed = [r for r in counted if r.verdict == "killed"]
    by_fuzz = [r for r in killed if r.killed_by == "fuzz"]
    flaky = [r for r in counted if r.verdict == "flaky"]
    times = [r.ttk if r.ttk is not None and r.verdict != "survived" else math.inf for r in counted]
    fuzz_times = [
        r.ttk
        if r.ttk is not None and r.killed_by in ("fuzz", "") and r.verdict != "survived"
        else math.inf
        for r in counted
    ]
    by_kind: dict[str, int] = {}
    for r in results:
        if r.verdict == "equivalent":
            by_kind[r.equivalent_kind] = by_kind.get(r.equivalent_kind, 0) + 1
    killed_by: dict[str, int] = {}
    for r in killed:
        killed_by[r.killed_by] = killed_by.get(r.killed_by, 0) + 1
    n = len(counted)

    def fmt(x: float) -> float | None:
        return None if math.isinf(x) or math.isnan(x) else round(x, 3)

    def ratio(k: int) -> float | None:
        return round(k / n, 4) if n else None

    return {
        "mutants": len(results),
        "stillborn": sum(r.verdict == "stillborn" for r in results),
        "equivalent": sum(r.verdict == "equivalent" for r in results),
        "equivalent_by_kind": by_kind,
        "equivalence_refuted": sum(r.verdict == "equivalence-refuted" for r in results),
        "non_equivalent": n,
        "killed": len(killed),
        "killed_by": killed_by,
        "flaky": len(flaky),
        "survived": sum(r.verdict == "survived" for r in counted),
        "score": ratio(len(killed)),
        "score_any_seed": ratio(len(killed) + len(flaky)),
        "score_fuzz": ratio(len(by_fuzz)),
        "killed_within_budget": sum(t <= budget for t in times),
        "median_ttk": fmt(statistics.median(times)) if times else None,
        "p95_ttk": fmt(percentile(times, 95)),
        "median_ttk_fuzz": fmt(statistics.median(fuzz_times)) if fuzz_times else None,
        "p95_ttk_fuzz": fmt(percentile(fuzz_times, 95)),
        "max_ttk_killed": fmt(max((r.ttk for r in killed if r.ttk is not None), default=math.nan)),
        "survivors": [r.key for r in counted if r.verdict != "killed"],
    }


def line_of(r: MutantResult, width: int = 100) -> str:
    ttk = f"{r.ttk:7.2f}s" if r.ttk is not None and r.verdict != "survived" else "     -  "
    verdict = r.verdict if r.killed_by in ("", "fuzz") else f"{r.verdict}/{r.killed_by}"
    head = f"{verdict:<13} {ttk}  {r.key:<26} {r.operator:<14} {r.label:<18}"
    tail = r.note or r.diff
    if r.verdict == "stillborn":
        tail += f"  [{r.reason}]"
    elif r.verdict == "equivalent":
        tail += f"  [{r.equivalent_kind}]"
    text = f"{head} {tail}"
    return text if len(text) <= width + 60 else text[: width + 57] + "..."


def summary_text(results: Sequence[MutantResult], opts: Options, fig: dict[str, Any]) -> str:
    lines = [
        "",
        f"mutants: {fig['mutants']} ({fig['stillborn']} stillborn, {fig['equivalent']} "
        f"equivalent {fig['equivalent_by_kind']}), non-equivalent {fig['non_equivalent']}",
        f"seeds {','.join(map(str, opts.seeds))}, budget {opts.budget:g} s per seed, "
        f"backend {opts.backend}, layers {'+'.join(opts.layers)}, oracles "
        f"{'+'.join(opts.oracles)}",
        f"killed {fig['killed']} {fig['killed_by']}, flaky (some seeds) {fig['flaky']}, "
        f"survived {fig['survived']}",
        f"mutation score {_pct(fig['score'])} (differential fuzzing alone "
        f"{_pct(fig['score_fuzz'])}; killed by any seed {_pct(fig['score_any_seed'])})",
        f"killed within the budget: {fig['killed_within_budget']} of {fig['non_equivalent']}",
        f"time to kill: median {_secs(fig['median_ttk'])}, 95th percentile "
        f"{_secs(fig['p95_ttk'])}, slowest kill {_secs(fig['max_ttk_killed'])}; fuzzing alone: "
        f"median {_secs(fig['median_ttk_fuzz'])}, 95th percentile {_secs(fig['p95_ttk_fuzz'])}",
    ]
    if fig["equivalence_refuted"]:
        lines.append(
            f"EQUIVALENCE REFUTED (documented equivalent, yet killed): {fig['equivalence_refuted']}"
        )
    survivors = [
        r
        for r in results
        if r.counted and r.verdict != "killed" or r.verdict == "equivalence-refuted"
    ]
    if survivors:
        lines.append("survivors:")
        for r in survivors:
            lines.append(f"  {r.verdict:<8} {r.key}  {r.label}  {r.diff}")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _secs(x: float | None) -> str:
    return "inf (over budget)" if x is None else f"{x:.2f} s"


# --- the command ------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``recvmap mutants``: the mutation score of the fuzzer and its time to kill."""
    p = subparsers.add_parser(
        "mutants",
        help="measure the fuzzer on mutants of the C reference (mutation score, time to kill)",
        description="Build mutants of the C reference (hand-written and a fixed sample of "
        "systematic ones), fuzz each against the model with several seeds, and print "
        "per mutant killed/survived and time to kill, the mutation score, the median and "
        "95th percentile time to kill, and the survivors.",
    )
    configure_parser(p)
    return p  # type: ignore[no-any-return]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds of fuzzing per mutant and seed (default 60)",
    )
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument(
        "--sample",
        type=int,
        default=200,
        help="systematic mutants to run: the first N of a fixed shuffle that "
        "compile (default 200; 0: none, -1: all)",
    )
    p.add_argument("--sample-seed", type=int, default=0, help="the shuffle's seed (default 0)")
    p.add_argument("--no-hand", action="store_true", help="leave out the hand-written mutants")
    p.add_argument("--only", nargs="+", metavar="KEY", help="just these mutants (keys)")
    p.add_argument("--files", help=f"comma-separated subset of {','.join(MUTABLE_FILES)}")
    p.add_argument("--operators", help="comma-separated operator classes")
    p.add_argument("--layers", default=",".join(LAYERS), help="layers fuzzed (default all)")
    p.add_argument(
        "--backend",
        choices=("inprocess", "cli"),
        default="inprocess",
        help="inprocess: the engine in a fresh process per seed (default); "
        "cli: `recvmap fuzz --impl LIB --max-time BUDGET --seed N`",
    )
    p.add_argument(
        "--hang-timeout",
        type=float,
        default=3.0,
        help="seconds without progress that count as a hang (a detection)",
    )
    p.add_argument("--jobs", type=int, default=1, help="mutants fuzzed at once (default 1)")
    p.add_argument(
        "--check-equivalent",
        action="store_true",
        help="fuzz the mutants documented as equivalent too (a kill refutes them)",
    )
    p.add_argument(
        "--oracles",
        default=",".join(ORACLES),
        help="what may kill a mutant: fuzz (the differential engine), abort "
        "(QEMU's asserts fire, for mutants of an assert), stress (threads through "
        "the atomic helpers, qemu_ref/stress.c), asan (sanitized fuzzing); the "
        "others run on fuzzing survivors; default all",
    )
    p.add_argument(
        "--asan-budget",
        type=float,
        default=10.0,
        help="seconds of sanitized fuzzing per fuzzing survivor (default 10)",
    )
    p.add_argument(
        "--stress-budget",
        type=float,
        default=10.0,
        help="seconds of the concurrency programs per fuzzing survivor (default 10)",
    )
    p.add_argument("--json", type=Path, help="write every result and the figures here")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the kills recorded in --json FILE (same mutant, seeds and budget); "
        "everything else runs again",
    )
    p.add_argument(
        "--patch",
        type=Path,
        help='JSON {"file": [["old", "new"], ...]} applied to the reference and '
        "under every mutant (to measure on top of a pending fix)",
    )
    p.add_argument("--list", action="store_true", help="list the selected mutants and exit")
    p.add_argument(
        "--no-control", action="store_true", help="skip fuzzing the unmutated reference first"
    )
    p.add_argument(
        "--min-score", type=float, default=0.95, help="exit 1 below this score (default 0.95)"
    )
    p.add_argument(
        "--max-median",
        type=float,
        default=5.0,
        help="exit 1 above this median time to kill (default 5 s)",
    )


def select_mutants(args: argparse.Namespace) -> tuple[list[Mutant], list[Mutant]]:
    """(hand-written, systematic in sample order) mutants the arguments ask for."""
    from .mutants_hand import hand_mutants

    texts = source_texts()
    files = tuple(args.files.split(",")) if args.files else MUTABLE_FILES
    bad = [f for f in files if f not in MUTABLE_FILES]
    if bad:
        raise ValueError(f"unknown file {bad[0]!r}: one of {', '.join(MUTABLE_FILES)}")
    hand = [] if args.no_hand else [m for m in hand_mutants(texts) if m.file in files]
    system = shuffled(systematic_mutants(files), args.sample_seed) if args.sample else []
    if args.operators:
        ops = set(args.operators.split(","))
        hand = [m for m in hand if m.operator in ops or "hand" in ops]
        system = [m for m in system if m.operator in ops]
    if args.only:
        keys = set(args.only)
        everything = {m.key: m for m in [*hand_mutants(texts), *systematic_mutants()]}
        unknown = keys - set(everything)
        if unknown:
            raise ValueError(f"unknown mutant {sorted(unknown)[0]!r} (see --list)")
        hand = [everything[k] for k in args.only if everything[k].origin == "hand"]
        system = [everything[k] for k in args.only if everything[k].origin != "hand"]
    return hand, system


def _write_json(
    path: Path, opts: Options, results: Sequence[MutantResult], control: SeedRun | None
) -> None:
    data = {
        "schema": "recvmap-mutants/1",
        "config": {
            "seeds": list(opts.seeds),
            "budget": opts.budget,
            "backend": opts.backend,
            "layers": list(opts.layers),
            "widths": list(opts.widths),
        },
        "control": asdict(control) if control else None,
        "figures": figures(results, opts.budget),
        "results": [asdict(r) for r in results],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    """The body of ``recvmap mutants``: 0 when the targets are met, 1 otherwise, 2 on misuse."""
    try:
        seeds = tuple(int(s) for s in str(args.seeds).split(",") if s.strip())
        layers = tuple(x for x in str(args.layers).split(",") if x)
        if not seeds or any(x not in LAYERS for x in layers) or args.budget <= 0:
            raise ValueError("need seeds, a positive budget and layers among " + ", ".join(LAYERS))
        hand, system = select_mutants(args)
    except ValueError as err:
        print(f"recvmap mutants: {err}", file=sys.stderr)
        return 2
    if args.patch:
        BASE_EDITS.clear()
        BASE_EDITS.update(
            {f: [(o, n) for o, n in e] for f, e in json.loads(args.patch.read_text()).items()}
        )
    oracles = tuple(x for x in str(args.oracles).split(",") if x)
    if any(x not in ORACLES for x in oracles):
        print(f"recvmap mutants: oracles are {', '.join(ORACLES)}", file=sys.stderr)
        return 2
    opts = Options(
        seeds,
        args.budget,
        args.hang_timeout,
        args.backend,
        layers,
        args.check_equivalent,
        oracles=oracles,
        asan_budget=args.asan_budget,
        stress_budget=args.stress_budget,
    )
    if args.list:
        for m in hand + (system if args.sample < 0 or args.only else system[: args.sample]):
            print(f"{m.key:<26} {m.operator:<14} {m.label():<18} {m.note or m.diff()}")
        return 0
    previous: dict[str, MutantResult] = {}
    if args.resume and args.json and args.json.exists():
        saved = json.loads(args.json.read_text())
        cfg = saved.get("config", {})
        if (cfg.get("seeds"), cfg.get("budget"), cfg.get("backend")) == (
            list(opts.seeds),
            opts.budget,
            opts.backend,
        ):
            for d in saved.get("results", []):
                r = result_from_json(d)
                if r.verdict == "killed":
                    previous[f"{r.key}\0{r.diff}"] = r
    out = sys.stdout
    try:
        reference = {b: machine_code(build(None, b)) for b in opts.widths}
    except Stillborn as err:
        print(f"recvmap mutants: the reference does not build: {err}", file=sys.stderr)
        return 2
    control = None
    if not args.no_control:
        libs = {b: build(None, b) for b in opts.widths}
        runner = run_seed_cli if opts.backend == "cli" else run_seed
        control = runner(
            libs, opts.seeds[0], min(opts.budget, 30.0), opts.hang_timeout, opts.layers
        )
        if control.killed:
            print(
                f"recvmap mutants: the UNMUTATED reference already fails ({control.how}, "
                f"{control.layer}): {control.description}\nfix that first (or "
                "--no-control to measure anyway)",
                file=sys.stderr,
            )
            return 2
        counts = f" ({control.programs:,} programs, {control.ops:,} operations)"
        out.write(
            f"control: the reference survives {min(opts.budget, 30.0):g} s"
            f"{counts if control.programs else ''}\n"
        )
    # Phase 1: build; the sample is the first N systematic mutants that compile.
    prepared: list[tuple[Mutant, MutantResult, dict[int, Path]]] = []
    want = len(system) if args.sample < 0 or args.only else args.sample
    taken = 0
    for m in hand + system:
        if m.origin != "hand" and taken >= want:
            break
        res, libs = prepare(m, opts, reference)
        old = previous.get(f"{res.key}\0{res.diff}")
        if res.verdict == "pending" and old is not None and old.verdict != "stillborn":
            res, libs = old, {}
        if m.origin != "hand" and res.verdict != "stillborn":
            taken += 1
        prepared.append((m, res, libs))
    total = len(prepared)
    out.write(
        f"{total} mutants built ({sum(r.verdict == 'stillborn' for _, r, _ in prepared)} "
        f"stillborn); fuzzing with seeds {','.join(map(str, seeds))}, "
        f"{opts.budget:g} s each\n"
    )
    results: list[MutantResult] = []
    done = [0]

    def finish(res: MutantResult) -> None:
        done[0] += 1
        results.append(res)
        out.write(f"[{done[0]:>4}/{total}] {line_of(res)}\n")
        out.flush()
        if args.json:
            _write_json(args.json, opts, results, control)

    pending = [(m, r, libs) for m, r, libs in prepared if r.verdict == "pending"]
    for _, r, _ in prepared:
        if r.verdict != "pending":
            finish(r)
    deferred: list[tuple[MutantResult, dict[int, Path]]] = []
    if args.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as pool:
            work = pool.map(lambda p: fuzz_mutant(p[1], p[2], opts, p[0], deferred), pending)
            for res in work:
                finish(res)
    else:
        for m, r, libs in pending:
            finish(fuzz_mutant(r, libs, opts, m, deferred))
    if deferred:
        out.write(f"concurrency oracle for {len(deferred)} survivors (one at a time):\n")
        for res, libs in deferred:
            stress_deferred(res, libs, opts)
            out.write(f"       {line_of(res)}\n")
            out.flush()
        if args.json:
            _write_json(args.json, opts, results, control)
    fig = figures(results, opts.budget)
    out.write(summary_text(results, opts, fig) + "\n")
    if args.json:
        _write_json(args.json, opts, results, control)
        out.write(f"results: {args.json}\n")
    ok = (
        (fig["score"] or 0) >= args.min_score
        and (fig["median_ttk"] is not None and fig["median_ttk"] <= args.max_median)
        and not fig["equivalence_refuted"]
    )
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--worker":
        return _worker(json.loads(argv[1]))
    if len(argv) == 2 and argv[0] == "--abort-oracle":
        return _abort_child(json.loads(argv[1]))
    parser = argparse.ArgumentParser(prog="recvmap mutants", description=__doc__.split("\n\n")[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
