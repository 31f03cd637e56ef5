#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Atheris harness: the received-page bitmap: ramblock_recv_map_init, the receivedmap accessors,
postcopy placement and ram_discard_range (migration/ram.c, include/exec/ram_addr.h),
over every target page size, host page and hugepage size of the arch table.

How to run it, its libFuzzer flags and its environment: recvmap.fuzz.campaign.launch.
"""

import sys

if __name__ == "__main__":
    from recvmap.fuzz.campaign.launch import script_main

    sys.exit(script_main("ram"))
