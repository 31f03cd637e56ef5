"""Everything that produces an implementation for the engine."""
