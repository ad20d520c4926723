"""The HTTP API (DESIGN §6)."""
