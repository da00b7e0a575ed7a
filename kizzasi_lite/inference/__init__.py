"""Inference helpers: anomaly scores (and, later, sampling and multi-stream pools)."""
