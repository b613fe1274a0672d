"""``sluice models validate`` and ``sluice models rollout`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli import main


@pytest.fixture
def database() -> None:
    return None


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict | str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def test_validate_then_roll_out_and_promote(
    capsys: pytest.CaptureFixture[str], repo: Path, versions: tuple[Path, Path]
) -> None:
    where = ("--repository", str(repo), "--json")
    for file in versions:
        assert run(capsys, "models", "register", "m", str(file), *where)[0] == 0
    code, _, err = run(capsys, "models", "alias", "m", "production", "--version", "1", *where)
    assert code == 1 and "no passing validation" in err
    code, record, _ = run(capsys, "models", "validate", "m", "--version", "1", *where)
    assert code == 0 and record["passed"]
    assert run(capsys, "models", "alias", "m", "production", "--version", "1", *where)[0] == 0
    for v in ("1", "2"):
        assert run(capsys, "models", "deploy", "m", "--version", v, *where)[0] == 0
    code, _, err = run(
        capsys, "models", "rollout", "m", "--version", "2", "--canary", "150", *where
    )
    assert code == 1 and "0..100" in err
    code, shown, _ = run(
        capsys, "models", "rollout", "m", "--version", "2", "--canary", "5",
        "--interval", "30s", "--mirror", "20", "--sticky", "X-User", *where,
    )  # fmt: skip
    assert code == 0 and shown["weight"] == 5 and shown["policy"]["interval_s"] == 30
    code, status, _ = run(capsys, "models", "rollout", "m", "--status", *where)
    assert status["candidate"] == 2 and status["policy"]["sticky"] == "X-User"
    code, _, err = run(capsys, "models", "rollout", "m", "--promote", *where)
    assert code == 1 and "no passing validation" in err
    code, done, _ = run(
        capsys, "models", "rollout", "m", "--promote", "--force", "--reason", "urgent", *where
    )
    assert code == 0 and done == {"name": "m", "promoted": 2, "undeployed": 1}
    code, _, err = run(capsys, "models", "rollout", "m", "--abort", *where)
    assert code == 1 and "no rollout in progress" in err


def test_a_failing_validation_exits_1(
    capsys: pytest.CaptureFixture[str], repo: Path, versions: tuple[Path, Path]
) -> None:
    where = ("--repository", str(repo), "--json")
    run(capsys, "models", "register", "m", str(versions[0]), *where)
    code, _, err = run(
        capsys, "models", "validate", "m", "--version", "1", "--metric", "auc>=0.5", *where
    )
    assert code == 1 and "--label" in err


def test_a_recorded_failure_exits_1(
    capsys: pytest.CaptureFixture[str], repo: Path, versions: tuple[Path, Path], tmp_path: Path
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 16)).astype(np.float32)
    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({**{f"f{i}": x[:, i] for i in range(16)}, "y": x[:, 0] > 0}), data)
    where = ("--repository", str(repo), "--json")
    run(capsys, "models", "register", "m", str(versions[0]), *where)
    argv = ("models", "validate", "m", "--version", "1", "--data", str(data), "--label", "y")
    code, record, _ = run(capsys, *argv, "--metric", "accuracy>=0.99", *where)
    assert code == 1 and not record["passed"] and record["rows"] == 100
    assert "accuracy" in record["problems"][0]
