"""protocol.soup."""
