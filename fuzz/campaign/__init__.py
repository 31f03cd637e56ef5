# SPDX-License-Identifier: GPL-2.0-or-later
"""Fuzzing campaigns: the atheris harnesses, their launcher, ``recvmap fuzz``'s scheduler,
fuzzing on other hosts and the replay driver's command line.

May import ``recvmap.fuzz.vectors``, ``recvmap.fuzz.engine``, ``recvmap.fuzz.subjects``,
``recvmap.fuzz.program`` and the layers below them.
"""
