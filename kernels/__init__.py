"""Numba kernels for drift statistics. Nothing here compiles at import."""
