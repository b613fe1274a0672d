"""The mirror's comparison: copies joined into one call are judged as if one by one, and its
thread runs at the idle priority."""

from __future__ import annotations

import os
import sys
import threading
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from server.engine.mirror import Mirror, _Copy, _Group, _idle_priority
from server.engine.models import ModelVersion
from server.metrics import Metrics

TARGET = cast(ModelVersion, SimpleNamespace(name="m", version="2"))


def _figures(mirror: Mirror, registry: CollectorRegistry) -> tuple[int, int, dict[str, float]]:
    """Rows and disagreeing rows tallied, and every mirror metric sample."""
    tally = mirror.take("m")
    samples = {
        f"{sample.name}{sorted(sample.labels.items())}": round(sample.value, 9)
        for family in registry.collect()
        if family.name.startswith("sluice_mirror")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
    return tally.rows, tally.disagreeing, samples


def test_joined_copies_are_judged_as_one_by_one() -> None:
    rng = np.random.default_rng(7)
    rows = [1, 3, 2, 1, 4]
    served = [rng.standard_normal((n, 8)).astype(np.float32) for n in rows]
    score = [rng.random((n, 1)).astype(np.float32) for n in rows]
    # some rows close, some far apart (argmax flipped)
    scale = np.array([30, 1e-5, 1e-3, 0.1, 50, 1e-4, 1e-2, 20, 1e-6, 0.3, 1e-1])[:, None]
    noise = rng.normal(0, 1, (sum(rows), 8)) * scale
    mirrored_rows = (np.concatenate(served) + noise).astype(np.float32)
    mirrored_score = np.concatenate(score) * np.float32(1.0005)
    mirrored = {"output": mirrored_rows, "score": mirrored_score}
    group = _Group(TARGET, ())
    for out, s in zip(served, score, strict=True):
        group.add(_Copy(TARGET, [], {"output": out, "score": s}), {}, out.shape[0])

    joined_registry, alone_registry = CollectorRegistry(), CollectorRegistry()
    joined, alone = Mirror(Metrics(joined_registry)), Mirror(Metrics(alone_registry))
    assert joined._compare_joined(group, mirrored)
    end = 0
    for copy, n in zip(group.copies, rows, strict=True):
        end += n
        alone._compare(TARGET, copy.served, {k: v[end - n : end] for k, v in mirrored.items()})

    found = _figures(joined, joined_registry)
    assert found == _figures(alone, alone_registry)
    assert found[0] == sum(rows) and 0 < found[1] < sum(rows)  # some argmax flipped, not all
    compared = [v for k, v in found[2].items() if "compared" in k]
    assert compared == [len(rows)]
    buckets = [v for k, v in found[2].items() if "_bucket" in k]
    assert buckets[-1] == len(rows) and len(set(buckets)) > 3  # spread over the buckets


def test_copies_that_do_not_line_up_are_left_to_the_one_by_one_path() -> None:
    group = _Group(TARGET, ())
    group.add(_Copy(TARGET, [], {"output": np.zeros((1, 4), np.float32)}), {}, 1)
    group.add(_Copy(TARGET, [], {"output": np.zeros((1, 3), np.float32)}), {}, 1)
    registry = CollectorRegistry()
    mirror = Mirror(Metrics(registry))
    assert not mirror._compare_joined(group, {"output": np.zeros((2, 4), np.float32)})
    assert mirror.take("m").rows == 0  # nothing counted: the caller compares copy by copy


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")
def test_the_mirror_thread_runs_at_idle_priority() -> None:
    found: list[int] = []

    def probe() -> None:
        _idle_priority()
        found.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    assert found == [os.SCHED_IDLE]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # only the mirror's thread
