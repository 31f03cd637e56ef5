#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Atheris harness: the postcopy recovery wire format: ramblock_recv_bitmap_send on the
destination, damaged in transit, ram_dirty_bitmap_reload on the source (migration/ram.c),
for every pair of sender and receiver word widths.

How to run it, its libFuzzer flags and its environment: recvmap.fuzz.campaign.launch.
"""

import sys

if __name__ == "__main__":
    from recvmap.fuzz.campaign.launch import script_main

    sys.exit(script_main("recovery"))
