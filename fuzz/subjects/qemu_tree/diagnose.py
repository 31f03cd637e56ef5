# SPDX-License-Identifier: GPL-2.0-or-later
"""One line out of a compiler's or linker's log: which function calls what nobody defines.

A tree's code that calls a function neither the tree's compiled files nor our glue define
is the commonest way an untried release breaks (v3.1.0's ``ram_load_cleanup`` calls
``ramblock_is_pmem`` and ``pmem_persist``). The build makes both halves of that an error:
``-Werror=implicit-function-declaration`` when the call is compiled, ``-Wl,-z,defs`` (or
the static link of a host's driver) when it is linked, so it can never become a load
error. ``missing_call(log)`` reads either diagnostic and names the caller, the callee and
the caller's file:line; ``first_problem(log)`` is that line, or the first error of the
log, for ``BuildError`` and ``RamBuildError``.

GCC writes ``FILE: In function 'CALLER':`` then ``FILE:LINE:COL: error: implicit
declaration of function 'CALLEE'``; GNU ld writes ``OBJ: in function `CALLER':`` then
``FILE:LINE: undefined reference to `CALLEE'`` (FILE:LINE when the object has debug
information: the tree's units are compiled with ``-g``). The tree's ram functions are
renamed ``qtram_q_NAME`` in the generated unit; the prefix is removed from the names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RENAMED = "qtram_q_"  # ram.py's prefix of the tree's functions in the generated unit

_Q = "['‘`’]"  # GCC quotes with ‘’ in a UTF-8 locale, ' otherwise; ld with ` and '
_CC_FUNCTION = re.compile(rf"^(?P<file>[^:\s]+): In function {_Q}(?P<fn>\w+){_Q}")
_IMPLICIT = re.compile(
    rf"^(?P<file>[^:\s]+):(?P<line>\d+):(?:\d+:)? (?:error|warning): implicit declaration "
    rf"of function {_Q}(?P<callee>\w+){_Q}"
)
_LD_FUNCTION = re.compile(rf"in function {_Q}(?P<fn>\w+){_Q}")
_UNDEFINED = re.compile(
    rf"^(?:.*?(?P<file>[^:\s]+):(?P<line>\d+): )?(?:.*: )?undefined reference to "
    rf"{_Q}(?P<callee>\w+){_Q}"
)


@dataclass(frozen=True)
class MissingCall:
    """``caller`` (at ``path``:``line``, path as the log gives it) calls ``callee``, which
    nothing defines; ``linked``: found by the linker rather than the compiler."""

    caller: str
    callee: str
    path: str
    line: int
    linked: bool

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def text(self) -> str:
        what = "is defined nowhere" if self.linked else "is declared nowhere"
        return (
            f"{self.where}: {self.caller} calls {self.callee}, which {what} in the tree's "
            "compiled files or recvmap's glue"
        )


def _name(symbol: str) -> str:
    return symbol.removeprefix(RENAMED)


def missing_call(log: str) -> MissingCall | None:
    """The first call of an undeclared or undefined function in a compiler/linker log."""
    caller = "?"
    for raw in log.splitlines():
        line = raw.strip()
        if m := _CC_FUNCTION.match(line):
            caller = _name(m["fn"])
        elif m := _IMPLICIT.match(line):
            return MissingCall(caller, m["callee"], m["file"], int(m["line"]), False)
        elif m := _LD_FUNCTION.search(line):
            caller = _name(m["fn"])
        elif m := _UNDEFINED.match(line):
            path = m["file"] or "?"
            return MissingCall(caller, m["callee"], path, int(m["line"] or 0), True)
    return None


def first_error(log: str) -> str:
    """The first line of ``log`` that reports an error (else its first line)."""
    for line in log.splitlines():
        if "error" in line or "fatal" in line:
            return line.strip()
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[0].strip() if lines else "the compiler failed without a message"


def first_problem(log: str) -> str:
    """``missing_call(log)``'s line when there is one, else ``first_error(log)``."""
    found = missing_call(log)
    return found.text() if found is not None else first_error(log)
