"""Tiny shared pure helpers every layer may use (the lowest layer, with clock, errors and registry)."""
