"""Sluice: a high-performance inference and batch-scoring server for ONNX models."""

__version__ = "0.1.0"
