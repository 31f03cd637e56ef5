# SPDX-License-Identifier: GPL-2.0-or-later
"""Mutation testing of the differential oracles: mutants of our C reference, built and
run against the fuzzer, abort, stress and sanitizer oracles.

May import ``recvmap.fuzz.campaign`` and every room below it.
"""
