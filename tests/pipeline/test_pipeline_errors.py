"""Bad pipelines fail before anything runs, with a message naming the step and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.pipeline import PipelineError

from .conftest import CHAIN, Run

STEP = '[steps.{name}]\nkind = "python"\nfunction = "steps:copy"\n'


def fails(run: Run, toml: str, *fragments: str, **options: object) -> None:
    with pytest.raises(PipelineError) as info:
        run(toml, **options)
    for fragment in fragments:
        assert fragment in info.value.message


def test_cycle(run: Run) -> None:
    toml = (
        STEP.format(name="a") + 'inputs = { x = "b.out" }\noutputs = { out = "a.txt" }\n'
        + STEP.format(name="b") + 'inputs = { x = "a.out" }\noutputs = { out = "b.txt" }\n'
    )  # fmt: skip
    fails(run, toml, "cycle", "a", "b")


def test_unknown_kind(run: Run) -> None:
    fails(run, '[steps.a]\nkind = "train"\n', "step 'a'", "'kind'", "unknown kind 'train'")


def test_unknown_step_reference(run: Run) -> None:
    toml = STEP.format(name="a") + 'inputs = { x = "nosuch.out" }\noutputs = { out = "a.txt" }\n'
    fails(run, toml, "step 'a'", "inputs.x", "no step 'nosuch'")


def test_unknown_output_of_a_step(run: Run) -> None:
    toml = CHAIN.replace('inputs = { data = "a.out" }', 'inputs = { data = "a.missing" }')
    fails(run, toml, "step 'b'", "inputs.data", "no output 'missing'", "out")


def test_missing_input_file(run: Run) -> None:
    toml = CHAIN.replace('"data.txt"', '"absent.txt"')
    fails(run, toml, "step 'a'", "inputs.data", "absent.txt does not exist")


def test_output_declared_by_two_steps(run: Run) -> None:
    toml = CHAIN.replace('"work/b.txt"', '"work/a.txt"')
    fails(run, toml, "step 'b'", "outputs.out", "also declared by step 'a'")


def test_unused_and_unknown_parameters(run: Run) -> None:
    fails(run, CHAIN.replace('suffix = "!"', 'suffix = "!"\nunused = 1'), "not used", "unused")
    fails(run, CHAIN, "--param nope", params={"nope": "1"})


def test_reference_to_an_undeclared_parameter(run: Run) -> None:
    fails(run, CHAIN.replace("${params.suffix}", "${params.sufix}"), "step 'b'", "sufix")


def test_field_a_kind_does_not_take(run: Run) -> None:
    toml = CHAIN + '\n[steps.s]\nkind = "score"\nbatchsize = 10\n'
    fails(run, toml, "step 's'", "'batchsize'", "not a parameter of kind 'score'")


def test_bad_function_spec(run: Run) -> None:
    fails(run, CHAIN.replace('"steps:copy"', '"steps.copy"', 1), "step 'a'", "'function'")


def test_unknown_forced_step(run: Run) -> None:
    fails(run, CHAIN, "no step 'zz'", force=("zz",))


def test_python_step_that_raises_fails_its_branch_and_writes_nothing(
    run: Run, project: Path
) -> None:
    (project / "boom.py").write_text(
        "def main(inputs, outputs, params):\n"
        "    outputs['out'].write_text('half')\n"
        "    raise ValueError('bad row 7')\n"
    )
    toml = CHAIN + (
        '\n[steps.c]\nkind = "python"\nfunction = "boom:main"\n'
        'inputs = { data = "a.out" }\noutputs = { out = "work/c.txt" }\n'
        '\n[steps.d]\nkind = "python"\nfunction = "steps:copy"\n'
        'inputs = { data = "c.out" }\noutputs = { out = "work/d.txt" }\n'
    )
    summary = run(toml, jobs=2)
    assert summary["status"] == "failed"
    c = summary["steps"]["c"]
    assert c["status"] == "failed"
    assert "step 'c'" in c["error"] and "ValueError: bad row 7" in c["error"]
    assert summary["steps"]["d"]["status"] == "skipped"
    assert summary["steps"]["b"]["status"] == "succeeded"  # the other branch finished
    assert not (project / "work/c.txt").exists()
    assert not list((project / "work").glob(".c.txt*"))  # the staged half-output is gone
    assert not (project / "work/d.txt").exists()
    # Fixed, the rerun resumes: finished steps are reused, the failed one runs.
    (project / "boom.py").write_text(
        "def main(inputs, outputs, params):\n    outputs['out'].write_text('ok')\n"
    )
    again = run()
    assert {n: s["cache"] for n, s in again["steps"].items()} == {
        "a": "hit", "b": "hit", "c": "miss", "d": "miss",
    }  # fmt: skip


def test_step_that_does_not_write_its_output(run: Run, project: Path) -> None:
    (project / "lazy.py").write_text("def main(inputs, outputs, params):\n    pass\n")
    toml = '[steps.l]\nkind = "python"\nfunction = "lazy:main"\noutputs = { out = "l.txt" }\n'
    summary = run(toml)
    assert summary["steps"]["l"]["status"] == "failed"
    assert "did not write output(s) out" in summary["steps"]["l"]["error"]


def test_bad_jobs_and_pipeline_table(run: Run) -> None:
    fails(run, CHAIN, "--jobs must be >= 1", jobs=0)
    fails(run, '[pipeline]\npythonpath = ["."]\n' + CHAIN, "[pipeline] has no field 'pythonpath'")


def test_python_path_finds_modules_elsewhere(run: Run, project: Path) -> None:
    (project / "src").mkdir()
    (project / "steps.py").rename(project / "src" / "steps.py")
    summary = run('[pipeline]\npython_path = ["src"]\n' + CHAIN)
    assert summary["status"] == "succeeded", summary
