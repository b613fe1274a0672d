"""Knobs as the TOML ``sluice serve --config`` reads: ``[server]``, ``[batching]``,
``[runtime]``; the same file works as ``REPO/<name>/config.toml`` (the model tables are read,
``[server]`` is ignored there).

Written by hand rather than with ``tomli_w``: every value is an int or a bool, and the
recommendation travels in comments, which ``tomli_w`` cannot write.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.profiler.space import Knobs


def _value(value: int | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def config_toml(knobs: Knobs, comments: Iterable[str] = ()) -> str:
    lines = [f"# {line}".rstrip() for line in comments]
    tables: dict[str, dict[str, int | bool]] = {
        "server": {"workers": knobs.workers},
        "batching": {
            "max_batch_size": knobs.max_batch_size,
            "max_queue_delay_us": knobs.max_queue_delay_us,
        },
        "runtime": {
            "instances": knobs.instances,
            "intra_op_threads": knobs.intra_op_threads,
            "inter_op_threads": knobs.inter_op_threads,
            "allow_spinning": knobs.allow_spinning,
            "memory_arena": knobs.memory_arena,
        },
    }
    for table, values in tables.items():
        if lines:
            lines.append("")
        lines.append(f"[{table}]")
        lines += [f"{key} = {_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
