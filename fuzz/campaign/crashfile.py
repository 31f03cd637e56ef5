# SPDX-License-Identifier: GPL-2.0-or-later
"""A raw libFuzzer input (``crash-*``, ``timeout-*``, ``oom-*``, a corpus file) as a vector.

libFuzzer, OSS-Fuzz and ClusterFuzzLite keep the BYTES an input was, not our program. The
bytes mean a program only through the harness's decoder and its configuration (layer, word
widths, the library's functions, architectures), so this module decodes them with the very
harness the fuzzer ran (``Harness.from_config``) under the configuration a campaign job
of that layer and width gets (``campaign.job_config``). The operations the model rejects are
dropped exactly as the harness drops them, and the result is a one-test
``recvmap-vectors-v1`` file that ``recvmap replay`` and every other implementation can use.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..engine import model_session, run_stream
from ..program import Program
from ..vectors.files import make_test, vector_file, write_vector_file
from ..vectors.intake import read_input
from . import harness as hmod
from .harness_env import HarnessConfig
from .jobs import Config, job_config


@dataclass
class Decoding:
    """How the fuzzer ran: what a campaign job of ``layer`` / ``bits`` would set."""

    layer: str
    bits: int | None = None  # None: the harness's default (every width of the library)
    impl: Path | None = None
    arches: Sequence[str] | None = None
    release: str | None = None  # the --release the fuzzing run had (None: the newest)

    def config(self) -> HarnessConfig:
        """The harness configuration of such a job (no statistics, no output folder)."""
        if self.bits is None:
            hc = HarnessConfig(impl=None if self.impl is None else self.impl.resolve())
            hc = hc.replace(arches=tuple(self.arches) if self.arches else None)
        else:
            cfg = Config(impl=self.impl, arches=tuple(self.arches) if self.arches else None)
            hc = job_config(cfg, self.layer, self.bits, None, HarnessConfig())
            hc = hc.replace(out_dir=HarnessConfig.out_dir, stats_per_process=False)
        return hc.replace(release=self.release or None)


def decode_input(data: bytes, how: Decoding) -> Program:
    """The program the harness ran for ``data``: only the operations the model accepts."""
    h = hmod.Harness.from_config(how.layer, how.config())
    program, next_op, _ = h.decode(data)
    kept, _ = run_stream(program, next_op, model_session(program, program.release))
    return kept


def input_to_vector(path: Path, how: Decoding, out_dir: Path, data: bytes | None = None) -> Path:
    """Decode the raw input at ``path`` (its bytes ``data``, when already read) and write it
    as a vector file in ``out_dir``."""
    data = read_input(path) if data is None else data
    program = decode_input(data, how)
    width = f"{how.bits}-bit words" if how.bits else "the library's word widths"
    sha = hashlib.sha1(data).hexdigest()
    comment = (
        f"libFuzzer input {path.name} (sha1 {sha}, {len(data)} bytes) decoded by the "
        f"{how.layer} harness with {width}"
    )
    test = make_test(program, comment, [])
    return write_vector_file(out_dir / f"{path.name}-{how.layer}.json", vector_file([test]))


_OBJECT = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*\{")


def looks_like_json_object(data: bytes) -> bool:
    """Whether ``data`` starts as a JSON object does (a vector file, reproducer or program);
    anything else is raw fuzzer bytes, though a fuzzer input may happen to be JSON, such as
    ``7`` or ``[]``. Decided on the first bytes: nothing is parsed."""
    return _OBJECT.match(data) is not None
