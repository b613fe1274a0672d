"""The step graph, from declared inputs: order, cycles, ancestors and descendants."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping

from server.pipeline.spec import Pipeline, PipelineError


class Graph:
    """Edges run from a producing step to each step that reads one of its outputs."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.parents: dict[str, set[str]] = {name: set() for name in pipeline.steps}
        for name, step in pipeline.steps.items():
            for ref in step.inputs.values():
                if ref.step is not None:
                    self.parents[name].add(ref.step)
            self.parents[name].update(step.after)
        self.children: dict[str, set[str]] = {name: set() for name in pipeline.steps}
        for name, parents in self.parents.items():
            for parent in parents:
                self.children[parent].add(name)
        self.order = _order(self.parents)

    def descendants(self, names: Iterable[str]) -> set[str]:
        """Every step downstream of ``names`` (not including them)."""
        found: set[str] = set()
        todo = [c for n in names for c in self.children[n]]
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(self.children[name])
        return found

    def ancestors(self, name: str) -> set[str]:
        found: set[str] = set()
        todo = list(self.parents[name])
        while todo:
            step = todo.pop()
            if step not in found:
                found.add(step)
                todo.extend(self.parents[step])
        return found


def _order(parents: Mapping[str, set[str]]) -> list[str]:
    sorter = graphlib.TopologicalSorter(parents)
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise PipelineError(f"the steps form a cycle through their inputs: {cycle}") from exc
