"""``NAME>=VALUE`` thresholds on the metrics of ``server.evaluation``, for the validation
gate (``sluice models validate --metric``)."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from server.errors import InvalidInput
from server.evaluation import METRICS

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_THRESHOLD = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True, slots=True)
class Threshold:
    """``auc>=0.8``: a metric and the bound it must meet."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _THRESHOLD.match(text)
        if match is None:
            raise InvalidInput(f"metric threshold '{text}' is not NAME>=VALUE (or <=, >, <)")
        metric, op, bound = match.groups()
        if metric not in METRICS:
            raise InvalidInput(f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
        try:
            value = float(bound)
        except ValueError as exc:
            raise InvalidInput(f"metric threshold '{text}': '{bound}' is not a number") from exc
        return cls(metric, op, value)

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"
