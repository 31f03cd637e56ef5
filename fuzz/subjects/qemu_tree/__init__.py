"""A QEMU source tree built into an implementation (--qemu-tree)."""
