"""Which version serves a request that names none, during a rollout: a split by weight,
random per request, or sticky by a hash of a caller's key; and which requests are mirrored.

A request naming a version is never rerouted (the engine does not ask the router).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

_BUCKETS = 10_000


def bucket(key: str) -> int:
    """A stable bucket in 0..9999 for ``key`` (the same in every process and restart)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS


class Router:
    """A frozen split: built from a plan, replaced whole when the plan changes."""

    __slots__ = ("_bounds", "_versions", "mirror", "mirror_share", "sticky")

    def __init__(
        self,
        weights: Mapping[str, int],
        sticky: str = "",
        mirror: str = "",
        mirror_percent: int = 0,
    ) -> None:
        total = sum(weights.values())
        self._versions: list[str] = []
        self._bounds: list[int] = []
        running = 0
        for version, weight in sorted(weights.items()):
            if weight <= 0:
                continue
            running += weight
            self._versions.append(version)
            self._bounds.append(running * _BUCKETS // total)
        self.sticky = sticky.lower()
        self.mirror = mirror
        self.mirror_share = mirror_percent / 100.0

    def pick(self, key: str) -> str:
        """The version for a request: by ``key``'s bucket when sticky and a key is given,
        else at random in proportion to the weights."""
        if len(self._versions) <= 1:
            return self._versions[0] if self._versions else ""
        point = bucket(key) if self.sticky and key else random.randrange(_BUCKETS)
        for version, bound in zip(self._versions, self._bounds, strict=True):
            if point < bound:
                return version
        return self._versions[-1]

    def mirrored(self, served: str) -> bool:
        """Whether a request ``served`` by a version also goes (as a copy) to the mirror."""
        return bool(self.mirror) and served != self.mirror and random.random() < self.mirror_share
