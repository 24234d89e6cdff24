"""Metrics and request accounting."""
