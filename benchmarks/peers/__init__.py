"""Peer servers the serving benchmarks compare Sluice against."""
