"""Thin adapters between files or transports and arrays. Optional packages are imported lazily."""
