#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Atheris harness: the bitmap layer: include/qemu/bitops.h, include/qemu/bitmap.h, util/bitops.c,
util/bitmap.c (set/clear/find/range/whole-bitmap helpers on word arrays).

How to run it, its libFuzzer flags and its environment: recvmap.fuzz.campaign.launch.
"""

import sys

if __name__ == "__main__":
    from recvmap.fuzz.campaign.launch import script_main

    sys.exit(script_main("bitmap"))
