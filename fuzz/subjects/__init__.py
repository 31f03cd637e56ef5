# SPDX-License-Identifier: GPL-2.0-or-later
"""Every source of implementations behind the engine's ``Implementation`` protocol.

The model, our C through ctypes, a user's ``--impl`` library, build variants, the replay
driver process and other hosts under qemu-user, native-coverage builds, and a QEMU source
tree's own code built with our glue (``qemu_tree``). May import ``recvmap.fuzz.program``,
``recvmap.pymodel`` and ``recvmap.qemu_ref``.
"""
