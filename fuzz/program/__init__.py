# SPDX-License-Identifier: GPL-2.0-or-later
"""The one program format, and the decoders that turn fuzzer bytes into programs.

May import only ``recvmap.pymodel``.
"""

from .format import ArraySpec, Op, Program, Ref

__all__ = ["ArraySpec", "Op", "Program", "Ref"]
