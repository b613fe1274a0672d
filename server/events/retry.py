"""When a failed webhook delivery is tried again, and when it is given up."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import UTC

from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to give up and how long to wait: after failed attempt n the next is due after
    ``min(base_delay_s * 2**(n-1), max_delay_s)`` times a jitter factor in [0.5, 1]
    (defaults: 5 s, 10 s, ... about 10 minutes over 8 attempts), or after ``Retry-After``."""

    max_attempts: int = 8
    base_delay_s: float = 5.0
    max_delay_s: float = 600.0
    max_retry_after_s: float = 3600.0
    timeout_s: float = 10.0
    poll_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"webhook max attempts must be at least 1, not {self.max_attempts}")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"webhook {name} must not be negative")
        for name in ("timeout_s", "poll_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"webhook {name} must be positive")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        exponential = self.base_delay_s * 2.0 ** min(attempt - 1, 60)
        return min(exponential, self.max_delay_s) * rng.uniform(0.5, 1.0)


def retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
