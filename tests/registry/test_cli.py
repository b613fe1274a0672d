"""``sluice models`` and ``sluice audit`` as a user runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from server.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_prints_json_with_integer_version(
    capsys: pytest.CaptureFixture[str], repo: Path, model_file: Path
) -> None:
    code, out, _ = run(
        capsys,
        "models",
        "register",
        "fraud",
        str(model_file),
        "--repository",
        str(repo),
        "--tag",
        "team=risk",
        "--json",
        "--author",
        "ana",
    )
    assert code == 0
    assert json.loads(out)["version"] == 1 and isinstance(json.loads(out)["version"], int)
    assert set(json.loads(out)) == {"name", "version", "sha256"}


def test_lifecycle_tables_and_errors(
    capsys: pytest.CaptureFixture[str], repo: Path, model_file: Path
) -> None:
    r = ("--repository", str(repo))
    run(capsys, "models", "register", "fraud", str(model_file), *r)
    run(capsys, "models", "register", "fraud", str(model_file), *r, "--tag", "team=risk")
    code, out, _ = run(capsys, "models", "deploy", "fraud", "--version", "2", *r, "--reason", "go")
    assert code == 0 and "deployed" in out
    code, out, _ = run(capsys, "models", "list", "--tag", "team=risk", *r)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "version"] and len(lines) == 2
    code, _, err = run(capsys, "models", "delete", "fraud", "--version", "2", *r)
    assert code == 1 and "deployed" in err
    code, out, _ = run(capsys, "models", "history", "fraud", *r, "--json")
    assert [e["action"] for e in json.loads(out)] == ["register", "register", "deploy"]
    assert json.loads(out)[2]["reason"] == "go"
    code, _, err = run(capsys, "models", "show", "fraud", "--version", "7", *r)
    assert code == 1 and "no version 7" in err


def test_actor_comes_from_environment(
    capsys: pytest.CaptureFixture[str],
    repo: Path,
    model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICE_ACTOR", "ci-bot")
    monkeypatch.setenv("SLUICE_REPOSITORY", str(repo))
    run(capsys, "models", "register", "m", str(model_file))
    code, out, _ = run(capsys, "models", "history", "m", "--json")
    assert code == 0 and json.loads(out)[0]["actor"] == "ci-bot"


def test_audit_verify_finds_an_edited_row(
    capsys: pytest.CaptureFixture[str], repo: Path, model_file: Path
) -> None:
    r = ("--repository", str(repo))
    run(capsys, "models", "register", "m", str(model_file), *r)
    run(capsys, "models", "deploy", "m", "--version", "1", *r, "--reason", "launch")
    run(capsys, "models", "undeploy", "m", *r)
    code, out, _ = run(capsys, "audit", "verify", *r)
    assert code == 0 and "3 rows" in out
    with sqlite3.connect(repo / "registry.db") as conn:
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    code, _, err = run(capsys, "audit", "verify", *r)
    assert code == 1 and "row 2" in err
