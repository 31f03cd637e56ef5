#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Atheris harness: the received-page bitmap: ramblock_recv_map_init, the receivedmap accessors,
postcopy placement and ram_discard_range (migration/ram.c, include/exec/ram_addr.h),
over every target page size, host page and hugepage size of the arch table.

Each input decodes to a program that runs on the model and on the implementation under
test; every return value and memory image is compared after every operation. Run it
directly with libFuzzer's flags (fork, merge and minimize modes work):

    fuzz/campaign/harness_ram.py -runs=1000 corpus/
    RECVMAP_WORD_BITS=32 fuzz/campaign/harness_ram.py -max_total_time=30 -seed=1 corpus/

Environment (see recvmap.fuzz.campaign.harness): RECVMAP_WORD_BITS, RECVMAP_IMPL,
RECVMAP_NATIVE, RECVMAP_ARCH, RECVMAP_HOSTS, RECVMAP_OUT, RECVMAP_STATS,
RECVMAP_MAX_OPS, RECVMAP_ENGINE=random (no atheris).
"""

import sys

if __name__ == "__main__":
    from recvmap.fuzz.campaign.launch import script_main

    sys.exit(script_main("ram"))
