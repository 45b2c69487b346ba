"""Broadcast channel backends: one module per technology, one shared engine."""
