from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import ConfigError
from server.settings import AUTO, ModelConfig, ServerSettings


def test_defaults_need_no_file() -> None:
    config = ModelConfig.from_mapping({})
    assert config.batching.max_batch_size == 64 and config.runtime.intra_op_threads == AUTO


def test_toml_maps_onto_fields(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[batching]\nmax_batch_size = 32\npreferred_batch_sizes = [8, 16]\n"
        "[runtime]\ninstances = 2\nallow_spinning = true\n"
        "[runtime.provider_options.CPUExecutionProvider]\n"
        "arena_extend_strategy = 'kSameAsRequested'\n"
    )
    config = ModelConfig.from_file(path)
    assert config.batching.preferred_batch_sizes == (8, 16)
    assert config.runtime.instances == 2 and config.runtime.allow_spinning
    assert config.runtime.provider_options["CPUExecutionProvider"]["arena_extend_strategy"]


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"batching": {"max_batch_sise": 8}}, "unknown key(s) ['max_batch_sise']"),
        ({"batching": {"max_batch_size": 0}}, "max_batch_size must be >= 1"),
        ({"batching": {"max_batch_size": "8"}}, "must be an integer"),
        ({"batching": {"preferred_batch_sizes": [128]}}, "not within 1..max_batch_size"),
        ({"runtime": {"providers": ["GPUProvider"]}}, "unknown provider 'GPUProvider'"),
        ({"runtime": {"graph_optimization": "max"}}, "must be one of"),
        ({"bogus": {}}, "unknown section(s)"),
        ({"batching": {"default_priority": 2}}, "default_priority"),
    ],
)
def test_bad_values_are_named(doc: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_mapping(doc, "m/config.toml")
    assert fragment in err.value.message


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[batching\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        ModelConfig.from_file(path)


def test_environment_then_flags() -> None:
    env = {"SLUICE_HTTP_PORT": "9000", "SLUICE_WORKERS": "3", "SLUICE_GRPC_PORT": "9001"}
    settings = ServerSettings.from_env({"workers": 2}, env)
    assert (settings.http_port, settings.grpc_port, settings.workers) == (9000, 9001, 2)
    with pytest.raises(ConfigError, match="SLUICE_HTTP_PORT"):
        ServerSettings.from_env({}, {"SLUICE_HTTP_PORT": "eighty"})
    with pytest.raises(ConfigError, match='workers must be "auto" or an integer >= 1'):
        ServerSettings(workers=-1)
