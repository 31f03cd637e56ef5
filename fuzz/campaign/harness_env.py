# SPDX-License-Identifier: GPL-2.0-or-later
"""The harness environment contract: how a harness process is told what to run.

libFuzzer starts the harness scripts itself (fork-mode workers, ``-merge``, a user's
shell), so a harness is configured by its environment, never by arguments. ``HarnessConfig``
is that contract, stated once: each field names its variable, ``from_env`` reads them and
``to_env`` writes them, and the writers (a campaign job, ``recvmap corpus merge``, a raw
input decoded as the fuzzer ran it) and the reader (``Harness.from_config``) share it.
``describe()`` is the table of ``recvmap.fuzz.campaign.launch``'s documentation.

Not part of it: ``RECVMAP_GUARD`` and ``RECVMAP_LIB``, read by ``recvmap.qemu_ref.loader``
in any process that loads a library.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 5.0  # seconds one input may take before it is a HANG (libFuzzer -timeout)


def _words(value: str) -> int | None:
    return None if value in ("", "both") else int(value)


def _names(value: str) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) or None


def _native(value: str) -> tuple[tuple[int, Path], ...]:
    pairs = (item.partition(":") for item in value.split(",") if item)
    return tuple((int(bits), Path(path)) for bits, _, path in pairs)


def _var(name: str, doc: str, parse: Callable[[str], Any], show: Callable[[Any], str] = str) -> Any:
    """Field metadata: its variable, what it means, how it reads and writes."""
    return {"env": name, "doc": doc, "parse": parse, "show": show}


@dataclass(frozen=True)
class HarnessConfig:
    """What one harness process runs, read from and written to ``RECVMAP_*`` variables.

    ``None`` (and False, and the empty tuple) means the variable is not set.
    """

    word_bits: int | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_WORD_BITS",
            "64, 32 or both (default: every width the library has)",
            _words,
        ),
    )
    impl: Path | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_IMPL", "a user's shared library (QEMU's names) instead of ours", Path
        ),
    )
    native: tuple[tuple[int, Path], ...] = field(
        default=(),
        metadata=_var(
            "RECVMAP_NATIVE",
            "64:PATH,32:PATH: sanitizer builds of ours (subjects.native)",
            _native,
            lambda v: ",".join(f"{b}:{p}" for b, p in v),
        ),
    )
    arches: tuple[str, ...] | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_ARCH",
            "comma-separated QEMU targets (ram, recovery; default: all)",
            _names,
            ",".join,
        ),
    )
    hosts: tuple[str, ...] | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_HOSTS",
            "comma-separated hosts of the arch table (default: all)",
            _names,
            ",".join,
        ),
    )
    receiver_bits: int | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_RECEIVER_BITS", "recovery: the source's word width (the sender's: either)", int
        ),
    )
    release: str | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_RELEASE", "the QEMU release the model follows (default: newest)", str
        ),
    )
    max_ops: int = field(
        default=24, metadata=_var("RECVMAP_MAX_OPS", "operations per program", int)
    )
    max_words: int = field(
        default=64, metadata=_var("RECVMAP_MAX_WORDS", "words per bitmap array (bitmap layer)", int)
    )
    out_dir: Path = field(
        default=Path("fuzz-out"),
        metadata=_var("RECVMAP_OUT", "folder for minimized reproducers", Path),
    )
    stats: Path | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_STATS",
            "a JSON file the harness rewrites twice a second (the campaign's)",
            Path,
        ),
    )
    stats_per_process: bool = field(
        default=False,
        metadata=_var(
            "RECVMAP_STATS_PER_PROCESS",
            "set: statistics go to RECVMAP_STATS.<pid> (fork-mode workers)",
            bool,
            lambda v: "1",
        ),
    )
    timeout: float = field(
        default=DEFAULT_TIMEOUT,
        metadata=_var(
            "RECVMAP_TIMEOUT", "seconds one input may take before it is a HANG (0: none)", float
        ),
    )
    deadline: float | None = field(
        default=None,
        metadata=_var(
            "RECVMAP_DEADLINE",
            "epoch seconds by which a divergence's vector is written (cut short)",
            float,
        ),
    )
    skip: tuple[str, ...] = field(
        default=(),
        metadata=_var(
            "RECVMAP_SKIP",
            "comma-separated sha256 of inputs not to run (known slow inputs)",
            lambda v: _names(v) or (),
            ",".join,
        ),
    )
    engine: str = field(
        default="atheris",
        metadata=_var("RECVMAP_ENGINE", "random: the random loop instead of atheris", str),
    )

    @classmethod
    def variables(cls) -> dict[str, dataclasses.Field[Any]]:
        """Every variable of the contract, and its field."""
        return {f.metadata["env"]: f for f in dataclasses.fields(cls)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HarnessConfig:
        """The configuration ``env`` (default: this process's environment) states; an unset
        or empty variable leaves its field at the default."""
        env = os.environ if env is None else env
        values = {
            f.name: f.metadata["parse"](env[name])
            for name, f in cls.variables().items()
            if env.get(name)
        }
        return cls(**values)

    def to_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a harness process: ``base`` without the contract's variables,
        and this configuration's (a field at None, False or empty is left unset)."""
        out = {k: v for k, v in (base or {}).items() if k not in self.variables()}
        for name, f in self.variables().items():
            value = getattr(self, f.name)
            if value is not None and value is not False and value != ():
                out[name] = f.metadata["show"](value)
        return out

    def replace(self, **changes: Any) -> HarnessConfig:
        return dataclasses.replace(self, **changes)

    @property
    def stats_file(self) -> Path | None:
        """The statistics file of this process: ``stats``, or ``stats.<pid>`` for a worker."""
        if self.stats is None or not self.stats_per_process:
            return self.stats
        return self.stats.with_name(f"{self.stats.name}.{os.getpid()}")

    @classmethod
    def describe(cls) -> str:
        """The contract as a table: variable, meaning."""
        width = max(len(name) for name in cls.variables())
        return "\n".join(
            f"{name:<{width}}  {f.metadata['doc']}" for name, f in cls.variables().items()
        )
