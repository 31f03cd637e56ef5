# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``recvmap`` command.

    recvmap fuzz [options]        differential fuzzing campaign (no options: the main job,
                                  about 60 s over every layer, architecture, page size and
                                  word width)
    recvmap replay FILE...        replay vector files or reproducers on the model and a library
                                  (--host NAME: on emulated hosts, --qemu-tree DIR: QEMU's code)
    recvmap vectors export DIR    write the regression vectors (and their schema) to DIR
    recvmap corpus merge OUT IN...  merge corpus folders (libFuzzer -merge=1)
    recvmap arches                the architecture and host tables
    recvmap releases              every rule that changed between QEMU releases, with commits
    recvmap qemu-tree DIR         a QEMU tree's rules and where each ABI function comes from
    recvmap history REPO [RANGE]  judge every commit of a QEMU git repository that changes the
                                  bitmap, each by the rules its history contains (--bisect:
                                  for git bisect run)
    recvmap mutants [options]     the fuzzer's mutation score and time to kill (docs/mutants.md)

Exit status (``campaign.exit_codes``, in every command's --help): 0 clean, 1 a confirmed
finding about the implementation, 2 bad arguments or bad input, 3 recvmap itself failed,
130/143 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from recvmap.pymodel import arch
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import parse_rules, render_table
from recvmap.qemu_ref import LibraryError

from .campaign import exit_codes
from .campaign.harness_env import HarnessConfig
from .campaign.launch import atheris_available, engine_of
from .campaign.options import INT_MAX, MONTH, SEED_MAX, help_range, number
from .mutation.options import add_parser as add_mutants_parser

# The commands import the rooms that do their work when they run (each ``# lazy: command``
# below): `recvmap --help`, `arches` and `releases` import the model, the library loader
# and the parsing above only. Measured as whole `python -c "import ..."` processes, least
# of 15 runs: 0.14 s with this module, 0.38 s with every room the commands import.

DEFAULT_TIMEOUT = HarnessConfig.timeout  # seconds per input (libFuzzer -timeout)

LAYERS = ("bitmap", "ram", "recovery")
FUZZ_EPILOG = """\
a finding's minimized program is written to --out as a vector file, with the command
that replays it; before it is reported, that command is run alone in a fresh process
(a crash's input is re-run alone) and must fail. What a re-run does not confirm is
listed as NOT CONFIRMED, never a finding. A job stopped at --max-time is never one.

hangs: an input that outruns --timeout is re-run alone, in a fresh process, for
max(4 x --timeout, 30 s) (less when --max-time has less left). Still running: a HANG
(exit 1; the summary says when the check was cut short). It completes: SLOW, not a
finding (listed with its time and reproducer, exit 0; --fail-on-slow: exit 1), and
the job starts again with another seed (skipping known slow inputs). Confirming and
writing a finding end by --max-time + --timeout + 2 s; a step cut short is named in
the summary.

native coverage (--native): our C is built with clang
-fsanitize=fuzzer-no-link,address,undefined into the build cache and the harnesses
run with atheris' asan_with_fuzzer.so preloaded, so the C library's edges guide the
fuzzer and ASan/UBSan reports stop it (needs clang-16 and libclang-rt-16-dev).

The harnesses also run alone, with libFuzzer's flags and modes (-fork, -merge):
  fuzz/campaign/harness_bitmap.py -runs=1000 corpus/
  RECVMAP_WORD_BITS=32 RECVMAP_IMPL=./libmine.so fuzz/campaign/harness_ram.py -max_total_time=60
"""


class UsageError(Exception):
    """Bad arguments: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one clear line (argparse prints the whole usage)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _release(value: str) -> str:
    """A QEMU release tag ("v8.2.0" or "8.2.0") or a rule set ("v2.12.0+recovery_stream"),
    checked against what the model knows; the rules' name."""
    try:
        return parse_rules(value).name
    except PreconditionError as err:
        raise argparse.ArgumentTypeError(err.rule) from None


def _csv(kind: str, allowed: Sequence[str] | None = None) -> Callable[[str], tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        if not items:
            raise argparse.ArgumentTypeError(f"empty {kind} list")
        if allowed is not None:
            bad = [v for v in items if v not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {', '.join(bad)}; choose from {', '.join(allowed)}"
                )
        return items

    parse.__name__ = kind
    return parse


MAX_JOBS_PER_CPU = 4
MAX_WORKERS = 1024  # asked for; the machine's cores and memory cap it further (workers.cap)
MAX_TIMEOUT = 3600.0  # seconds one input or program may take


def _jobs(value: str) -> int:
    cpus = os.cpu_count() or 1
    v = int(number("--jobs", int, 1, INT_MAX)(value))
    if v > MAX_JOBS_PER_CPU * cpus:
        raise argparse.ArgumentTypeError(
            f"--jobs {value}: at most {MAX_JOBS_PER_CPU} per CPU ({MAX_JOBS_PER_CPU * cpus} here)"
        )
    return v


_jobs.range = f"1 .. {MAX_JOBS_PER_CPU} per CPU"  # type: ignore[attr-defined]


def _seconds(option: str, high: float = MAX_TIMEOUT) -> Callable[[str], float]:
    return number(option, float, 0, high, above=True)


def _count(option: str, high: int = INT_MAX) -> Callable[[str], float]:
    return number(option, int, 1, high)


def _seed_type(option: str = "--seed") -> Callable[[str], float]:
    return number(option, int, 0, SEED_MAX)


def _probe_dir(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (None: one can)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".recvmap-probe-", dir=directory)
    except OSError as err:
        return err.strerror or str(err)
    os.close(fd)
    os.unlink(name)
    return None


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a folder the command writes into (None: it can)."""
    if path.exists() and not path.is_dir():
        return "not a folder"
    base = _existing_ancestor(path)
    if not base.is_dir():
        return f"{base} is not a folder"
    why = _probe_dir(base)
    return f"cannot write in {base}: {why}" if why else None


def check_dir_option(option: str, path: Path) -> None:
    """A folder the command will write into: a folder already, or creatable. UsageError."""
    why = _dir_problem(path)
    if why:
        raise UsageError(f"{option} {path}: {why}")


def check_file_option(option: str, path: Path) -> None:
    """A file the command will write at the end: checked now, not after the work."""
    if path.is_dir():
        why: str | None = "is a folder"
    elif path.exists():
        why = None if os.access(path, os.W_OK) else "not writable"
    else:
        why = _dir_problem(path.parent)
    if why:
        raise UsageError(f"{option} {path}: {why}")


def _word_bits(value: str) -> tuple[int, ...]:
    if value == "both":
        return (64, 32)
    try:
        bits = tuple(int(v) for v in value.split(","))
    except ValueError:
        bits = ()
    if not bits or any(b not in (32, 64) for b in bits):
        raise argparse.ArgumentTypeError(f"word bits are 64, 32 or both, not {value!r}")
    return bits


def _arches() -> list[str]:
    return [t.name for t in arch.TARGETS]


def _add_impl(p: argparse.ArgumentParser) -> None:
    """--impl: the same option, with the same meaning, in every command that runs C."""
    p.add_argument(
        "--impl",
        type=Path,
        default=None,
        metavar="PATH",
        help="a shared library exporting QEMU's symbol names (default: ours)",
    )


def _add_actions(
    sub: argparse._SubParsersAction[Parser], name: str, *, help: str, description: str
) -> argparse._SubParsersAction[Parser]:
    """A command ``name`` whose ACTION is a subcommand, stored in ``args.<name>_command``."""
    group = sub.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", parser_class=Parser)


def build_parser() -> Parser:
    p = Parser(
        prog="recvmap",
        description="Model of QEMU's migration received-page bitmap: "
        "differential fuzzing of C implementations against the model.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    f = sub.add_parser(
        "fuzz",
        help="run a differential fuzzing campaign (default: ~60 s, all)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Coverage-guided differential fuzzing (atheris) of an "
        "implementation against the model. Without options: about 60 seconds "
        "over every layer, architecture, host page and hugepage size and both "
        "word widths.",
        epilog=exit_codes.epilog() + "\n" + FUZZ_EPILOG,
    )
    f.add_argument(
        "--target",
        type=_csv("layer", LAYERS),
        default=LAYERS,
        help="layers: bitmap, ram, recovery (comma-separated; default all)",
    )
    f.add_argument(
        "--arch",
        type=_csv("architecture", _arches()),
        default=None,
        help="QEMU targets for the ram layers (comma-separated; default all)",
    )
    f.add_argument(
        "--word-bits",
        type=_word_bits,
        default=None,
        help="64, 32 or both (default: every width of the library)",
    )
    f.add_argument(
        "--max-time",
        type=_seconds("--max-time", MONTH),
        default=60.0,
        help=f"seconds for the whole campaign, {help_range(_seconds('', MONTH))} (default 60)",
    )
    f.add_argument(
        "--runs",
        type=_count("--runs"),
        default=None,
        help=f"programs per job (libFuzzer -runs), {help_range(_count(''))}",
    )
    f.add_argument(
        "--seed",
        type=_seed_type(),
        default=None,
        help=f"random seed, {help_range(_seed_type())} (default: time)",
    )
    f.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="keep the corpus in DIR/<layer>-<bits> (reused by later runs)",
    )
    f.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="write a machine-readable summary to FILE (schema: recvmap-fuzz-summary v1)",
    )
    f.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the jobs as JUnit XML test cases to FILE (for CI systems)",
    )
    _add_impl(f)
    f.add_argument(
        "--qemu-tree",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="fuzz a QEMU source tree's own code (built with our glue); twice: two trees "
        "against each other, the model as referee",
    )
    f.add_argument(
        "--host",
        type=_csv("host"),
        default=(),
        metavar="NAME",
        help="also fuzz our C on emulated hosts (fuzz.subjects.hosts; 'all': every available one)",
    )
    f.add_argument(
        "--native",
        action="store_true",
        help="build our C with clang sanitizers; its edges guide the fuzzer",
    )
    f.add_argument(
        "--out",
        type=Path,
        default=Path("fuzz-out"),
        help="folder for reproducer vector files (default fuzz-out)",
    )
    f.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        help="harness processes at a time, 1 .. 4 per CPU (default: every job at once, "
        "time-sliced by the OS, so every layer is fuzzed from the first second)",
    )
    f.add_argument(
        "--workers",
        type=_count("--workers", MAX_WORKERS),
        default=1,
        help=f"processes per job sharing the job's corpus (libFuzzer fork mode; needs "
        f"atheris), {help_range(_count('', MAX_WORKERS))}; capped by this machine's cores "
        "and memory",
    )
    f.add_argument(
        "--engine",
        choices=("auto", "atheris", "random"),
        default="auto",
        help="atheris (coverage-guided) or random inputs (default: atheris if installed)",
    )
    f.add_argument(
        "--release",
        type=_release,
        default=None,
        help="the QEMU release the model follows (a tag such as v8.2.0; default: the newest)",
    )
    f.add_argument("--quiet", action="store_true", help="no progress line")
    f.add_argument(
        "--timeout",
        type=_seconds("--timeout"),
        default=DEFAULT_TIMEOUT,
        help=f"seconds one input may take, {help_range(_seconds(''))}: longer is a HANG, its "
        f"input saved (libFuzzer -timeout; default {DEFAULT_TIMEOUT:g})",
    )
    f.add_argument(
        "--strict",
        action="store_true",
        help="a run in which a job compared nothing exits 1 (default: a warning line)",
    )
    f.add_argument(
        "--fail-on-slow",
        action="store_true",
        help="a SLOW input (longer than --timeout, completes when re-run alone) exits 1 "
        "(default: listed, exit 0)",
    )

    r = sub.add_parser(
        "replay",
        help="replay vector files or reproducers",
        description="Replay vector files, reproducers or bare programs on the "
        "model and an implementation; print the first divergence of each.",
    )
    r.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _add_impl(r)
    r.add_argument(
        "--qemu-tree",
        type=Path,
        default=None,
        metavar="DIR",
        help="replay on a QEMU source tree's own code (built with our glue)",
    )
    r.add_argument(
        "--host",
        type=_csv("host"),
        default=(),
        metavar="NAME",
        help="replay on emulated hosts (comma-separated, or 'all'; `recvmap fuzz --host` has "
        "the same names): our C, or with --qemu-tree the tree's code, cross-built for each "
        "host and run under qemu-user. A vector of the host's word width and the other byte "
        "order runs with the host's byte order (its memory read back in the vector's); one "
        "of another width is skipped, naming both layouts. A recovery stream's sender runs "
        "on a host of its own layout",
    )
    r.add_argument("--word-bits", type=_word_bits, default=None)
    r.add_argument(
        "--release",
        type=_release,
        default=None,
        help="replay at this QEMU release (default: a reproducer's own, else the newest); "
        "vectors whose release range does not hold it are skipped",
    )
    r.add_argument(
        "--model-only",
        action="store_true",
        help="check the vectors' expectations against the model only",
    )
    r.add_argument("-v", "--verbose", action="store_true", help="print passing tests too")
    r.add_argument(
        "--timeout",
        type=_seconds("--timeout"),
        default=DEFAULT_TIMEOUT,
        help=f"seconds a program may run on the implementation, {help_range(_seconds(''))}: "
        f"longer is a HANG (default {DEFAULT_TIMEOUT:g})",
    )
    r.add_argument(
        "--strict",
        action="store_true",
        help="a replay that ran no test exits 1 (default: a warning line)",
    )
    _add_caps(r)
    r.add_argument(
        "--layer",
        choices=LAYERS,
        default=None,
        help="FILEs that are raw libFuzzer inputs (crash-*, timeout-*, corpus files) are "
        "decoded by this layer's harness into vector files first",
    )
    r.add_argument(
        "--arch",
        type=_csv("architecture", _arches()),
        default=None,
        help="with --layer: the --arch the fuzzing run had",
    )
    r.add_argument(
        "--out",
        type=Path,
        default=Path("fuzz-out"),
        help="with --layer: folder for the vector files of raw inputs (default fuzz-out)",
    )

    vsub = _add_actions(
        sub,
        "vectors",
        help="regression vectors",
        description="The regression vector files (recvmap-vectors-v1).",
    )
    e = vsub.add_parser(
        "export",
        help="write the vector files and schema.json to DIR, or a QEMU unit test",
        description="Write the vector files and schema.json to DIR; with --qemu-unit-test, "
        "write the bitmap-layer vectors as a GTest unit test for QEMU's tests/unit/.",
    )
    e.add_argument("dir", type=Path, metavar="DIR", nargs="?")
    e.add_argument(
        "--qemu-unit-test",
        type=Path,
        default=None,
        metavar="FILE.c",
        help="write a self-contained GTest unit test in the style of tests/unit/test-bitmap.c",
    )
    e.add_argument(
        "--release",
        default=None,
        metavar="vX.Y.Z",
        help="with --qemu-unit-test: the QEMU release the test is for (default: the newest)",
    )
    vsub.add_parser("list", help="list the vector files and their test counts")

    csub = _add_actions(
        sub,
        "corpus",
        help="fuzzing corpora",
        description="Fuzzing corpora: raw inputs of one layer's harness.",
    )
    cm = csub.add_parser(
        "merge",
        help="merge corpus folders into OUT, keeping the inputs that add coverage",
        description="Merge the corpus folders IN... into OUT with libFuzzer's -merge=1 "
        "through the layer's harness: the inputs kept are those that add coverage of the "
        "model (e.g. the corpora of several machines, or of ClusterFuzzLite).",
    )
    cm.add_argument("out", type=Path, metavar="OUT")
    cm.add_argument("inputs", nargs="+", type=Path, metavar="IN")
    cm.add_argument("--layer", choices=LAYERS, required=True)
    cm.add_argument("--word-bits", type=_word_bits, default=None)
    _add_impl(cm)

    sub.add_parser("arches", help="print the architecture and host tables")
    q = sub.add_parser(
        "qemu-tree",
        help="what recvmap finds in a QEMU source tree",
        description="Print a QEMU tree's release (VERSION) and, for each function of the "
        "ABI, where it comes from: file:line in the tree, glue (our exported wrapper of a "
        "static inline helper), or absent (the release lacks it: skipped, never passed).",
    )
    q.add_argument("dir", type=Path, metavar="DIR")
    _add_history(sub)
    sub.add_parser(
        "releases",
        help="print every rule that changed between QEMU releases, with its commit",
        description="The semantic changelog of QEMU's bitmap helpers and received-page "
        "bitmap, generated from the model's release deltas (recvmap.pymodel.releases).",
    )
    add_mutants_parser(sub)
    _exit_epilogs(p)
    return p


# The caps on each input file of `recvmap replay` (vectors.intake.Limits): option, field,
# highest value the option takes, what it caps.
CAPS = (
    ("--max-file-bytes", "file_bytes", 2**34, "bytes of one file"),
    ("--max-values", "items", INT_MAX, "JSON values of one file (commas and brackets counted)"),
    ("--max-words", "words", 2**32, "words of all arrays of one program"),
    ("--max-ops", "ops", INT_MAX, "operations of one program"),
    ("--max-work", "work", 2**48, "words one run of a program may visit (arrays x operations)"),
)


def _add_caps(r: argparse.ArgumentParser) -> None:
    for option, _field, high, what in CAPS:
        kind = _count(option, high)
        r.add_argument(
            option,
            type=kind,
            default=None,
            metavar="N",
            help=f"the cap on {what}, {help_range(kind)} (default: vectors.intake.Limits)",
        )


def _exit_epilogs(parser: argparse.ArgumentParser) -> None:
    """Every command's --help ends with the exit statuses (``campaign.exit_codes``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not (child.epilog or "").startswith("exit status:"):
                    extra = EPILOG_EXTRA.get(child.prog.split(" ", 1)[-1], "")
                    child.epilog = exit_codes.epilog(extra) + (
                        "\n" + child.epilog if child.epilog else ""
                    )
                    child.formatter_class = argparse.RawDescriptionHelpFormatter
                _exit_epilogs(child)


# what a command adds to the exit statuses (by its name after ``recvmap``)
EPILOG_EXTRA = {
    "replay": "  (1: a test fails; 2 also for a file that is not a valid vector file)",
    "mutants": "  (1: the mutation score or the time to kill misses its gate)",
    "history": "  (with --bisect: git bisect run's codes instead, below)",
}


HISTORY_EPILOG = """\
With --bisect: 0 good, 1 bad, 125 cannot be judged (git bisect run skips it), 128 bad
arguments (git bisect run stops).

examples:
  recvmap history ~/qemu origin/master..HEAD       a patch series, commit by commit
  recvmap history ~/qemu v9.2.0..v10.0.0 --first-bad
  recvmap history ~/qemu --list                    the commits that would be judged
  git -C ~/qemu bisect start BAD GOOD && git -C ~/qemu bisect run recvmap history --bisect ~/qemu
"""


def _add_history(sub: argparse._SubParsersAction[Parser]) -> None:
    h = sub.add_parser(
        "history",
        help="judge the commits of a QEMU git repository, each by its own rules",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Walk the commits of a QEMU git repository (a clone, a patch series, a "
        "backport branch, ../shared/qemu-history), skip those that change no in-scope "
        "definition, and fuzz each other commit's own code against the model under the "
        "rules its history contains: one line per commit (clean, DIVERGES, CRASH, HANG, "
        "CANNOT BUILD), then a summary. docs/qemu-tree.md has the details.",
        epilog=HISTORY_EPILOG,
    )
    h.add_argument("repo", type=Path, metavar="REPO", help="the top folder of a git checkout")
    h.add_argument(
        "range",
        nargs="*",
        metavar="REV-RANGE",
        help="git revisions, as git rev-list takes them (default HEAD: every commit of its "
        "history from the received-page bitmap on)",
    )
    h.add_argument(
        "--per-commit-time",
        type=_seconds("--per-commit-time", 86_400),
        default=10.0,
        help="seconds of fuzzing per commit, over every layer it has, "
        f"{help_range(_seconds('', 86_400))} (default 10)",
    )
    h.add_argument("--first-bad", action="store_true", help="stop at the first finding")
    h.add_argument(
        "--bisect",
        action="store_true",
        help="judge HEAD only and exit with git bisect run's codes (0 good, 1 bad, 125 skip)",
    )
    h.add_argument(
        "--list",
        action="store_true",
        help="list the commits that would be judged, with a time estimate; run nothing",
    )
    h.add_argument(
        "--as-released",
        action="store_true",
        help="judge each commit by exactly its own rules: a crash a later QEMU commit fixed "
        "(a change marked as a bug fix) is left outside the model's domain, not looked for",
    )
    h.add_argument(
        "--out",
        type=Path,
        default=Path("history-out"),
        help="folder for the reproducers, one sub-folder per commit (default history-out)",
    )
    h.add_argument(
        "--seed",
        type=_seed_type(),
        default=None,
        help=f"random seed of every campaign, {help_range(_seed_type())}",
    )
    h.add_argument(
        "--timeout",
        type=_seconds("--timeout"),
        default=DEFAULT_TIMEOUT,
        help=f"seconds one input may take, {help_range(_seconds(''))}: longer is a HANG "
        f"(default {DEFAULT_TIMEOUT:g})",
    )
    h.add_argument("--quiet", action="store_true", help="no progress lines")


# --- commands ---------------------------------------------------------------------------


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .campaign import campaign, jobs, report, result, workers  # lazy: command

    if args.engine == "atheris" and not atheris_available():
        raise UsageError("recvmap fuzz: --engine atheris: atheris is not installed")
    if args.impl is not None and not args.impl.is_file():
        raise UsageError(f"recvmap fuzz: --impl {args.impl}: no such file")
    if args.impl is not None and args.native:
        raise UsageError("recvmap fuzz: --native builds our C reference; it excludes --impl")
    check_dir_option("recvmap fuzz: --out", args.out)
    if args.corpus is not None:
        check_dir_option("recvmap fuzz: --corpus", args.corpus)
    if args.json is not None:
        check_file_option("recvmap fuzz: --json", args.json)
    if args.junit is not None:
        check_file_option("recvmap fuzz: --junit", args.junit)
    hosts = tuple(args.host)
    if hosts:
        hosts = _resolve_hosts(hosts, "recvmap fuzz")
    plan = None
    impl, release, host_drivers = args.impl, args.release, {}
    if args.qemu_tree:
        from .subjects.qemu_tree.command import TreeUsageError, resolve  # lazy: command

        if args.impl is not None or args.native:
            raise UsageError(
                "recvmap fuzz: --qemu-tree builds the library; it excludes --impl and --native"
            )
        if len(args.qemu_tree) > 2:
            raise UsageError("recvmap fuzz: --qemu-tree: give one tree, or two to compare them")
        if hosts and len(args.qemu_tree) > 1:
            raise UsageError("recvmap fuzz: --host: with one --qemu-tree at a time")
        try:
            plan = resolve(args.qemu_tree, hosts, args.release, tuple(args.target))
        except TreeUsageError as err:
            raise UsageError(f"recvmap fuzz: --qemu-tree: {err}") from None
        impl = plan.trees[0].lib
        if len(plan.trees) == 1:
            release = plan.trees[0].judge  # the model judges the tree at its rules
        host_drivers = {h: d.to_json() for h, d in plan.drivers.items()}
    cfg = jobs.Config(
        targets=tuple(args.target),
        arches=args.arch,
        word_bits=args.word_bits,
        max_time=args.max_time,
        runs=args.runs,
        seed=args.seed,
        corpus=args.corpus,
        out_dir=args.out,
        impl=impl,
        hosts=hosts,
        native=args.native,
        jobs=args.jobs or 0,
        engine=args.engine,
        timeout=args.timeout,
        workers=args.workers,
        release=release,
        host_drivers=host_drivers,
    )
    if args.workers > 1 and engine_of(args.engine) == "random":
        raise UsageError("recvmap fuzz: --workers: libFuzzer's fork mode needs atheris")
    cfg.workers, why = workers.cap(args.workers, _jobs_at_once(args))
    if why:
        print(
            f"recvmap fuzz: --workers {args.workers} capped to {cfg.workers} ({why})",
            file=sys.stderr,
        )
    try:
        if plan is not None:
            from .campaign.qemu_tree import fuzz  # lazy: command

            results = fuzz(cfg, plan, args.quiet)
        else:
            results = [campaign.run(cfg, sys.stderr, quiet=args.quiet)]
            print(result.summary(results[0]), flush=True)
    except jobs.CampaignError as err:
        print(f"recvmap fuzz: {err}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    try:
        report.write_reports(results, cfg, args.json, args.junit, getattr(args, "argv", None))
    except OSError as err:
        print(f"recvmap fuzz: --json/--junit: {err.strerror or err}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    if not all(r.clean for r in results) or (args.fail_on_slow and any(r.slow for r in results)):
        return exit_codes.FINDING
    if any(r.errors for r in results):
        return exit_codes.TOOL_FAILED
    for r in results:
        if r.interrupted is not None:
            return exit_codes.interrupted(r.interrupted)
    did_not_run = [name for r in results for name in r.did_not_run]
    if did_not_run:
        print(
            f"recvmap fuzz: did not run: {', '.join(did_not_run)} compared no program"
            + ("" if args.strict else " (warning; --strict makes it an error)"),
            file=sys.stderr,
        )
        return exit_codes.TOOL_FAILED if args.strict else exit_codes.CLEAN
    return exit_codes.CLEAN


def _jobs_at_once(args: argparse.Namespace) -> int:
    """How many jobs ``recvmap fuzz`` runs at a time, at most: --jobs, else one per layer
    and word width (and emulated host)."""
    widths = len(args.word_bits) if args.word_bits else 2
    return args.jobs or len(args.target) * widths + len(args.host)


def _resolve_hosts(names: tuple[str, ...], command: str, tree: bool = False) -> tuple[str, ...]:
    """The hosts of ``--host`` (``all``: every one that can run here), checked now: an
    unknown or unavailable host is a usage error. ``tree``: hosts a QEMU tree's code can be
    built for (not our C's emulated word widths)."""
    try:
        from .subjects import hosts as hostmod  # lazy: command
        from .subjects.qemu_tree.command import host_problem, tree_hosts  # lazy: command
    except ImportError as err:
        raise UsageError(f"{command}: --host: emulated hosts are unavailable ({err})") from None
    if names == ("all",):
        available = tuple(tree_hosts() if tree else hostmod.available_hosts())
        if not available:
            raise UsageError(f"{command}: --host all: no emulated host can run here")
        return available
    for n in names:
        if n not in hostmod.HOSTS:
            raise UsageError(
                f"{command}: --host {n}: unknown host; choose from {', '.join(hostmod.HOSTS)}"
            )
        why = host_problem(n) if tree else hostmod.host_status(n)
        if why:
            raise UsageError(f"{command}: --host {n}: {why}")
    return names


def _subject(impl: Path | None, word_bits: tuple[int, ...] | None) -> object:
    """The implementation to compare against the model (loaded now: errors are usage errors)."""
    from .subjects.impls import Subject  # lazy: command

    if impl is not None and not impl.is_file():
        raise UsageError(f"--impl {impl}: no such file")
    bits = word_bits[0] if word_bits and (impl is not None or len(word_bits) == 1) else None
    try:
        subject = Subject(impl, bits)
        for b in subject.widths:
            subject.library(b)
    except LibraryError as err:
        raise UsageError(str(err)) from None
    return subject


def cmd_replay(args: argparse.Namespace) -> int:
    from .vectors.intake import Limits  # lazy: command

    caps = {field: getattr(args, option[2:].replace("-", "_")) for option, field, _, _ in CAPS}
    limits = Limits(**{k: int(v) for k, v in caps.items() if v is not None})
    for path in args.files:
        why = _path_problem(path)
        if why:
            raise UsageError(f"recvmap replay: {path}: {why}")
    if args.layer is not None:
        check_dir_option("recvmap replay: --out", args.out)
    if args.host:
        if args.impl is not None:
            raise UsageError(
                "recvmap replay: --host runs our C (or a --qemu-tree's code) on emulated "
                "hosts; it excludes --impl"
            )
        if args.model_only or args.word_bits:
            option = "--model-only" if args.model_only else "--word-bits"
            raise UsageError(f"recvmap replay: --host chooses the word width; it excludes {option}")
    impl, release, tree = args.impl, args.release, None
    if args.qemu_tree is not None:
        if args.impl is not None:
            raise UsageError("recvmap replay: --qemu-tree builds the library; it excludes --impl")
        from .subjects.qemu_tree.command import TreeUsageError, resolve  # lazy: command

        try:  # with --host the drivers are built per host, not a library for this machine
            plan = resolve([args.qemu_tree], (), args.release, ("bitmap",), not args.host)
        except TreeUsageError as err:
            raise UsageError(f"recvmap replay: --qemu-tree: {err}") from None
        tree = plan.trees[0]
        print(tree.rules_line)
        impl, release = tree.lib, tree.judge  # the model judges the tree at its rules
    if args.host:
        subjects = _host_subjects(args, tree)
    else:
        subjects = [None if args.model_only else _subject(impl, _replay_widths(args, impl))]
    status = 0
    try:
        loaded, bad = _load_inputs(args, limits, impl, release)
        for subject in subjects:
            if len(subjects) > 1:
                print(f"== {subject.name} ({subject.layout.text} words)")  # type: ignore[union-attr]
            status = max(status, _replay_files(loaded, bad, subject, args, impl, release))
    finally:
        for subject in subjects:
            close = getattr(subject, "close", None)
            if close is not None:
                close()
    return status


def _replay_widths(args: argparse.Namespace, impl: Path | None) -> tuple[int, ...] | None:
    """The word widths of the library replay runs: --word-bits, but for raw inputs
    (--layer) the widths the fuzzing job's harness had: a recovery job of our C has
    both (its --word-bits is the receiver's; the stream's sender may have either)."""
    if args.layer is None or args.word_bits is None or len(args.word_bits) != 1:
        return args.word_bits  # type: ignore[no-any-return]
    from .campaign.crashfile import Decoding  # lazy: command

    hc = Decoding(args.layer, args.word_bits[0], impl).config()
    return None if hc.word_bits is None else (hc.word_bits,)


def _host_subjects(args: argparse.Namespace, planned: Any = None) -> list[object]:
    """``replay --host``: one subject per host, each driver built and started now (a
    problem is a usage error): our C, or the ``--qemu-tree``'s own code (``planned``, the
    tree ``resolve`` opened)."""
    from .subjects.hosts import HostError, HostSubject  # lazy: command

    hosts = _resolve_hosts(tuple(args.host), "recvmap replay", planned is not None)
    subjects: list[HostSubject] = []
    try:
        if planned is None:
            subjects = [HostSubject(h) for h in hosts]
        else:
            from .subjects.qemu_tree.command import tree_host_subject  # lazy: command

            tree = planned.tree
            subjects = [tree_host_subject(tree, h) for h in hosts]
            print(
                f"QEMU tree {tree.root} ({tree.release}) on {', '.join(hosts)}, judged by "
                f"the model at {planned.judge}"
            )
        for s in subjects:
            s.pool.driver(s.host)  # built (or found in the cache) and started
    except HostError as err:
        for s in subjects:
            s.close()
        raise UsageError(f"recvmap replay: --host: {str(err).splitlines()[0]}") from None
    return list(subjects)


def _replay_files(
    loaded: list[tuple[Path, list[Any]]],
    bad: int,
    subject: object,
    args: argparse.Namespace,
    impl: Path | None,
    release: str | None,
) -> int:
    """Replay the cases of every loaded file on ``subject``; the summary line; the exit
    status: 1 a failing test, else 3 a recvmap error, else 2 when an input was bad, else 0."""
    from .vectors.files import replay  # lazy: command

    counts = {"pass": 0, "fail": 0, "skip": 0, "slow": 0, "unconfirmed": 0, "error": 0}
    for path, cases in loaded:
        if cases and subject is not None and not args.host:
            _check_recorded_subject(path, cases[0].subject, impl)
        for case in cases:
            verdict = replay(  # type: ignore[arg-type]
                case, subject, timeout=args.timeout, release=release
            )
            counts[verdict.status] += 1
            if verdict.status in ("fail", "error"):
                label = "FAIL" if verdict.status == "fail" else "ERROR (recvmap)"
                print(f"{label} {case.name}: {verdict.message}")
                if args.verbose:
                    print(f"     {case.test['comment']}")
            elif verdict.status in ("slow", "unconfirmed"):
                print(f"NOTE {case.name}: {verdict.message}")
            elif args.verbose or (
                verdict.status == "skip" and not verdict.message.startswith("not at")
            ):
                print(f"{verdict.status.upper()} {case.name}: {verdict.message or 'ok'}")
    name = "model only" if subject is None else getattr(subject, "name", "")
    if release:
        name += f", QEMU {release}"
    more = [
        f"{n} {what}"
        for n, what in (
            (counts["slow"], "slow (not findings)"),
            (counts["unconfirmed"], "not confirmed (not findings)"),
            (counts["error"], "recvmap errors"),
            (bad, "bad inputs" if bad != 1 else "bad input"),
        )
        if n
    ]
    print(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
        + "".join(f", {m}" for m in more)
        + f" ({name})"
    )
    if counts["fail"]:
        return exit_codes.FINDING
    if counts["error"]:
        return exit_codes.TOOL_FAILED
    if bad:
        return exit_codes.BAD_INPUT
    if counts["pass"] + counts["slow"] + counts["unconfirmed"] == 0:
        print(
            "recvmap replay: did not run: no test was replayed"
            + ("" if args.strict else " (warning; --strict makes it an error)"),
            file=sys.stderr,
        )
        return exit_codes.BAD_INPUT if args.strict else exit_codes.CLEAN
    return exit_codes.CLEAN


def _check_recorded_subject(
    path: Path, recorded: dict[str, object] | None, impl: Path | None
) -> None:
    """Warn when a reproducer was found on another library than the one replaying it."""
    from .vectors.files import file_sha256  # lazy: command

    if not recorded or not recorded.get("library"):
        return
    if impl is None:
        print(
            f"WARNING {path}: found on {recorded['library']}, replayed on our C "
            f"(add --impl {recorded['library']})"
        )
        return
    digest = file_sha256(impl)
    if recorded.get("sha256") and digest != recorded["sha256"]:
        print(
            f"WARNING {path}: --impl {impl} has sha256 {digest[:16]}..., the reproducer was "
            f"found on {recorded['library']} with sha256 {str(recorded['sha256'])[:16]}..."
        )


def _path_problem(path: Path, kind: str = "file") -> str | None:
    """Why ``path`` names nothing to read (None: it names a file or folder); ``kind`` is
    what the argument should name ("no such folder")."""
    try:
        os.stat(path)
    except OSError as err:
        return f"no such {kind}" if err.errno == errno.ENOENT else (err.strerror or str(err))
    return None


def _load_inputs(
    args: argparse.Namespace, limits: Any, impl: Path | None, release: str | None
) -> tuple[list[tuple[Path, list[Any]]], int]:
    """Every file to replay, each read once (``intake.read_input``: kind and size first,
    then one read under the cap) and checked: (file, its cases) and the number of bad
    inputs, each named on one ERROR line. A raw libFuzzer input (anything but a JSON
    object) becomes a vector file when --layer names the harness that ran it; in a folder,
    only the recvmap-vectors-v1 files are taken."""
    from .campaign.crashfile import (  # lazy: command
        Decoding,
        input_to_vector,
        looks_like_json_object,
    )
    from .vectors.files import (  # lazy: command
        SCHEMA,
        NotVectorsError,
        VectorError,
        expand,
        load_file,
        load_obj,
    )
    from .vectors.intake import parse_json, read_input  # lazy: command

    how = None
    if args.layer is not None:
        bits = args.word_bits[0] if args.word_bits and len(args.word_bits) == 1 else None
        how = Decoding(args.layer, bits, impl, args.arch, release)
    loaded: list[tuple[Path, list[Any]]] = []
    bad = 0
    for path, named in expand(args.files):
        try:
            data = read_input(path, limits)
            obj = None
            if looks_like_json_object(data):
                try:
                    obj = parse_json(data, limits, str(path))
                except VectorError:
                    if how is None:
                        raise  # a broken JSON file; with --layer, fuzzer bytes like one
            if obj is None:
                if not named:
                    continue  # in a folder: not a vector file
                if how is None:
                    raise UsageError(
                        f"recvmap replay: {path}: not JSON but a raw fuzzer input; "
                        f"name the harness that ran it with --layer {'|'.join(LAYERS)}"
                    )
                path = _decoded(path, data, how, args.out, input_to_vector)
                cases = load_file(path)
            elif not named and obj.get("schema") != SCHEMA:
                continue  # in a folder: another kind of JSON (a schema, a summary)
            else:
                cases = load_obj(obj, path, limits)
        except NotVectorsError as err:
            print(f"NOTE {err}")
            continue
        except VectorError as err:
            print(f"ERROR {err}")
            bad += 1
            continue
        loaded.append((path, cases))
    return loaded, bad


def _decoded(path: Path, data: bytes, how: Any, out: Path, decode: Any) -> Path:
    """The vector file of the raw input ``data`` (``crashfile.input_to_vector``)."""
    try:
        vector = Path(decode(path, how, out, data))
    except ValueError as err:
        raise UsageError(f"recvmap replay: {path}: cannot decode: {err}") from None
    except OSError as err:
        raise UsageError(f"recvmap replay: --out {out}: {err.strerror or err}") from None
    print(f"{path}: decoded by the {how.layer} harness into {vector}")
    return vector


def cmd_vectors(args: argparse.Namespace) -> int:
    from .vectors.files import export, iter_files, load_file, vectors_dir  # lazy: command

    if args.vectors_command == "export":
        if args.qemu_unit_test is None and args.dir is None:
            raise UsageError("recvmap vectors export: give DIR or --qemu-unit-test FILE.c")
        if args.release is not None and args.qemu_unit_test is None:
            raise UsageError("recvmap vectors export: --release goes with --qemu-unit-test")
        if args.qemu_unit_test is not None:
            _export_qemu_unit_test(args.qemu_unit_test, args.release)
        if args.dir is None:
            return 0
        check_dir_option("recvmap vectors export", args.dir)
        try:
            written = export(args.dir)
        except OSError as err:
            raise UsageError(f"recvmap vectors export {args.dir}: {err}") from None
        for p in written:
            print(p)
        print(f"{len(written)} files written to {args.dir}")
        return 0
    if args.vectors_command == "list":
        for path in iter_files([vectors_dir()]):
            print(f"{path.name}: {len(load_file(path))} tests")
        return 0
    raise UsageError("recvmap vectors: choose an action: export DIR, list")


def cmd_corpus(args: argparse.Namespace) -> int:
    """``recvmap corpus merge``: 0 merged; 2 bad arguments (one line); 3 the merge itself
    failed (one line naming its kept log)."""
    from .campaign import crashfile, workers  # lazy: command

    if args.corpus_command != "merge":
        raise UsageError("recvmap corpus: choose an action: merge OUT IN...")
    for d in args.inputs:
        if not d.is_dir():
            why = _path_problem(d, "folder") or "not a folder"
            raise UsageError(f"recvmap corpus merge: {d}: {why}")
    check_dir_option("recvmap corpus merge: OUT", args.out)
    bits = args.word_bits[0] if args.word_bits and len(args.word_bits) == 1 else None
    if args.impl is not None:
        _subject(args.impl, args.word_bits)  # loads: a bad library is a usage error now
    env = crashfile.Decoding(args.layer, bits, args.impl).config().to_env(os.environ)
    try:
        r = workers.merge(args.layer, args.out, args.inputs, env)
    except workers.MergeError as err:
        print(f"recvmap corpus merge: {err}", file=sys.stderr)
        return exit_codes.TOOL_FAILED
    except OSError as err:
        print(f"recvmap corpus merge: {err.filename or args.out}: {err.strerror}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    print(f"{args.out}: {r.kept} inputs ({r.added} new) from {r.before} offered; merged by {r.how}")
    if r.left_out:
        print(
            f"{r.left_out} entries of IN left out: not regular files, or over "
            f"{workers.INPUT_MAX} bytes"
        )
    return 0


def _export_qemu_unit_test(path: Path, release: str | None) -> None:
    from .vectors import qemu_unit  # lazy: command

    check_file_option("recvmap vectors export --qemu-unit-test", path)
    try:
        rel = qemu_unit.parse(release)
        export = qemu_unit.write_qemu_unit_test(path, rel.name)
    except qemu_unit.ExportError as err:
        raise UsageError(f"recvmap vectors export: {err}") from None
    print("\n".join(qemu_unit.summary(export, path, rel.name)))


def cmd_arches(args: argparse.Namespace) -> int:
    sys.stdout.write(arch.render_tables())
    return 0


def cmd_releases(args: argparse.Namespace) -> int:
    sys.stdout.write(render_table())
    return 0


COMMANDS = {
    "fuzz": cmd_fuzz,
    "replay": cmd_replay,
    "vectors": cmd_vectors,
    "corpus": cmd_corpus,
    "arches": cmd_arches,
    "releases": cmd_releases,
}


def cmd_mutants(args: argparse.Namespace) -> int:
    from .mutation import mutants  # lazy: command

    return mutants.run(args)


COMMANDS["mutants"] = cmd_mutants


def cmd_qemu_tree(args: argparse.Namespace) -> int:
    from .subjects.qemu_tree.command import TreeUsageError, show  # lazy: command

    try:
        return show(args.dir)
    except TreeUsageError as err:
        raise UsageError(str(err)) from None


COMMANDS["qemu-tree"] = cmd_qemu_tree


BISECT_USAGE = 128  # git bisect run stops on 128 and above; 2 would mark the commit bad


def cmd_history(args: argparse.Namespace) -> int:
    """``recvmap history``; with --bisect a usage error exits 128, so git bisect run stops."""
    try:
        return _history(args)
    except UsageError as err:
        if not args.bisect:
            raise
        print(str(err).replace("\n", " "), file=sys.stderr)
        return BISECT_USAGE


def _history(args: argparse.Namespace) -> int:
    from .campaign.history import HistoryError, Options, bisect, open_repo, walk  # lazy: command

    if args.bisect and (args.range or args.first_bad or args.list):
        raise UsageError(
            "recvmap history: --bisect judges HEAD only; it excludes REV-RANGE, "
            "--first-bad and --list"
        )
    check_dir_option("recvmap history: --out", args.out)
    opts = Options(
        per_commit_time=args.per_commit_time,
        out_dir=args.out,
        first_bad=args.first_bad,
        as_released=args.as_released,
        seed=args.seed,
        timeout=args.timeout,
        quiet=args.quiet,
        list_only=args.list,
    )
    try:
        repo = open_repo(args.repo)
        if args.bisect:
            return bisect(repo, opts, sys.stdout)
        return walk(repo, args.range, opts, sys.stdout, sys.stderr)
    except HistoryError as err:
        raise UsageError(f"recvmap history: {err}") from None


COMMANDS["history"] = cmd_history


def _library_output_marked(args: argparse.Namespace) -> Any:
    """While a command runs a user's library (--impl) or a QEMU tree's code in this process,
    what it prints on stdout is marked as its own (``subjects.foreign_output``)."""
    impl, trees = getattr(args, "impl", None), getattr(args, "qemu_tree", None)
    if impl is None and not trees:
        return contextlib.nullcontext()
    from .subjects.foreign_output import marked_stdout  # lazy: command

    return marked_stdout(impl.name if impl is not None else "qemu-tree")


def main(argv: Sequence[str] | None = None) -> int:
    _printable_output()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            commands = ", ".join(COMMANDS)
            raise UsageError(f"recvmap: choose a command: {commands} (see recvmap --help)")
        with _library_output_marked(args):
            return COMMANDS[args.command](args)
    except UsageError as err:
        print(str(err).replace("\n", " "), file=sys.stderr)
        return exit_codes.BAD_INPUT
    except BrokenPipeError:
        return exit_codes.CLEAN
    except KeyboardInterrupt:
        return exit_codes.interrupted(signal.SIGINT)
    except Exception as err:  # noqa: BLE001 - ours: one line, the traceback kept in a log
        print(internal_error(err), file=sys.stderr)
        return exit_codes.TOOL_FAILED


def _printable_output() -> None:
    """A line quoting an input may hold what the terminal's encoding cannot (a lone
    surrogate from a JSON ``"\\ud800"``): written escaped, not raised (it was a traceback)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass  # a replaced stream (a test's capture) keeps its own


def internal_error(err: BaseException) -> str:
    """The one line of recvmap's own failure; its traceback goes to a log file it names."""
    import traceback  # lazy: only on failure

    what = f"{type(err).__name__}: {err}".splitlines()[0][:300]
    try:
        fd, name = tempfile.mkstemp(prefix="recvmap-error-", suffix=".log")
        with os.fdopen(fd, "w", errors="backslashreplace") as f:
            f.write("".join(traceback.format_exception(err)))
        where = f"traceback in {name}"
    except OSError as why:
        where = f"no log ({why.strerror or why})"
    return f"recvmap: internal error (recvmap's, not the implementation's): {what}; {where}"


if __name__ == "__main__":
    sys.exit(main())
