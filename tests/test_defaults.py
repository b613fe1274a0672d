"""'auto' workers, instances and ORT threads: resolution, every way to say it, a live server."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from server.cli import build_parser, serve_settings
from server.errors import ConfigError
from server.settings import AUTO, ModelConfig, RuntimeConfig, ServerSettings
from tests import models
from tests.live import LiveServer


def test_auto_gives_each_core_a_worker_with_one_single_thread_instance() -> None:
    settings = ServerSettings(http_port=8000, grpc_port=8001).resolved(8)
    assert (settings.cores, settings.workers, settings.cores_per_worker) == (8, 8, 1)
    runtime = settings.default_model_config.runtime.resolved(settings.cores_per_worker)
    assert (runtime.instances, runtime.intra_op_threads, runtime.inter_op_threads) == (1, 1, 1)


@pytest.mark.parametrize(
    ("cores", "workers", "each"), [(1, 1, 1), (2, 2, 1), (8, 8, 1), (12, 6, 2), (32, 8, 4)]
)
def test_workers_stop_at_eight_and_share_the_cores_evenly(
    cores: int, workers: int, each: int
) -> None:
    settings = ServerSettings().resolved(cores)
    assert (settings.workers, settings.cores_per_worker) == (workers, each)
    assert RuntimeConfig().resolved(each).instances == each


def test_ephemeral_ports_get_one_worker_and_the_cores_go_to_instances() -> None:
    settings = ServerSettings(http_port=0, grpc_port=0).resolved(4)
    assert (settings.workers, settings.cores_per_worker) == (1, 4)
    runtime = RuntimeConfig().resolved(settings.cores_per_worker)
    assert (runtime.instances, runtime.intra_op_threads) == (4, 1)


def test_explicit_threads_leave_fewer_workers_and_instances() -> None:
    config = ModelConfig(runtime=RuntimeConfig(intra_op_threads=2))
    settings = ServerSettings(default_model_config=config).resolved(8)
    assert (settings.workers, settings.cores_per_worker) == (4, 2)
    assert RuntimeConfig(intra_op_threads=2).resolved(8).instances == 4
    assert RuntimeConfig(instances=3).resolved(8).intra_op_threads == 2


def test_explicit_values_are_kept_even_when_they_oversubscribe() -> None:
    settings = ServerSettings(workers=3, cores=2).resolved(16)
    assert (settings.cores, settings.workers, settings.cores_per_worker) == (2, 3, 1)
    runtime = RuntimeConfig(instances=2, intra_op_threads=2, inter_op_threads=3).resolved(1)
    assert (runtime.instances, runtime.intra_op_threads, runtime.inter_op_threads) == (2, 2, 3)


@pytest.mark.parametrize("cores", range(1, 34))
def test_auto_never_oversubscribes(cores: int) -> None:
    for instances, intra in itertools.product((AUTO, 1, 2, 3), repeat=2):
        if max(1, instances) * max(1, intra) > cores:
            continue  # set by the user beyond the machine: kept as given
        config = ModelConfig(runtime=RuntimeConfig(instances=instances, intra_op_threads=intra))
        server = ServerSettings(default_model_config=config).resolved(cores)
        runtime = config.runtime.resolved(server.cores_per_worker)
        used = server.workers * runtime.instances * runtime.intra_op_threads
        assert 1 <= used <= cores, (cores, instances, intra, server.workers, runtime)
        if instances == intra == AUTO:
            assert used == cores  # and none left idle


def test_auto_is_accepted_from_toml_flags_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text('[runtime]\ninstances = "auto"\nintra_op_threads = 2\n')
    assert ModelConfig.from_file(path).runtime.instances == AUTO
    args = build_parser().parse_args(["serve", "m.onnx", "--workers", "auto", "--cores", "3"])
    settings = serve_settings(args)
    assert (settings.workers, settings.cores) == (AUTO, 3)
    env = ServerSettings.from_env({}, {"SLUICE_WORKERS": "AUTO", "SLUICE_CORES": "5"})
    assert (env.workers, env.cores) == (AUTO, 5)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"runtime": {"instances": "many"}}, 'instances must be "auto" or an integer >= 1'),
        ({"runtime": {"intra_op_threads": -2}}, "intra_op_threads must be"),
        ({"runtime": {"inter_op_threads": True}}, "inter_op_threads must be"),
    ],
)
def test_bad_counts_are_named(doc: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_mapping(doc, "m/config.toml")
    assert fragment in err.value.message


def test_bad_counts_from_flags_and_environment_are_clear(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "m.onnx", "--workers", "0"])
    assert "must be >= 1 or 'auto'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "m.onnx", "--cores", "lots"])
    assert "neither 'auto' nor an integer" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="SLUICE_WORKERS: 'some' is not an integer"):
        ServerSettings.from_env({}, {"SLUICE_WORKERS": "some"})


def test_model_config_endpoint_shows_the_resolved_values(tmp_path: Path) -> None:
    path = models.save(models.small_mlp(), tmp_path / "mlp.onnx")
    url = "http://{}/v2/models/mlp/config"
    with LiveServer(path, cores=3) as live, urllib.request.urlopen(url.format(live.url)) as resp:
        config = json.load(resp)
    assert config["instance_group"][0]["count"] == 3
    assert config["parameters"] == {
        "intra_op_thread_count": {"string_value": "1"},
        "inter_op_thread_count": {"string_value": "1"},
        "workers": {"string_value": "1"},
        "cores_per_worker": {"string_value": "3"},
    }


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_serve_resolves_auto_from_an_affinity_mask_and_logs_it(tmp_path: Path) -> None:
    path = models.save(models.small_mlp(), tmp_path / "mlp.onnx")
    one_cpu = {min(os.sched_getaffinity(0))}
    cmd = [sys.executable, "-m", "server.cli", "serve", str(path)]
    with subprocess.Popen(
        [*cmd, "--http-port", "0", "--grpc-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, one_cpu),
    ) as proc:
        try:
            log = _read_until(proc, "HTTP on")
            port = re.search(r"HTTP on http://127\.0\.0\.1:(\d+)", log)
            assert port, log
            url = f"http://127.0.0.1:{port.group(1)}/v2/models/mlp/config"
            with urllib.request.urlopen(url) as resp:
                config = json.load(resp)
        finally:
            proc.terminate()
    assert "cores: 1 (affinity 1" in log and "1 worker(s) (auto)" in log
    assert "batching on; 1 instance(s) x 1 intra-op thread(s), 1 inter-op, for 1 core(s)" in log
    assert config["instance_group"][0]["count"] == 1


def _read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float = 60) -> str:
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        lines.append(proc.stderr.readline())
        if marker in lines[-1]:
            break
    return "".join(lines)
