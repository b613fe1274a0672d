"""Parallel branches, a killed run resumed, two concurrent runs sharing a step, explain."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.pipeline import RunOptions, run_pipeline
from server.pipeline.explain import explain_step
from server.pipeline.records import Records, connect

from .conftest import CHAIN, Run, cache, write

ROOT = Path(__file__).resolve().parents[2]

# Each branch waits until the other has started: only a parallel run can finish.
RENDEZVOUS = '''
import time
from pathlib import Path


def meet(inputs, outputs, params):
    here = Path(params["dir"])
    (here / (params["me"] + ".started")).touch()
    deadline = time.monotonic() + 20
    while not (here / (params["other"] + ".started")).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the other branch never started")
        time.sleep(0.01)
    outputs["out"].write_text(params["me"])


def hold(inputs, outputs, params):
    """Log the call, then wait while the file ``hold`` exists."""
    here = Path(params["dir"])
    with (here / "calls.log").open("a") as fh:
        fh.write("call\\n")
    while (here / "hold").exists():
        time.sleep(0.01)
    outputs["out"].write_text("held")
'''


def branch(name: str, other: str, folder: Path) -> str:
    return (
        f'[steps.{name}]\nkind = "python"\nfunction = "sync:meet"\nme = "{name}"\n'
        f'other = "{other}"\ndir = "{folder}"\noutputs = {{ out = "work/{name}.txt" }}\n'
    )


def test_independent_branches_run_in_parallel(run: Run, project: Path) -> None:
    write(project, {"sync.py": RENDEZVOUS})
    summary = run(branch("left", "right", project) + branch("right", "left", project), jobs=2)
    assert summary["status"] == "succeeded", summary
    assert (project / "work/left.txt").read_text() == "left"


def hold_pipeline(project: Path) -> None:
    write(
        project,
        {
            "sync.py": RENDEZVOUS,
            "pipeline.toml": CHAIN
            + f'\n[steps.h]\nkind = "python"\nfunction = "sync:hold"\ndir = "{project}"\n'
            'inputs = { data = "b.out" }\noutputs = { out = "work/h.txt" }\n',
        },
    )


def start(project: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "server", "pipeline", "run", "pipeline.toml", "--json"]
    with log.open("wb") as err:
        return subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=err,
                                env={"PYTHONPATH": str(ROOT), "PATH": ""})  # fmt: skip


def wait_for(condition: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_killed_run_leaves_no_output_and_resumes(run: Run, project: Path) -> None:
    hold_pipeline(project)
    (project / "hold").touch()
    process = start(project, project / "err.log")
    wait_for(lambda: (project / "calls.log").exists())
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (project / "work/h.txt").exists()
    assert not list((project / "work").glob("h.txt*"))
    (project / "hold").unlink()
    killed = Records(connect(project)).runs(project / "pipeline.toml")
    assert [r["status"] for r in killed] == ["killed"]
    assert cache(run()) == {"a": "hit", "b": "hit", "h": "miss"}
    assert (project / "work/h.txt").read_text() == "held"


def test_two_concurrent_runs_share_the_step(project: Path) -> None:
    hold_pipeline(project)
    (project / "hold").touch()
    first = start(project, project / "first.log")
    wait_for(lambda: (project / "calls.log").exists())
    second = start(project, project / "second.log")
    wait_for(lambda: "waiting" in (project / "second.log").read_text())
    (project / "hold").unlink()
    one = json.loads(first.communicate(timeout=60)[0])
    two = json.loads(second.communicate(timeout=60)[0])
    assert (project / "calls.log").read_text() == "call\n"  # the step ran once
    assert one["steps"]["h"]["cache"] == "miss"
    assert two["steps"]["h"]["cache"] == "hit" and two["steps"]["h"]["waited"]
    assert one["steps"]["h"]["outputs"] == two["steps"]["h"]["outputs"]


def test_explain_names_the_parameter_the_file_and_the_module(run: Run, project: Path) -> None:
    write(project, {"helper.py": "X = 1\n", "steps.py": "import helper\n" + _steps(project)})
    write(project, {"more/x.txt": "1", "more/y.txt": "2"})
    toml = CHAIN.replace('inputs = { data = "data.txt" }', 'inputs = { data = "more" }')
    first = run(toml)
    assert first["status"] == "succeeded", first
    assert explain_step(project / "pipeline.toml", "b")["changes"] == [
        "nothing: the key is unchanged"
    ]
    (project / "more/y.txt").write_text("3")
    (project / "helper.py").write_text("X = 2\n")
    now = explain_step(project / "pipeline.toml", "a")
    assert now["changes"] == [
        "input data: file more/y.txt changed content",
        "code: module helper changed",
    ]
    second = run(params={"suffix": "?"})
    recorded = explain_step(project / "pipeline.toml", "b", second["run_id"])
    assert recorded["against"] == first["run_id"]
    assert "parameter suffix: '!' -> '?'" in recorded["changes"]
    assert "input data: work/a.txt changed content" in recorded["changes"]


def _steps(project: Path) -> str:
    return (project / "steps.py").read_text()


def test_check_repro_reports_a_step_whose_output_differs(run: Run, project: Path) -> None:
    write(project, {"noisy.py": "import os\n\ndef main(inputs, outputs, params):\n"
                    "    outputs['out'].write_bytes(os.urandom(8))\n"})  # fmt: skip
    toml = CHAIN + (
        '\n[steps.n]\nkind = "python"\nfunction = "noisy:main"\noutputs = { out = "n.bin" }\n'
    )
    run(toml)
    published = (project / "n.bin").read_bytes()
    summary = run(check_repro=True)
    assert summary["not_reproducible"] == ["n"]
    assert summary["steps"]["a"]["reproducible"] is True
    assert (project / "n.bin").read_bytes() == published  # the check publishes nothing
    assert not [p for p in project.iterdir() if p.name.startswith(".n.bin")]


SCORE = """
[steps.score]
kind = "score"
keep = ["id"]
batch_size = 500
inputs = { model = "model.onnx", data = "in" }
outputs = { scored = "out/scored" }
"""


def finished_files(project: Path) -> int:
    for manifest in (project / "out").glob(".scored.partial-*/_sluice_manifest.json"):
        try:
            return len(json.loads(manifest.read_text())["finished"])
        except (OSError, ValueError):
            return 0
    return 0


@pytest.mark.slow
def test_killed_score_step_resumes_its_partial_output(project: Path) -> None:
    import numpy as np
    import onnx
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from benchmarks.models import mlp

    onnx.save(mlp((8, 64, 3), seed=1), str(project / "model.onnx"))
    (project / "in").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        columns = {f"f{j}": rng.random(40_000).astype(np.float32) for j in range(8)}
        ids = np.arange(i * 40_000, (i + 1) * 40_000)
        pq.write_table(pa.table({"id": ids, **columns}), project / "in" / f"part-{i}.parquet")
    write(project, {"pipeline.toml": SCORE})
    process = start(project, project / "err.log")
    wait_for(lambda: finished_files(project) >= 1 or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done = finished_files(project)
    if not 1 <= done < 6:
        pytest.skip(f"the kill landed after {done} of 6 files; nothing to resume")
    assert not (project / "out/scored").exists()
    summary = run_pipeline(project / "pipeline.toml", RunOptions())
    assert summary["steps"]["score"]["result"]["files_resumed"] == done
    table = ds.dataset(project / "out/scored").to_table()
    assert sorted(table["id"].to_pylist()) == list(range(240_000))  # every row once
