"""The controller in a real engine reading a real registry: a good version is promoted
through every step; bad ones (shifted answers, failing requests, slow) are rolled back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from benchmarks.models import lookup_mlp, save
from server.engine.engine import Engine
from server.engine.requests import InferRequest
from server.errors import SluiceError
from server.metrics import Metrics
from server.registry import Registry, open_registry
from server.registry.catalog import RegistryCatalog
from server.registry.rollouts import RolloutPolicy, Rollouts
from server.rollout.controller import Controller
from server.rollout.validation import Request, validate
from server.tensors import Tensor

# Short windows; a latency limit no noise on a shared host reaches (the slow test sets its own).
FAST = {"interval_s": 0.3, "min_requests": 10, "max_p99_ratio": 50.0}
SLOW_CONFIG = "[batching]\nmax_queue_delay_us = 100000\n"
RNG = np.random.default_rng(3)


@pytest.fixture
def database() -> None:
    """The controller is backend-agnostic; the store tests run both backends."""
    return None


@pytest.fixture
def setup(repo: Path, versions: tuple[Path, Path], tmp_path: Path) -> Registry:
    reg = open_registry(repo)
    reg.register("m", versions[0])
    validate(reg, Request("m", 1))
    reg.alias("m", "production", 1)
    reg.deploy("m", 1)
    return reg


@pytest.fixture
async def served(setup: Registry, repo: Path) -> AsyncIterator[tuple[Engine, Controller]]:
    catalog = RegistryCatalog(repo, None, {})
    engine = Engine(catalog, Metrics(CollectorRegistry()))
    await engine.start()
    controller = Controller(engine, catalog)
    task = asyncio.ensure_future(controller.run())
    yield engine, controller
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await engine.stop()
    catalog.close()
    setup.close()


async def drive(engine: Engine, reg: Registry, until: str, bad_every: int = 0) -> list[int]:
    """Send requests without a version (every ``bad_every``-th one poisoned) until the rollout
    ends with audit action ``until``; the numbers of the requests that failed."""
    failed = []
    deadline = time.monotonic() + 60
    for i in itertools.count():
        if time.monotonic() > deadline:
            break
        x = RNG.standard_normal((1, 16)).astype(np.float32)
        if bad_every and i % bad_every == 0:
            x[0, 0] = 50
        request = InferRequest("m", [Tensor("input", "FP32", x)], id=f"r{i}")
        try:
            await engine.infer(request)
        except SluiceError:
            failed.append(i)
        if i % 20 == 0:
            await engine.sync()
            if reg.history("m")[-1].action == until:
                await engine.sync()  # the rollout may have ended after the sync above
                return failed
    raise AssertionError(f"no {until} in {[e.action for e in reg.history('m')][-5:]}")


@pytest.mark.slow
async def test_a_good_version_is_promoted_through_every_step(
    setup: Registry, served: tuple[Engine, Controller], versions: tuple[Path, Path]
) -> None:
    engine, _ = served
    setup.register("m", versions[0])  # retrained, same answers
    validate(setup, Request("m", 2))
    setup.deploy("m", 2)
    policy = RolloutPolicy(canary=25, step=25, mirror=50, **FAST)
    Rollouts(setup).start("m", 2, policy)
    await engine.sync()
    await drive(engine, setup, "rollout_promote")
    steps = [e.detail for e in setup.history("m") if e.action == "rollout_step"]
    assert steps == ["weight 25% -> 50%", "weight 50% -> 75%", "weight 75% -> 100%"]
    assert setup.get("m", alias="production").version == 2
    await engine.sync()
    assert engine.index() and {e.version for e in engine.index()} == {"2"}


@pytest.mark.slow
async def test_shifted_answers_are_rolled_back_by_the_mirror(
    setup: Registry, served: tuple[Engine, Controller], versions: tuple[Path, Path]
) -> None:
    engine, _ = served
    setup.register("m", versions[1])  # different weights: different classes
    setup.deploy("m", 2)
    Rollouts(setup).start("m", 2, RolloutPolicy(canary=0, mirror=100, **FAST))
    await engine.sync()
    await drive(engine, setup, "rollout_rollback")
    assert "mirrored rows disagree" in setup.history("m")[-1].reason
    assert setup.get("m", alias="production").version == 1
    await engine.sync()
    assert {engine.get("m", key="").version for _ in range(100)} == {"1"}


@pytest.mark.slow
async def test_failing_requests_are_rolled_back(
    setup: Registry, served: tuple[Engine, Controller], tmp_path: Path
) -> None:
    engine, _ = served
    setup.register("m", save(lookup_mlp((16, 32, 4), seed=1), tmp_path / "bad.onnx"))
    setup.deploy("m", 2)
    Rollouts(setup).start("m", 2, RolloutPolicy(canary=50, **FAST))
    await engine.sync()
    failed = await drive(engine, setup, "rollout_rollback", bad_every=20)
    assert "error rate" in setup.history("m")[-1].reason
    # Only poisoned requests that the candidate drew failed: none of the others.
    assert failed and all(i % 20 == 0 for i in failed)
    poisoned_after = await drive_more(engine, 200, bad_every=20)
    assert poisoned_after == []  # rolled back: the baseline answers the poisoned rows too


async def drive_more(engine: Engine, count: int, bad_every: int) -> list[int]:
    failed = []
    for i in range(count):
        x = RNG.standard_normal((1, 16)).astype(np.float32)
        x[0, 0] = 50 if i % bad_every == 0 else x[0, 0]
        try:
            await engine.infer(InferRequest("m", [Tensor("input", "FP32", x)]))
        except SluiceError:
            failed.append(i)
    return failed


@pytest.mark.slow
async def test_a_slow_version_is_rolled_back(
    setup: Registry, served: tuple[Engine, Controller], versions: tuple[Path, Path], tmp_path: Path
) -> None:
    engine, _ = served
    config = tmp_path / "config.toml"
    config.write_text(SLOW_CONFIG)
    setup.register("m", versions[0], config=config)
    setup.deploy("m", 2)
    Rollouts(setup).start("m", 2, RolloutPolicy(canary=50, interval_s=1.0, min_requests=5))
    await engine.sync()
    await drive(engine, setup, "rollout_rollback")
    assert "p99" in setup.history("m")[-1].reason


async def test_the_weights_survive_a_restart(
    setup: Registry, repo: Path, versions: tuple[Path, Path]
) -> None:
    setup.register("m", versions[1])
    setup.deploy("m", 2)
    Rollouts(setup).start("m", 2, RolloutPolicy(canary=10))
    Rollouts(setup).step("m", 40)
    for _ in range(2):  # two servers (or one, restarted) read the same split
        catalog = RegistryCatalog(repo, None, {})
        engine = Engine(catalog, Metrics(CollectorRegistry()))
        await engine.start()
        share = sum(engine.get("m", key="").version == "2" for _ in range(5000)) / 5000
        assert abs(share - 0.40) < 0.04
        await engine.stop()
        catalog.close()
    setup.close()


async def test_only_the_lease_holder_acts(setup: Registry, repo: Path, versions: tuple) -> None:
    setup.register("m", versions[1])
    setup.deploy("m", 2)
    Rollouts(setup).start("m", 2, RolloutPolicy(canary=10, interval_s=0.01, min_requests=1))
    catalogs = [RegistryCatalog(repo, None, {}) for _ in range(2)]
    engines = [Engine(c, Metrics(CollectorRegistry())) for c in catalogs]
    controllers = [Controller(e, c) for e, c in zip(engines, catalogs, strict=True)]
    await controllers[0].tick()
    await controllers[1].tick()
    with catalogs[1].call(lambda reg: reg.db.read()) as tx:
        holder = tx.one("SELECT holder FROM leases")
    assert holder == {"holder": controllers[0].holder}
    for catalog in catalogs:
        catalog.close()
    setup.close()


@pytest.mark.slow
async def test_a_candidate_whose_inputs_alone_drift_holds(
    setup: Registry, repo: Path, versions: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Online drift firing for the candidate's inputs only: the rollout holds, says why, and
    steps up once the drift is gone."""
    states = {"1": {"x": "ok"}, "2": {"x": "firing"}}
    catalog = RegistryCatalog(repo, None, {})
    engine = Engine(catalog, Metrics(CollectorRegistry()))
    await engine.start()
    controller = Controller(engine, catalog, drift=lambda m, v: {"states": states[v]})
    task = asyncio.ensure_future(controller.run())
    try:
        setup.register("m", versions[0])
        validate(setup, Request("m", 2))
        setup.deploy("m", 2)
        Rollouts(setup).start("m", 2, RolloutPolicy(canary=50, step=50, **FAST))
        await engine.sync()
        until = time.monotonic() + 1.5  # five intervals with traffic
        while time.monotonic() < until:
            x = RNG.standard_normal((1, 16)).astype(np.float32)
            await engine.infer(InferRequest("m", [Tensor("input", "FP32", x)]))
            await asyncio.sleep(0.002)
        assert "rollout_step" not in [e.action for e in setup.history("m")]
        assert "inputs drift on x and the baseline's do not" in caplog.text
        states["2"] = {"x": "resolved"}
        await drive(engine, setup, "rollout_step")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.stop()
        catalog.close()
        setup.close()


@pytest.mark.slow
async def test_the_holder_judges_from_every_process(
    setup: Registry, repo: Path, tmp_path: Path
) -> None:
    """A candidate that fails only on another worker's connections is still rolled back: each
    process publishes its counts and the lease holder judges from their sum (its own traffic
    here is clean, so alone it would step the candidate up)."""
    setup.register("m", save(lookup_mlp((16, 32, 4), seed=1), tmp_path / "bad.onnx"))
    setup.deploy("m", 2)
    Rollouts(setup).start("m", 2, RolloutPolicy(canary=50, **FAST))
    catalogs = [RegistryCatalog(repo, None, {}) for _ in range(2)]
    engines = [Engine(c, Metrics(CollectorRegistry())) for c in catalogs]
    for engine in engines:
        await engine.start()
    holder, other = (Controller(e, c) for e, c in zip(engines, catalogs, strict=True))
    await holder.tick()  # the first to ask takes the lease
    deadline = time.monotonic() + 60
    sent = 0
    while setup.history("m")[-1].action != "rollout_rollback":
        assert time.monotonic() < deadline, [e.action for e in setup.history("m")[-5:]]
        for _ in range(20):
            sent += 1
            clean = RNG.standard_normal((1, 16)).astype(np.float32)
            poisoned = clean.copy()
            poisoned[0, 0] = 50
            await engines[0].infer(InferRequest("m", [Tensor("input", "FP32", clean)]))
            with contextlib.suppress(SluiceError):
                await engines[1].infer(InferRequest("m", [Tensor("input", "FP32", poisoned)]))
        await other.tick()
        await holder.tick()
        await asyncio.sleep(0.05)
    assert "error rate" in setup.history("m")[-1].reason
    with catalogs[0].call(lambda reg: reg.db.read()) as tx:
        assert tx.one("SELECT holder FROM leases") == {"holder": holder.holder}
    for engine, catalog in zip(engines, catalogs, strict=True):
        await engine.stop()
        catalog.close()
    setup.close()
