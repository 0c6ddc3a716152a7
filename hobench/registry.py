"""Name → class registries for tasks and strategies, with third-party entry points.

A registered class's keyword arguments are exactly the parameters a suite file may set for it,
so suites are validated against `inspect.signature` without building anything.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any


class UnknownName(KeyError):
    """A task or strategy name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, entry_point_group: str, builtin_module: str) -> None:
        self.kind = kind
        self.group = entry_point_group
        self.builtin_module = builtin_module
        self._classes: dict[str, type] = {}
        self._loaded_entry_points = False

    def register(self, name: str):
        """Class decorator: `@STRATEGIES.register("tpe")`."""

        def add(cls: type) -> type:
            self._classes[name] = cls
            cls.name = name
            return cls

        return add

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        importlib.import_module(self.builtin_module)  # its modules register the built-ins
        for ep in entry_points(group=self.group):
            if ep.name not in self._classes:
                self.register(ep.name)(ep.load())

    def populated(self) -> bool:
        """Whether anything is registered in this process yet (nothing is imported to know)."""
        return bool(self._classes)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._classes)

    def get(self, name: str) -> type:
        self._load_entry_points()
        if name not in self._classes:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UnknownName(
                f"unknown {self.kind} {name!r}; {hint}known: {', '.join(self.names())}"
            )
        return self._classes[name]

    def parameters(self, name: str) -> dict[str, Any]:
        """The keyword parameters of `name` and their defaults (inspect.Parameter.empty if none)."""
        sig = inspect.signature(self.get(name).__init__)
        keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return {
            p.name: p.default
            for p in list(sig.parameters.values())[1:]  # skip self
            if p.kind in keyword
        }

    def create(self, name: str, **params: Any) -> Any:
        return self.get(name)(**params)


TASKS = Registry("task", "hobench.tasks", "hobench.tasks")
STRATEGIES = Registry("strategy", "hobench.strategies", "hobench.strategies")
