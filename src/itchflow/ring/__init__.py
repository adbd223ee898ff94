"""Shared-memory rings: layout descriptor, atomics, SPSC, broadcast, wait strategies."""
