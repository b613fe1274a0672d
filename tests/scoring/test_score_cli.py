from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from server.score_cli import main
from server.scoring.progress import Progress


def test_main_prints_the_json_summary(
    model_path: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(model_path), "--input", str(inputs), "--output", str(tmp_path / "o")]
    assert main([*argv, "--keep", "id", "--batch-size", "512"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["rows_scored"] == 2100 and summary["rows_skipped"] == 0
    assert captured.err == ""  # not a terminal: no progress bar


def test_main_reports_errors_on_stderr(
    model_path: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(model_path), "--input", str(inputs), "--output", str(tmp_path / "o")]
    assert main(argv) == 1
    assert "takes 8 features, but 9 columns" in capsys.readouterr().err


def test_repository_name_resolves_to_latest_version(
    model_path: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    for version in ("2", "10"):
        (repo / "mlp" / version).mkdir(parents=True)
        (repo / "mlp" / version / "model.onnx").write_bytes(model_path.read_bytes())
    out = tmp_path / "o"
    argv = ["--model", "mlp", "--repository", str(repo), "--input", str(inputs)]
    assert main([*argv, "--output", str(out), "--keep", "id"]) == 0
    assert main([*argv[:1], "mlp:3", *argv[2:], "--output", str(out), "--keep", "id"]) == 1
    assert "has no version 3" in capsys.readouterr().err


def test_progress_line() -> None:
    progress = Progress(1000, io.StringIO())
    progress.advance(250, skipped=2)
    line = progress.line(elapsed=0.5)
    assert "scored 250/1,000 rows ( 25.0%)" in line
    assert "500 rows/s" in line and "ETA 00:02" in line and "2 skipped" in line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_drawn_on_a_terminal_only() -> None:
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(10, stream)
        progress.advance(10)
        progress.close()
    assert terminal.getvalue().startswith("\rscored 10/10 rows (100.0%)")
    assert terminal.getvalue().endswith("\n") and pipe.getvalue() == ""


def test_registry_name_alias_and_version_resolve(
    model_path: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.registry import open_registry

    repo = tmp_path / "repo"
    with open_registry(repo) as reg:
        reg.register("mlp", model_path)
        reg.register("mlp", model_path)
        reg.alias("mlp", "production", 1, force=True, reason="test")
    argv = ["--repository", str(repo), "--input", str(inputs), "--keep", "id"]
    for spec, version in (("mlp", "1"), ("mlp@production", "1"), ("mlp:2", "2")):
        out = tmp_path / spec.replace("@", "_").replace(":", "_")
        assert main(["--model", spec, *argv, "--output", str(out)]) == 0
        assert json.loads(capsys.readouterr().out)["model_version"] == version
    assert main(["--model", "mlp@staging", *argv, "--output", str(tmp_path / "s")]) == 1
    assert "no alias 'staging'" in capsys.readouterr().err
    (repo / "mlp" / "2" / "model.onnx").write_bytes(b"tampered")
    assert main(["--model", "mlp:2", *argv, "--output", str(tmp_path / "t")]) == 1
    assert "refusing to score" in capsys.readouterr().err
