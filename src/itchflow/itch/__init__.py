"""The ITCH 5.0 protocol: message table, decode kernels, encoder, day generator."""
