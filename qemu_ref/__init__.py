# SPDX-License-Identifier: GPL-2.0-or-later
"""recvmap's C re-implementation of QEMU's bitmap and received-page code, through ctypes."""

from .loader import CArray, CLibrary, CWords, LibraryError, abi, load

__all__ = ["CArray", "CLibrary", "CWords", "LibraryError", "abi", "load"]
