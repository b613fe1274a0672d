"""The knobs a profile searches, the cores they may use, and the grid they span."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from server.errors import ConfigError


@dataclass(frozen=True, slots=True, order=True)
class Knobs:
    """One server configuration: the values a trial runs with."""

    instances: int = 1
    intra_op_threads: int = 1
    workers: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    memory_arena: bool = True
    max_batch_size: int = 64
    max_queue_delay_us: int = 0

    @property
    def threads(self) -> int:
        """Compute threads the configuration runs at once: what the constraint bounds."""
        return self.instances * self.intra_op_threads * self.workers

    @property
    def label(self) -> str:
        spin = "spin" if self.allow_spinning else "nospin"
        arena = "" if self.memory_arena else " noarena"
        return (
            f"w{self.workers} i{self.instances} t{self.intra_op_threads} {spin}{arena} "
            f"b{self.max_batch_size} d{self.max_queue_delay_us}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


KNOBS = tuple(f.name for f in fields(Knobs))


@dataclass(frozen=True, slots=True)
class Space:
    """The values each knob may take, and the cores the configuration may use.

    The constraint: ``instances x intra_op_threads x workers <= cores``. Each instance runs one
    session at a time with its intra-op threads, and each worker process holds its own
    instances, so the product is the number of threads computing at once; more than the cores
    only time-slices them (and spinning threads then burn the cores the others wait for).
    ``inter_op_threads`` stays out of the product: with ``execution_mode = "sequential"`` ONNX
    Runtime runs no inter-op pool.
    """

    cores: int
    instances: tuple[int, ...]
    intra_op_threads: tuple[int, ...]
    workers: tuple[int, ...]
    inter_op_threads: tuple[int, ...] = (1,)
    allow_spinning: tuple[bool, ...] = (False, True)
    memory_arena: tuple[bool, ...] = (True,)
    max_batch_size: tuple[int, ...] = (64,)
    max_queue_delay_us: tuple[int, ...] = (0, 1000)

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise ConfigError(f"cores must be at least 1, got {self.cores}")
        for name in KNOBS:
            if not getattr(self, name):
                raise ConfigError(f"the knob space gives no value for {name}")

    def allows(self, knobs: Knobs) -> bool:
        return knobs.threads <= self.cores and all(
            getattr(knobs, name) in getattr(self, name) for name in KNOBS
        )

    def grid(self) -> list[Knobs]:
        """Every allowed configuration: what an exhaustive search would run."""
        values = [getattr(self, name) for name in KNOBS]
        every = (Knobs(*combo) for combo in itertools.product(*values))
        return sorted(k for k in every if k.threads <= self.cores)

    def layouts(self) -> list[Knobs]:
        """The coarse pass: each way of spreading threads over workers, instances and intra-op
        threads that uses more than half the cores (or all of them, when fewer fit), other
        knobs at their middle values."""
        middle = {name: _middle(getattr(self, name)) for name in KNOBS[3:]}
        shapes = [
            Knobs(i, t, w, **middle)
            for w, i, t in itertools.product(self.workers, self.instances, self.intra_op_threads)
            if i * t * w <= self.cores
        ]
        most = max(k.threads for k in shapes)
        floor = min(most, self.cores // 2 + 1)
        chosen = [k for k in shapes if k.threads >= floor]
        # Fewest processes first: a worker costs a Python process and a model copy.
        return sorted(chosen, key=lambda k: (k.workers, -k.threads, k.instances))

    def neighbours(self, knobs: Knobs) -> Iterator[Knobs]:
        """Configurations one step away on one knob (the fine pass), allowed ones only."""
        for name in KNOBS:
            options = getattr(self, name)
            here = getattr(knobs, name)
            index = options.index(here) if here in options else 0
            for step in (-1, 1):
                j = index + step
                if 0 <= j < len(options):
                    moved = replace(knobs, **{name: options[j]})
                    if self.allows(moved):
                        yield moved


def _middle(options: tuple[Any, ...]) -> Any:
    return options[(len(options) - 1) // 2]


def default_space(cores: int, rows: int) -> Space:
    """The space ``sluice profile`` searches for ``cores`` and requests of ``rows`` rows."""
    powers = tuple(p for p in (1, 2, 4, 8, 16, 32, 64) if p <= cores)
    return Space(
        cores=cores,
        instances=powers[:4],
        intra_op_threads=powers,
        workers=tuple(p for p in (1, 2, 4) if p <= cores),
        allow_spinning=(False, True),
        memory_arena=(True, False),
        max_batch_size=tuple(rows * m for m in (1, 8, 64) if rows * m <= 4096) or (rows,),
        max_queue_delay_us=(0, 500, 2000),
    )
