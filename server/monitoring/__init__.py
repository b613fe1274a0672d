"""Drift monitoring: reference baselines, drift statistics and reports (numba kernels below)."""
