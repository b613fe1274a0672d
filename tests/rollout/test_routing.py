"""The engine's split during a rollout, read from the registry through the catalog."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from server.engine.engine import Engine
from server.engine.requests import InferRequest
from server.engine.routing import Router, bucket
from server.metrics import Metrics
from server.registry import Registry
from server.registry.catalog import RegistryCatalog
from server.registry.rollouts import RolloutPolicy, Rollouts
from server.tensors import Tensor
from tests.rollout.conftest import X


@pytest.fixture
def database() -> None:
    """Routing is the engine's: one backend is enough (the store tests run both)."""
    return None


@pytest.fixture
async def engine(two: Registry, repo: Path, database: str | None) -> AsyncIterator[Engine]:
    catalog = RegistryCatalog(repo, database, {})
    engine = Engine(catalog, Metrics(CollectorRegistry()))
    await engine.start()
    yield engine
    await engine.stop()
    catalog.close()


def request(version: str = "", key: str = "", id_: str = "") -> InferRequest:
    return InferRequest("m", [Tensor("input", "FP32", X)], version, id=id_, routing_key=key)


async def test_split_follows_the_weights(two: Registry, engine: Engine) -> None:
    Rollouts(two).start("m", 2, RolloutPolicy(canary=30))
    await engine.sync()
    seen = Counter(engine.get("m", key="").version for _ in range(10_000))
    assert abs(seen["2"] / 10_000 - 0.30) < 0.03
    answers = await asyncio.gather(*(engine.infer(request()) for _ in range(400)))
    served = Counter(a.version for a in answers)
    assert set(served) == {"1", "2"}


async def test_explicit_versions_are_never_rerouted(two: Registry, engine: Engine) -> None:
    Rollouts(two).start("m", 2, RolloutPolicy(canary=50))
    await engine.sync()
    for version in ("1", "2"):
        answers = [await engine.infer(request(version)) for _ in range(50)]
        assert {a.version for a in answers} == {version}


async def test_sticky_keeps_one_caller_on_one_version(two: Registry, engine: Engine) -> None:
    Rollouts(two).start("m", 2, RolloutPolicy(canary=50, sticky="X-User"))
    await engine.sync()
    assert engine.sticky_header("m") == "x-user"
    for user in ("alice", "bob", "carol", "dave"):
        versions = {(await engine.infer(request(key=user))).version for _ in range(20)}
        assert len(versions) == 1
    by_id = {engine.get("m", key=f"req-{i}").version for i in range(200)}
    assert by_id == {"1", "2"}  # different callers do land on both


async def test_weights_change_and_end_with_the_rollout(two: Registry, engine: Engine) -> None:
    rollouts = Rollouts(two)
    rollouts.start("m", 2, RolloutPolicy(canary=0))
    await engine.sync()
    assert {engine.get("m", key="").version for _ in range(200)} == {"1"}
    rollouts.step("m", 100)
    await engine.sync()
    assert {engine.get("m", key="").version for _ in range(200)} == {"2"}
    assert engine.get("m").version == "1"  # metadata and readiness: the default
    rollouts.rollback("m", reason="test")
    await engine.sync()
    assert {engine.get("m", key="").version for _ in range(200)} == {"1"}
    assert engine.get("m", "2").version == "2"  # still deployed for explicit callers


async def test_mirror_compares_off_the_request_path(two: Registry, engine: Engine) -> None:
    Rollouts(two).start("m", 2, RolloutPolicy(canary=0, mirror=100))
    await engine.sync()
    for _ in range(20):
        answer = await engine.infer(request())
        assert answer.version == "1"
    for _ in range(1000):
        await asyncio.sleep(0.01)
        if engine.metrics.registry.get_sample_value(
            "sluice_mirror_requests_total", {"model": "m", "version": "2", "result": "compared"}
        ):
            break
    tally = engine.mirror.take("m")
    assert tally.rows >= 1
    # seed 1 and seed 2 MLPs pick different classes for this input
    assert tally.disagreeing == tally.rows
    weight = engine.metrics.registry.get_sample_value(
        "sluice_rollout_weight", {"model": "m", "version": "1"}
    )
    assert weight == 100


def test_router_buckets_are_stable_and_proportional() -> None:
    assert bucket("alice") == bucket("alice")
    router = Router({"1": 90, "2": 10}, sticky="x-user")
    picks = Counter(router.pick(f"user-{i}") for i in range(10_000))
    assert abs(picks["2"] / 10_000 - 0.10) < 0.02
    assert Router({"1": 0, "2": 100}).pick("") == "2"
    assert np.isclose(Router({"1": 50, "2": 50}, mirror="2", mirror_percent=20).mirror_share, 0.2)


async def test_copies_that_gather_run_as_one_model_call(two: Registry, engine: Engine) -> None:
    """Copies queued within the mirror's gathering time run as one request on the mirror
    version (one batch, not one each), and each copy is still compared with its own answer."""
    Rollouts(two).start("m", 2, RolloutPolicy(canary=0, mirror=100))
    await engine.sync()
    for _ in range(12):  # one after another: the copies arrive over a few milliseconds
        assert (await engine.infer(request())).version == "1"
    tally = engine.mirror.take("m")
    for _ in range(1000):
        if tally.rows >= 12:
            break
        await asyncio.sleep(0.01)
        found = engine.mirror.take("m")
        tally.rows += found.rows
        tally.disagreeing += found.disagreeing
    assert tally.rows == 12 and tally.disagreeing == 12
    assert 1 <= engine.mirror.calls <= 3


async def test_a_copy_that_fails_is_counted_alone(
    two: Registry, engine: Engine, tmp_path: Path
) -> None:
    """One failing copy among those joined into one call: the call is retried copy by copy,
    so only that copy counts as failed and the others are still compared."""
    from benchmarks.models import lookup_mlp, save

    two.register("m", save(lookup_mlp((16, 32, 4), seed=1), tmp_path / "lookup.onnx"))
    two.deploy("m", 3)
    Rollouts(two).start("m", 3, RolloutPolicy(canary=0, mirror=100))
    await engine.sync()
    for i in range(6):  # the lookup model fails on a first feature of 50
        x = X.copy()
        x[0, 0] = 50 if i == 2 else 0.5
        assert (await engine.infer(InferRequest("m", [Tensor("input", "FP32", x)]))).version == "1"
    labels = {"model": "m", "version": "3"}
    done = 0.0
    for _ in range(1000):
        await asyncio.sleep(0.01)
        counted = [
            engine.metrics.registry.get_sample_value(
                "sluice_mirror_requests_total", {**labels, "result": result}
            )
            or 0.0
            for result in ("compared", "failed")
        ]
        done = sum(counted)
        if done >= 6:
            break
    assert counted == [5.0, 1.0]


async def test_the_mirror_starts_again_after_a_stop(two: Registry, engine: Engine) -> None:
    Rollouts(two).start("m", 2, RolloutPolicy(canary=0, mirror=100))
    await engine.sync()
    labels = {"model": "m", "version": "2", "result": "compared"}

    async def compared_after_one_request(before: float) -> float:
        assert (await engine.infer(request())).version == "1"
        for _ in range(1000):
            found = engine.metrics.registry.get_sample_value("sluice_mirror_requests_total", labels)
            if found and found > before:
                return found
            await asyncio.sleep(0.01)
        raise AssertionError("the copy was not compared")

    first = await compared_after_one_request(0.0)
    await engine.mirror.stop()
    assert await compared_after_one_request(first) == first + 1
