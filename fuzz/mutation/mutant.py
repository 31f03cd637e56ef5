# SPDX-License-Identifier: GPL-2.0-or-later
"""One mutant of the C reference: the record both the systematic operators (mutants.py) and
the hand-written mutants (mutants_hand.py) produce."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """One edited C reference: ``edits`` are (file, exact text, replacement), each unique."""

    key: str  # stable name: systematic "file:hash", hand-written "hand:name"
    operator: str
    file: str
    line: int  # 1-based line of the (first) edit in the current sources
    edits: tuple[tuple[str, str, str], ...]
    before: str  # the mutated line(s), for people
    after: str
    origin: str = "systematic"  # or "hand"
    note: str = ""
    function: str = ""  # the function (or "#define NAME") the edit is in, when known

    def build_edits(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for file, old, new in self.edits:
            out.setdefault(file, []).append((old, new))
        return out

    def label(self) -> str:
        return f"{self.file}:{self.line}"

    def diff(self) -> str:
        return f"{self.before.strip()}  ->  {self.after.strip()}"
