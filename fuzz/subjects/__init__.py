"""Everything that produces an implementation for the engine: our C, a library, a QEMU tree."""
