"""Counts as the controller publishes them: through JSON (an infinite bucket included) and
summed across processes."""

import math

import orjson

from server.rollout.figures import Counts


def test_counts_survive_json_and_add_up() -> None:
    a = Counts(10.0, 2.0, {100.0: 4.0, 1000.0: 11.0, math.inf: 12.0})
    back = Counts.from_json(orjson.loads(orjson.dumps(a.to_json())))
    assert back == a and math.isinf(max(back.buckets))
    b = Counts(5.0, 0.0, {100.0: 5.0, math.inf: 5.0})
    total = a.plus(b)
    assert (total.success, total.failure, total.requests) == (15.0, 2.0, 17)
    assert total.buckets == {100.0: 9.0, 1000.0: 11.0, math.inf: 17.0}
    assert total.minus(b) == a.plus(Counts(0.0, 0.0, {100.0: 0.0, math.inf: 0.0}))
    assert b.below(a) and not a.below(Counts()) and not a.below(a)
