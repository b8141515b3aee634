"""Offline evaluation: metrics (pure functions), the two ranking protocols, slices, diagnostics, plots.

Submodules are imported directly (``unisem.evaluate.protocols``); this package imports nothing heavy.
"""
