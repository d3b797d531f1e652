"""Workflows: the deterministic "brain". No I/O here; activities do the work."""
