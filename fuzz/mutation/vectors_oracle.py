# SPDX-License-Identifier: GPL-2.0-or-later
"""The shipped vectors as an oracle of ``recvmap mutants`` (``--oracles vectors``).

The question of issue 23: what do the regression vectors catch without the fuzzer? A QEMU
developer running ``make check-unit`` with the GTest export, or a user's ``pytest
--recvmap-impl``, gets only them. This oracle replays every vector of ``tests/vectors``
that our C can run here (both word widths, little-endian, at the newest release: what
``recvmap replay --impl LIB`` runs) on the mutant, through the same check as a replay
(``files.check_impl``: the model beside it after every operation, then the vector's
results, words and digests), in a fresh process. The first vector that fails kills the
mutant (cause: divergence); a crash or a hang is re-run alone with only the vector that
was running, in a fresh process, and counts only if it comes back there, as for fuzzing.

``mutants.vectors_oracle`` runs this module's ``argv`` and reads what it prints. In
``recvmap mutants`` the vectors are a second pipeline beside the fuzzer's: the replay
takes the fuzzer's place, the other oracles stay (QEMU's asserts, the concurrency
programs; the sanitized run replays the vectors under ASan instead of fuzzing). Each
mutant gets a verdict from each pipeline, and the summary gives both scores
(``summary_lines``), and the replay's alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from recvmap.pymodel.releases import DEFAULT_RELEASE
from recvmap.qemu_ref import load

from ..subjects.impls import Subject
from ..vectors.files import check_impl, iter_files, load_file, vectors_dir


def cases() -> list[Any]:
    """The vectors our C can run here, at the newest release, in file order."""
    out = []
    for path in iter_files([vectors_dir()]):
        for case in load_file(path):
            g = case.group
            if g["big_endian"] or g.get("sender_big_endian") or not case.covers(DEFAULT_RELEASE):
                continue
            out.append(case)
    return out


def _child(config: dict[str, Any]) -> int:
    """Replay the vectors (all, or the ones named) on the libraries; print ``case NAME``
    before each and ``result {json}`` at the end (the first failure, or none)."""
    libs = {int(b): Path(p) for b, p in config["libs"].items()}
    subject = Subject(libraries={b: load(p, b) for b, p in libs.items()})
    wanted = set(config.get("only") or [])
    t0 = time.monotonic()
    ran = 0
    for case in cases():
        if wanted and case.name not in wanted:
            continue
        print(f"case {case.name}", flush=True)
        status, message = check_impl(case, subject)
        ran += status == "pass"
        if status == "fail":
            found = {"killed": True, "vector": case.name, "description": message[:300]}
            break
    else:
        found = {"killed": False}
    found.update(time=time.monotonic() - t0, ran=ran)
    print("result " + json.dumps(found), flush=True)
    return 0


def argv(config: dict[str, Any]) -> list[str]:
    """The command line of a fresh replay process (``config``: libs, and only)."""
    return [sys.executable, "-m", "recvmap.fuzz.mutation.vectors_oracle", json.dumps(config)]


def main(argv: list[str]) -> int:
    return _child(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
