"""``explain``: which part of a step's key changed, in words, between two records of it.

``explain_step(path, step)`` compares the key the step would have now (from the files as they
are) with its newest record; with ``run`` it compares that run's key with the step's record
before it. Each change names what moved: the parameter, the input file, the imported module,
the tool version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.pipeline.hashing import Hasher
from server.pipeline.key import key_of, key_parts
from server.pipeline.kinds import KINDS
from server.pipeline.records import Records, StepRecord, connect
from server.pipeline.runner import prepare
from server.pipeline.spec import PipelineError


def explain_step(path: Path, step: str, run: str | None = None) -> dict[str, Any]:
    pipeline, _ = prepare(path, {})
    if step not in pipeline.steps:
        raise PipelineError(f"the pipeline has no step '{step}'")
    records = Records(connect(pipeline.root))
    try:
        history = records.step_history(pipeline.path, step)
        if run is None:
            try:
                parts = key_parts(
                    pipeline.steps[step], KINDS[pipeline.steps[step].kind], pipeline,
                    Hasher(records.db),
                )  # fmt: skip
            except FileNotFoundError as exc:
                raise PipelineError(
                    f"step '{step}': input {exc.filename} does not exist yet (run the pipeline)"
                ) from exc
            newer: dict[str, Any] = {"run": "now", "key": key_of(parts), "parts": parts}
            older = history[0] if history else None
        else:
            index = next((i for i, r in enumerate(history) if r.run_id.startswith(run)), None)
            if index is None:
                raise PipelineError(f"run '{run}' has no keyed record of step '{step}'")
            record = history[index]
            newer = {"run": record.run_id, "key": record.key, "parts": record.parts}
            older = history[index + 1] if index + 1 < len(history) else None
    finally:
        records.db.close()
    return _explanation(step, newer, older)


def _explanation(step: str, newer: dict[str, Any], older: StepRecord | None) -> dict[str, Any]:
    body: dict[str, Any] = {"step": step, "run": newer["run"], "key": newer["key"]}
    if older is None or older.parts is None:
        body.update(against=None, changes=["no earlier record of this step: nothing to compare"])
        return body
    body["against"] = older.run_id
    body["previous_key"] = older.key
    changes = diff_parts(older.parts, newer["parts"])
    body["changes"] = changes or ["nothing: the key is unchanged"]
    return body


def diff_parts(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every difference between two keys' parts, one sentence each."""
    changes: list[str] = []
    if old.get("kind") != new.get("kind"):
        changes.append(f"kind: {old.get('kind')} -> {new.get('kind')}")
    changes += _mapping_diff("parameter", old.get("params", {}), new.get("params", {}))
    changes += _mapping_diff("output path", old.get("outputs", {}), new.get("outputs", {}))
    changes += _inputs_diff(old.get("inputs", {}), new.get("inputs", {}))
    changes += _code_diff(old.get("code", {}), new.get("code", {}))
    changes += _mapping_diff("version of", old.get("versions", {}), new.get("versions", {}))
    if old.get("deterministic") != new.get("deterministic"):
        changes.append(f"deterministic: {old.get('deterministic')} -> {new.get('deterministic')}")
    return changes


def _mapping_diff(label: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            lines.append(f"{label} {name}: added ({new[name]!r})")
        elif name not in new:
            lines.append(f"{label} {name}: removed (was {old[name]!r})")
        elif old[name] != new[name]:
            lines.append(f"{label} {name}: {old[name]!r} -> {new[name]!r}")
    return lines


def _inputs_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        label = "model file" if name == "model" else f"input {name}"
        if name not in old or name not in new:
            lines.append(f"{label}: {'added' if name in new else 'removed'}")
            continue
        a, b = old[name], new[name]
        if a["path"] != b["path"]:
            lines.append(f"{label}: path {a['path']} -> {b['path']}")
        elif a["digest"] == b["digest"]:
            continue
        if "files" in a and "files" in b:
            for file in sorted(a["files"].keys() | b["files"].keys()):
                where = f"{b['path']}/{file}"
                if file not in a["files"]:
                    lines.append(f"{label}: file {where} added")
                elif file not in b["files"]:
                    lines.append(f"{label}: file {where} removed")
                elif a["files"][file] != b["files"][file]:
                    lines.append(f"{label}: file {where} changed content")
        elif a["path"] == b["path"]:
            lines.append(f"{label}: {b['path']} changed content")
    return lines


def _code_diff(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for module in sorted(old.keys() | new.keys()):
        if module not in old:
            lines.append(f"code: module {module} is now imported")
        elif module not in new:
            lines.append(f"code: module {module} is no longer imported")
        elif old[module] != new[module]:
            lines.append(f"code: module {module} changed")
    return lines
