"""``sluice pipeline run|runs|show|explain`` and the import walk behind python steps' keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli import main
from server.pipeline.imports import first_party_sources

from .conftest import CHAIN, write


def sluice(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["pipeline", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_runs_show_explain(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(project, {"pipeline.toml": CHAIN})
    file = str(project / "pipeline.toml")
    code, out, err = sluice(capsys, "run", file, "--json", "--param", "suffix=?")
    assert code == 0
    summary = json.loads(out)
    assert summary["status"] == "succeeded"
    assert "+   [1/2] a" in err and "miss" in err
    code, out, _ = sluice(capsys, "run", file)
    assert code == 0 and "(1/2 steps reused)" in out  # b uses the suffix, "!" by default
    code, out, _ = sluice(capsys, "runs", "-f", file, "--json")
    runs = json.loads(out)
    assert [r["misses"] for r in runs] == [1, 2]  # newest first
    assert runs[1]["params"] == {"suffix": "?"}
    code, out, _ = sluice(capsys, "show", summary["run_id"], "-f", file)
    assert code == 0 and "succeeded" in out and "suffix" in out
    code, out, _ = sluice(capsys, "explain", "b", "-f", file)
    assert code == 0 and "nothing: the key is unchanged" in out


def test_exit_codes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(project, {"pipeline.toml": CHAIN.replace('"steps:copy"', '"steps:nosuch"', 1)})
    code, _, err = sluice(capsys, "run", str(project / "pipeline.toml"))
    assert code == 1 and "no function nosuch" in err
    code, _, err = sluice(capsys, "run", str(project / "absent.toml"))
    assert code == 2 and "cannot read" in err
    code, _, err = sluice(capsys, "run", str(project / "pipeline.toml"), "--param", "x")
    assert code == 2 and "expected NAME=VALUE" in err
    code, _, err = sluice(capsys, "show", "nope", "-f", str(project / "pipeline.toml"))
    assert code == 2 and "no run 'nope'" in err


def test_import_walk_follows_first_party_modules_only(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "job.py": "import os, numpy\nfrom pkg import sub\nfrom pkg.inner import thing\n"
            "def f():\n    import late\n",
            "late.py": "",
            "pkg/__init__.py": "",
            "pkg/sub.py": "from . import sibling\nfrom .. import nothing_above\n",
            "pkg/sibling.py": "",
            "pkg/inner/__init__.py": "from .deep import thing\n",
            "pkg/inner/deep.py": "thing = 1\n",
            "unused.py": "",
        },
    )
    found = first_party_sources("job", [tmp_path], "here")
    assert sorted(found) == [
        "job", "late", "pkg", "pkg.inner", "pkg.inner.deep", "pkg.sibling", "pkg.sub",
    ]  # fmt: skip
    assert found["pkg.inner.deep"] == tmp_path / "pkg/inner/deep.py"


def test_explain_before_the_inputs_exist(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(project, {"pipeline.toml": CHAIN})
    code, _, err = sluice(capsys, "explain", "b", "-f", str(project / "pipeline.toml"))
    assert code == 2 and "does not exist yet" in err and "a.txt" in err
