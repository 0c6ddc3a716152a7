"""The registries described without importing them: what `hobench list` shows and what a suite
is first checked against, in a fraction of a second.

Importing the tasks and strategies imports torch, optuna and pandas: two seconds on a quiet
machine, twenty under load. Their descriptions (names, summaries, parameters with defaults,
domains) are saved as JSON whenever they have been imported, keyed by a fingerprint of every
source file that defines them (hobench itself, the HOBENCH_PLUGINS modules, the entry points'
packages) and of the registered entry points; a later command whose fingerprint matches reads
the file instead. The catalog is a first pass only: it has no `check_params` (code), so a suite
that passes it is validated again against the imported classes before anything runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import sys
from dataclasses import asdict
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import hobench
from hobench.domains import Choice, Interval
from hobench.registry import STRATEGIES, TASKS, Registry

CACHE_ENV = "HOBENCH_CACHE_DIR"
PLUGINS_ENV = "HOBENCH_PLUGINS"
FORMAT = 1  # bumped when the file's layout changes


class Exotic:
    """A default JSON cannot hold: shown by its repr, accepted as any type (as the validator
    does for such defaults)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class CachedRegistry:
    """The part of a `Registry` the suite validator and `hobench list` use, read from JSON."""

    def __init__(self, kind: str, entries: dict[str, dict[str, Any]]) -> None:
        self.kind, self._entries = kind, entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> type:
        """A stand-in class: its docstring and domains; no `check_params`."""
        entry = self._entries[name]
        domains = {k: _domain_from(v) for k, v in entry["domains"].items()}
        return type(name, (), {"__doc__": entry["doc"], "domains": domains})

    def parameters(self, name: str) -> dict[str, Any]:
        return {k: _default_from(v) for k, v in self._entries[name]["params"].items()}


def cache_dir() -> Path:
    """`$HOBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/hobench`, else `~/.cache/hobench`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hobench"


def cached() -> tuple[CachedRegistry, CachedRegistry] | None:
    """The tasks' and strategies' catalogs when a fresh one is saved, else None; None too when
    this process has registered anything already: then the live registries cost nothing, and
    they may hold classes no source file covers (a test's, a notebook's)."""
    if TASKS.populated() or STRATEGIES.populated():
        return None
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT:
        return None
    return CachedRegistry("task", data["task"]), CachedRegistry("strategy", data["strategy"])


def save() -> None:
    """Describe the imported registries into the cache (nothing when one is there already, or
    it cannot be written: the cache only saves time)."""
    path = _path()
    if path.is_file() or not _only_from_sources():
        return
    data = {"format": FORMAT, "task": _describe(TASKS), "strategy": _describe(STRATEGIES)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _only_from_sources() -> bool:
    """Whether every registered class comes from a module the fingerprint covers: hobench, a
    HOBENCH_PLUGINS module or an entry point's (or one of their submodules). A class registered
    at run time (a test, a notebook) would otherwise be saved for commands that lack it."""
    modules = ["hobench", *_plugins()]
    modules += [ep.module for ep in _entry_points()]
    return all(
        any(cls.__module__ == m or cls.__module__.startswith(f"{m}.") for m in modules)
        for registry in (TASKS, STRATEGIES)
        for cls in (registry.get(name) for name in registry.names())
    )


def _plugins() -> list[str]:
    return [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]


def _entry_points() -> list:
    return [ep for group in (TASKS.group, STRATEGIES.group) for ep in entry_points(group=group)]


def _path() -> Path:
    return cache_dir() / f"catalog-{_fingerprint()[:20]}.json"


def _fingerprint() -> str:
    """Changes whenever a file that may register or change a task or strategy does."""
    digest = hashlib.sha256(f"{FORMAT} {sys.version} {hobench.__version__}".encode())
    plugins, points = _plugins(), _entry_points()
    digest.update(f"plugins={plugins}".encode())
    for ep in points:
        version = ep.dist.version if ep.dist else ""
        digest.update(f"{ep.group}:{ep.name}={ep.value}@{version}".encode())
    roots = [Path(hobench.__file__).parent]
    roots += [_source_root(name) for name in plugins + [ep.module for ep in points]]
    for root in dict.fromkeys(roots):
        files = [root] if root is None or root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            digest.update(_stamp(file).encode())
    return digest.hexdigest()


def _source_root(module: str) -> Path | None:
    """The folder (or file) of a module's top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin) if spec.origin else None


def _stamp(path: Path | None) -> str:
    try:
        stat = path.stat()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return f"{path}:missing;"
    return f"{path}:{stat.st_mtime_ns}:{stat.st_size};"


def _describe(registry: Registry) -> dict[str, dict[str, Any]]:
    entries = {}
    for name in registry.names():
        cls = registry.get(name)
        entries[name] = {
            "doc": cls.__dict__.get("__doc__"),
            "params": {k: _default_to(v) for k, v in registry.parameters(name).items()},
            "domains": {
                k: d
                for k, d in ((k, _domain_to(v)) for k, v in getattr(cls, "domains", {}).items())
                if d is not None  # a plugin's own kind of domain: checked in the second pass
            },
        }
    return entries


def _default_to(value: Any) -> dict[str, Any]:
    if value is inspect.Parameter.empty:
        return {"required": True}
    if isinstance(value, tuple):
        return {"tuple": [_default_to(v) for v in value]}
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return {"repr": repr(value)}
    return {"value": value}


def _default_from(entry: dict[str, Any]) -> Any:
    if "required" in entry:
        return inspect.Parameter.empty
    if "tuple" in entry:
        return tuple(_default_from(v) for v in entry["tuple"])
    if "repr" in entry:
        return Exotic(entry["repr"])
    return entry["value"]


def _domain_to(domain: Any) -> dict[str, Any] | None:
    if type(domain) is Interval:
        return {"interval": asdict(domain)}
    if type(domain) is Choice:
        options = [_default_to(option) for option in domain.options]
        return None if any("value" not in o for o in options) else {"choice": options}
    return None


def _domain_from(entry: dict[str, Any]) -> Interval | Choice:
    if "interval" in entry:
        return Interval(**entry["interval"])
    return Choice(tuple(_default_from(option) for option in entry["choice"]))
