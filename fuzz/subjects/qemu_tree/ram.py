# SPDX-License-Identifier: GPL-2.0-or-later
"""The received-bitmap functions of a QEMU tree, compiled as QEMU wrote them inside our glue.

``ram_units(root)`` extracts the definitions (``extract.py``) and writes ONE C unit: our glue
prelude (``glue/ram/ram_glue.h``), then the tree's own text of every function and macro found,
each preceded by a ``#line`` naming its file:line in the tree (so a compile error names the
tree's line and, through ``RamBuildError``, the function), then the glue side of the bridge
(``glue/ram/ram_bridge.c.inc``). The tree's functions are renamed ``qtram_q_NAME`` by macro
so they cannot clash with the ABI names; ``glue/ram/ram_abi.c`` exports the ABI of
``qemu_ref_ram.h`` over them. Together with the tree's util/bitmap.c and util/bitops.c (built
by ``build.py``) this is one library loaded exactly like an ``--impl`` library.

An ABI function whose QEMU function the tree lacks is not exported (``QTRAM_HAVE_*``), so it is
reported absent and its layer skipped. A function the tree's rules should have (the model
answers: ``Rules.has_function``) but the tree lacks, or one that does not compile, is a
``RamBuildError`` naming the function.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recvmap.pymodel.releases import Rules
from recvmap.qemu_ref.loader import package_file

from . import compiler
from .diagnose import missing_call
from .extract import RAM_FUNCTIONS, Definition, ExtractError, Extraction, extract
from .tree import Origin, QemuTree

GLUE_RAM = Path(__file__).parent / "glue" / "ram"
UNIT_NAME = "qtram_unit.c"
ABI_UNIT = GLUE_RAM / "ram_abi.c"

# Our C is -Werror; the tree's code is QEMU's and is compiled with its warnings shown, not fatal.
TREE_WARNINGS = ("-Wall", "-Wno-unused-parameter", "-Wno-unused-function", "-Wno-unused-variable")


class RamBuildError(RuntimeError):
    """One clear line: the function (and tree file:line) that is missing or does not compile."""

    def __init__(self, function: str, message: str) -> None:
        super().__init__(message)
        self.function = function


@dataclass
class RamUnits:
    """The C of the ram layer for one tree: the generated unit, defines and include dirs."""

    extraction: Extraction
    unit: str
    defines: list[str] = field(default_factory=list)
    include_dirs: list[Path] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # ABI functions the release lacks

    @property
    def digest(self) -> str:
        glue = sorted((p.name, p.read_bytes()) for p in GLUE_RAM.iterdir() if p.is_file())
        return hashlib.sha256(repr((self.unit, self.defines, glue)).encode()).hexdigest()


def expected_absent(rules: Rules | None) -> set[str]:
    """The ABI functions of the ram layer the rules lack (the model says which)."""
    names = {w.abi for w in RAM_FUNCTIONS if w.abi is not None}
    if rules is None:
        return names
    return {name for name in names if not rules.has_function(name)}


def _abi_present(ex: Extraction) -> dict[str, Definition]:
    """ABI function -> the tree's definition implementing it (postcopy needs two)."""
    out: dict[str, Definition] = {}
    for w in RAM_FUNCTIONS:
        assert w.abi is not None
        d = ex.get(w.name)
        if d is None:
            continue
        if w.abi == "postcopy_place_page" and "postcopy_place_page" not in ex:
            continue
        out[w.abi] = d
    return out


def check_complete(ex: Extraction, rules: Rules | None) -> list[str]:
    """The ABI functions absent from the tree as its rules expect; else RamBuildError."""
    present = _abi_present(ex)
    absent = [w.abi for w in RAM_FUNCTIONS if w.abi is not None and w.abi not in present]
    allowed = expected_absent(rules)
    for name in absent:
        if name not in allowed:
            where = " or ".join(next(w.files for w in RAM_FUNCTIONS if w.abi == name))
            raise RamBuildError(
                name, f"the tree lacks {name} (looked in {where}); {rules} should have it"
            )
    return absent


def ram_units(tree: QemuTree | Path | str, ex: Extraction | None = None) -> RamUnits:
    """Extract the tree's functions and write the unit that compiles them in our glue."""
    if not isinstance(tree, QemuTree):
        tree = QemuTree.open(tree)
    root = tree.root
    ex = ex or extract(root)
    absent = check_complete(ex, tree.rules)
    defs = ex.ordered()
    defines = [f"QTRAM_HAVE_{d.name}" for d in defs]
    reload = ex.get("ram_dirty_bitmap_reload")
    if reload is not None and any("Error" in p for p in reload.params):
        defines.append("QTRAM_RELOAD_ERRP")
    if reload is not None and reload.return_type == "bool":
        defines.append("QTRAM_RELOAD_BOOL")  # 88577f3242 (7aa6070d09 added Error ** to an int)
    text = "\n".join(d.text for d in defs)
    traces = sorted(set(re.findall(r"\btrace_\w+", text)))
    lines = [
        "/* Generated by recvmap from a QEMU tree at build time; not stored anywhere. */",
        '#include "ram_glue.h"',
        *(f"#define {t}(...) qtram_noop()" for t in traces),
        *(f"#define {d.name} qtram_q_{d.name}" for d in defs if d.kind == "function"),
    ]
    for d in defs:
        # __func__ must stay QEMU's name: error texts print it
        if d.kind == "function":
            lines.append(f'#define __func__ "{d.name}"')
        lines.append(f'#line {d.line} "{d.path}"')
        lines.append(d.text)
        if d.kind == "function":
            lines.append("#undef __func__")
    lines.append(f'#line {len(lines) + 2} "{UNIT_NAME}"')
    lines.append('#include "ram_bridge.c.inc"')
    return RamUnits(
        ex,
        "\n".join(lines) + "\n",
        defines,
        [GLUE_RAM, root / "include"],
        absent,
    )


def function_at(ex: Extraction, path: str, line: int) -> Definition | None:
    """The extracted definition covering a tree file:line."""
    for d in ex.found.values():
        if d.path == path and d.line <= line < d.line + d.text.count("\n") + 1:
            return d
    return None


_DIAG = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<msg>.*)$")


def explain_failure(ex: Extraction, stderr: str, mine: list[Path] | None = None) -> RamBuildError:
    """The first compile error, as one line naming the tree's function and file:line; the
    compiler's words only about a file of the build (``mine``: ``compiler.quoted``)."""
    missing = missing_call(stderr)
    if missing is not None:
        return RamBuildError(missing.caller, missing.text())
    for raw in stderr.splitlines():
        m = _DIAG.match(raw.strip())
        if not m:
            continue
        path, line = m["file"], int(m["line"])
        for known in ex.found.values():
            if path.endswith(known.path):
                path = known.path  # the tree's text, placed by #line
                break
        else:
            if mine and not compiler.under(Path(path), mine):
                return RamBuildError("the ram glue", compiler.quoted(raw, mine))
        d = function_at(ex, path, line)
        name = d.name if d else "the ram glue"
        return RamBuildError(
            name,
            f"{name} ({path}:{line}) does not compile in the ram glue: "
            + compiler.quoted(m["msg"], ()),
        )
    first = stderr.strip().splitlines()[0] if stderr.strip() else "no diagnostics"
    return RamBuildError(
        "the ram glue", f"the ram functions do not compile: {compiler.quoted(first, mine or ())}"
    )


# --- the units of a tree build (build.py's extra_units) ------------------------------------

# The last problem of each tree's ram part (by root): the bitmap layer builds without it.
_PROBLEMS: dict[Path, RamBuildError] = {}


def ram_problem(root: Path | str) -> RamBuildError | None:
    """Why the ram part of the tree at ``root`` was left out of its build, if it was."""
    return _PROBLEMS.get(Path(root).resolve())


@dataclass(frozen=True)
class BuildEnv:
    """What ``build.py`` tells the ram part about its build (build imports ram, not back)."""

    config_host: str  # the generated config-host.h of the tree
    cache: Path  # the build cache of trees
    qemu_cflags: tuple[str, ...]  # QEMU's code as QEMU builds it
    glue_include: Path  # build's glue/include (the osdep.h stand-in)


def _syntax_check(units: RamUnits, env: BuildEnv) -> None:
    """Compile the generated unit once per content (memo in the cache); RamBuildError."""
    cache = env.cache
    flags = repr((env.qemu_cflags, TREE_WARNINGS, env.config_host)).encode()
    key = hashlib.sha256(units.digest.encode() + flags).hexdigest()
    ok = cache / "ram-ok" / key[:24]
    if ok.exists():
        return
    if shutil.which("gcc") is None:
        raise RamBuildError("the ram glue", "compiler 'gcc' not found")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".ramcheck-") as tmp:
        work = Path(tmp)
        (work / "config-host.h").write_text(env.config_host)
        (work / UNIT_NAME).write_text(units.unit)
        cmd = [
            os.environ.get("CC", "gcc"),
            *env.qemu_cflags,
            *TREE_WARNINGS[1:],
            "-fsyntax-only",
            *(f"-D{d}" for d in units.defines),
            f"-I{GLUE_RAM}",
            f"-I{env.glue_include}",
            f"-I{work}",
            f"-I{units.extraction.root / 'include'}",
            str(work / UNIT_NAME),
        ]
        try:
            status, _, stderr = compiler.run(cmd)
        except compiler.CompilerStuck as err:
            raise RamBuildError("the ram glue", str(err)) from None
        mine = [units.extraction.root, work, GLUE_RAM, env.glue_include]
        if status != 0:
            raise explain_failure(units.extraction, stderr, mine)
    ok.parent.mkdir(parents=True, exist_ok=True)
    ok.touch()


def origins_of(units: RamUnits) -> list[tuple[str, str, str, int, str]]:
    """(ABI function, kind, path, line, note) of every qemu_ref_ram.h function in a build."""
    present = _abi_present(units.extraction)
    out: list[tuple[str, str, str, int, str]] = []
    for w in RAM_FUNCTIONS:
        assert w.abi is not None
        d = present.get(w.abi)
        if d is not None and w.abi == "postcopy_place_page":
            d = units.extraction.get(w.abi) or d  # its own line, not its copy helper's
        if d is None:
            out.append((w.abi, "absent", "", 0, ""))
        else:
            out.append((w.abi, "tree", d.path, d.line, ""))
    for abi, names in (
        ("qemu_ram_block_by_name", ("qemu_ram_block_by_name",)),
        ("ramblock_is_ignored", ("migrate_ram_is_ignored", "ramblock_is_ignored")),
    ):
        d = next((units.extraction.get(n) for n in names if n in units.extraction), None)
        if d is not None:
            out.append((abi, "tree", d.path, d.line, ""))
        else:
            out.append((abi, "glue", "", 0, "recvmap's rule: not migratable or ignored"))
    for name in (
        "qref_set_target_page_bits",
        "qref_set_host_page_size",
        "qemu_target_page_bits",
        "qemu_target_page_size",
        "qref_ram_last_error",
        "qref_ram_clear_error",
    ):
        out.append((name, "glue", "", 0, "recvmap's ram glue"))
    out.append(
        (
            "postcopy_ram_supported_by_host",
            "glue",
            "",
            0,
            "QEMU probes the kernel; only the page-size rule is kept",
        )
    )
    return out


def extra_units(tree: QemuTree, env: BuildEnv) -> list[dict[str, Any]]:
    """The ram part of a tree build: the generated unit and the ABI unit (as the keyword
    arguments of build.py's ``Unit``, so that build imports this module and not back), or
    nothing.

    A tree whose ram part cannot be built (a function its release has is missing, or
    does not compile) still builds its bitmap layer; ``ram_problem(root)`` keeps the one
    line saying why, for the command to report (exit 2 when a ram layer was asked for,
    an explicit skip otherwise).
    """
    root = tree.root.resolve()
    _PROBLEMS.pop(root, None)
    try:
        units = ram_units(tree)
        _syntax_check(units, env)
    except RamBuildError as err:
        _PROBLEMS[root] = err
        return []
    except ExtractError as err:  # no parser installed, or a file that cannot be read
        _PROBLEMS[root] = RamBuildError("the ram functions", str(err))
        return []
    rows = origins_of(units)
    origins = tuple(Origin(f, k, p, n, note) for f, k, p, n, note in rows)
    provided = tuple(f for f, k, *_ in rows if k != "absent")
    defines = tuple(f"-D{d}" for d in units.defines)
    return [
        {
            "name": "qtram_unit",
            "text": units.unit,
            "qemu": True,
            "cflags": (*TREE_WARNINGS[1:], *defines, f"-I{GLUE_RAM}"),
            "provides": provided,
            "origins": origins,
        },
        {
            "name": "qtram_abi",
            "source": ABI_UNIT,
            "qemu": False,
            "cflags": (*defines, f"-I{GLUE_RAM}", f"-I{package_file('qemu_ref_ram.h').parent}"),
        },
    ]
