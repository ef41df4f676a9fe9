"""Pruning methods behind one registry: channel (structured), magnitude, 2:4 semi-structured."""
