#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Mutation score of the fuzzer and its time to kill: ``recvmap mutants`` as a bench script.

Builds the hand-written mutants of the C reference and a fixed sample of systematic ones,
fuzzes each against the model with several seeds, and prints per mutant killed/survived and
time to kill, then the mutation score, the median and 95th percentile time to kill, and the
survivors. Targets: >= 95% of the non-equivalent mutants killed within 60 s each, median
time to kill <= 5 s. Arguments are those of ``recvmap mutants`` (``--help``); a quick look:

    python bench/mutation_score.py --sample 50 --budget 10 --seeds 1
"""

from __future__ import annotations

import sys

from recvmap.fuzz.mutation.mutants import main

if __name__ == "__main__":
    sys.exit(main())
