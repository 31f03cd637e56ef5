# SPDX-License-Identifier: GPL-2.0-or-later
"""The exit statuses of the ``recvmap`` commands: one meaning each, stated once.

``TABLE`` is the one statement: every command's ``--help`` epilog (``epilog()``) and the
README's table are made from it (tests/test_exit_codes.py holds the README to it). A CI
job can tell "your implementation is wrong" (1) from "this file is broken" (2) and from
"recvmap is broken" (3).

A finding is always confirmed by a re-run alone (a fresh process that runs nothing else)
before it is reported with status 1; a job stopped at --max-time is never a finding.
``recvmap history --bisect`` speaks git bisect run's language instead (its own epilog).
"""

from __future__ import annotations

import signal
import textwrap

CLEAN = 0
FINDING = 1
BAD_INPUT = 2
TOOL_FAILED = 3


def interrupted(signum: int) -> int:
    """The status of a command stopped by ``signum`` (the shell's 128 + N)."""
    return 128 + int(signum)


TABLE: tuple[tuple[int, str], ...] = (
    (CLEAN, "clean: nothing found (a job stopped at --max-time is never a finding)"),
    (
        FINDING,
        "a finding about the implementation (a divergence, a crash, a hang), confirmed "
        "by a re-run alone before it is reported",
    ),
    (BAD_INPUT, "bad arguments or bad input (a malformed vector file, an unreadable path)"),
    (TOOL_FAILED, "recvmap itself failed (an internal error: one line, the log kept)"),
    (interrupted(signal.SIGINT), "interrupted by Ctrl-C (SIGINT)"),
    (interrupted(signal.SIGTERM), "interrupted by SIGTERM (a CI timeout)"),
)


def epilog(extra: str = "") -> str:
    """The exit-status section of a command's ``--help`` (``extra``: what the command adds)."""
    lines = ["exit status:"]
    for code, meaning in TABLE:
        lines += textwrap.wrap(
            meaning, 78, initial_indent=f"  {code:<3}  ", subsequent_indent=" " * 7
        )
    return "\n".join(lines) + ("\n" + extra if extra else "") + "\n"


def markdown() -> str:
    """The table as the README shows it."""
    rows = ["| status | meaning |", "|---|---|"]
    rows += [f"| {code} | {meaning} |" for code, meaning in TABLE]
    return "\n".join(rows) + "\n"
