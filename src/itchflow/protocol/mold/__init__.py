"""protocol.mold."""
