# SPDX-License-Identifier: GPL-2.0-or-later
"""Vector files: load, replay, export, and write reproducers of divergences.

May import ``recvmap.fuzz.engine``, ``recvmap.fuzz.subjects``, ``recvmap.fuzz.program`` and
the layers below them.
"""
