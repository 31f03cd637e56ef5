# SPDX-License-Identifier: GPL-2.0-or-later
"""recvmap.pymodel: the executable spec of QEMU's bitmap helpers.

``words`` is the memory (``Layout``, ``Words`` and QEMU's macros), ``bitops`` the single
bits and searches of include/qemu/bitops.h and util/bitops.c, ``bitmap`` the whole-bitmap
and range helpers of include/qemu/bitmap.h and util/bitmap.c. A call outside QEMU's
domain raises ``PreconditionError`` before it changes anything.

The functions describe the newest QEMU release the model knows; ``releases`` holds every
rule that changed since the received-page bitmap was added (f9494614898f, first released
in v2.11.0), and ``at_release("v3.0.0")`` is the bitmap layer of an older release or of
any rule set (``parse_rules``; a function the rules lack raises ``ReleaseError``).
"""

from . import bitmap, bitops, words
from .bitmap import *  # noqa: F403
from .bitops import *  # noqa: F403
from .errors import PreconditionError
from .releases import (
    DEFAULT_RELEASE,
    RELEASES,
    Release,
    ReleaseError,
    Rules,
    at_release,
    parse_release,
    parse_rules,
)
from .words import *  # noqa: F403

# The model's error and releases, then the memory and QEMU's macros (the byte-level
# primitives stay in recvmap.pymodel.words), then every function of bitmap.h/bitops.h.
__all__ = [
    "PreconditionError",
    "DEFAULT_RELEASE",
    "RELEASES",
    "Release",
    "ReleaseError",
    "Rules",
    "at_release",
    "parse_release",
    "parse_rules",
]
__all__ += words.__all__
__all__ += bitmap.__all__
__all__ += bitops.__all__
