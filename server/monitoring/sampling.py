"""Deterministic sampling by request id: the same id is kept or not on every worker."""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def sample_point(request_id: str) -> float:
    """The id's point in [0, 1): the first 8 bytes of its BLAKE2b digest, big-endian, / 2**64.
    A request is sampled at rate r when its point is below r, so a request kept at 10% is also
    kept at 50%."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE
