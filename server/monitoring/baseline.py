"""Baselines: the reference profiles of every feature, built from data and saved to one file.

The file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays plus a JSON header) read with
``allow_pickle=False``, so loading a baseline never runs code from it. A model version can carry
it as an artifact. Arrays are keyed by feature position, so any feature name is safe.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from server.errors import ConfigError, InvalidInput
from server.monitoring.columns import category_counts, feature_kind, numeric_chunks
from server.monitoring.profile import (
    CategoricalProfile,
    FloatArray,
    NumericProfile,
    categorical_profile,
    numeric_profile,
)

FORMAT = "sluice-baseline"
VERSION = 1
_HEADER = "header"

Profile = NumericProfile | CategoricalProfile


@dataclass(frozen=True, slots=True)
class BaselineOptions:
    """How a baseline is built: the sorted-sample cap per feature and its sampling seed."""

    sample_cap: int = 1_000_000
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if self.sample_cap < 1:
            raise ConfigError("baseline sample_cap must be >= 1")
        if self.threads < 1:
            raise ConfigError("baseline threads must be >= 1")


@dataclass(frozen=True, slots=True)
class Baseline:
    """Profiles by feature name, in the reference's column order; ``skipped`` names columns
    of unsupported types with the reason."""

    profiles: Mapping[str, Profile]
    skipped: Mapping[str, str] = field(default_factory=dict)


def profile_column(
    column: pa.ChunkedArray,
    options: BaselineOptions,
    position: int,
    scratch: FloatArray | None = None,
) -> Profile:
    """Profile one reference column; ``position`` varies the sampling seed per feature. A
    numeric profile built with ``scratch`` is valid only until the scratch is reused."""
    if feature_kind(column.type) == "numeric":
        chunks = numeric_chunks(column)
        return numeric_profile(chunks, options.sample_cap, options.seed + position, scratch)
    counts, nulls = category_counts(column)
    return categorical_profile(counts, nulls, len(column))


def unsupported_columns(table: pa.Table) -> dict[str, str]:
    return {
        name: f"unsupported type {table.schema.field(name).type}"
        for name in table.column_names
        if feature_kind(table.schema.field(name).type) is None
    }


def build_baseline(table: pa.Table, options: BaselineOptions) -> Baseline:
    """Profile every supported column of ``table``, ``options.threads`` columns at a time."""
    skipped = unsupported_columns(table)
    names = [name for name in table.column_names if name not in skipped]

    def build(position: int) -> Profile:
        return profile_column(table.column(names[position]), options, position)

    with ThreadPoolExecutor(options.threads) as pool:
        profiles = list(pool.map(build, range(len(names))))
    return Baseline(dict(zip(names, profiles, strict=True)), skipped)


def save_baseline(baseline: Baseline, path: str | os.PathLike[str]) -> None:
    """Write ``baseline`` to ``path`` atomically (a temporary file renamed into place)."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    features: list[dict[str, Any]] = []
    for i, (name, profile) in enumerate(baseline.profiles.items()):
        if isinstance(profile, NumericProfile):
            features.append(
                {
                    "name": name,
                    "kind": "numeric",
                    "rows": profile.rows,
                    "count": profile.count,
                    "nulls": profile.nulls,
                    "nonfinite": profile.nonfinite,
                    "min": profile.minimum,
                    "max": profile.maximum,
                    "mean": profile.mean,
                    "std": profile.std,
                }
            )
            arrays[f"{i}_edges"] = profile.edges
            arrays[f"{i}_proportions"] = profile.proportions
            arrays[f"{i}_sample"] = profile.sample
        else:
            features.append(
                {
                    "name": name,
                    "kind": "categorical",
                    "rows": profile.rows,
                    "nulls": profile.nulls,
                    "categories": list(profile.categories),
                }
            )
            arrays[f"{i}_counts"] = profile.counts
    header = {"format": FORMAT, "version": VERSION, "features": features}
    header["skipped"] = dict(baseline.skipped)
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)
    os.replace(temporary, target)


def is_baseline_file(path: str) -> bool:
    """Whether ``path`` is a local file holding a saved baseline."""
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return f"{_HEADER}.npy" in archive.namelist()


def load_baseline(path: str) -> Baseline:
    """Read a baseline written by ``save_baseline``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(archive[_HEADER].tobytes())
            if header.get("format") != FORMAT or header.get("version") != VERSION:
                raise InvalidInput(f"{path}: not a sluice baseline (version {VERSION})")
            profiles = {
                entry["name"]: _profile_from(entry, archive, i)
                for i, entry in enumerate(header["features"])
            }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"{path}: cannot read baseline: {exc}") from exc
    return Baseline(profiles, header.get("skipped", {}))


def _profile_from(entry: dict[str, Any], archive: Any, i: int) -> Profile:
    if entry["kind"] == "numeric":
        return NumericProfile(
            rows=int(entry["rows"]),
            count=int(entry["count"]),
            nulls=int(entry["nulls"]),
            nonfinite=int(entry["nonfinite"]),
            minimum=float(entry["min"]),
            maximum=float(entry["max"]),
            mean=float(entry["mean"]),
            std=float(entry["std"]),
            edges=archive[f"{i}_edges"],
            proportions=archive[f"{i}_proportions"],
            sample=archive[f"{i}_sample"],
        )
    return CategoricalProfile(
        rows=int(entry["rows"]),
        nulls=int(entry["nulls"]),
        categories=tuple(entry["categories"]),
        counts=archive[f"{i}_counts"],
    )
