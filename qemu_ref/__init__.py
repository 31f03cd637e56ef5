# SPDX-License-Identifier: GPL-2.0-or-later
"""recvmap's C re-implementation of QEMU's bitmap and received-page code, through ctypes."""

from .loader import CLibrary, CWords, LibraryError, abi, load

__all__ = ["CLibrary", "CWords", "LibraryError", "abi", "load"]
