"""Load and validate TOML suites: which tasks, strategies, seeds, budget and device to run.

Every problem in a suite file is reported as one `SuiteError` line naming the file, the key path
and the fix, before anything runs: a typo should cost a second, not a night of benchmarking.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hobench.domains import ParamError, check
from hobench.registry import STRATEGIES, TASKS, Registry

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "seeds",
    "device",
    "budget",
    "tasks",
    "strategies",
    "exclude",
    "threads",
    "compile",
    "paper_tables",
)
PAPER_TABLES = ("hypercleaning", "auxtarget")  # paper tables a report can show after its own
BUDGET_KEYS = ("cost", "seconds", "steps")
MIN_SECONDS = 0.1  # below this the process start alone overruns the budget
HARNESS_TASK_KEYS = {
    "seed": "set `seeds` at the top level",
    "device": "set `device` at the top level or pass --device",
    "data_dir": "pass --data-dir",
}
PLUGINS_ENV = "HOBENCH_PLUGINS"
DEVICE_PATTERN = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")
# The one rule for every name that becomes a path or a table key (suite names, task and strategy
# ids): portable in file names, cell keys ("task/strategy/seed") and Markdown tables.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: `$` would let a final "\n" in
NAME_RULE = "use letters, digits, '.', '_' and '-' (ASCII), starting with a letter or digit"
MAX_SEED = 2**32 - 1  # numpy's global seed takes no more


class SuiteError(ValueError):
    """A suite file that cannot be run; the message is one line: file, key path, problem, fix."""


class PluginError(ImportError):
    """A module named in HOBENCH_PLUGINS cannot be imported."""


def load_registries() -> None:
    """Register the built-in tasks and strategies, then the modules named in HOBENCH_PLUGINS.

    HOBENCH_PLUGINS (comma-separated module names) lets users and tests add tasks and
    strategies without packaging an entry point; worker processes import them too.
    """
    importlib.import_module("hobench.tasks")
    importlib.import_module("hobench.strategies")
    for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise PluginError(
                f"{PLUGINS_ENV}: cannot import module {name!r} ({exc}); "
                "check the name and PYTHONPATH"
            ) from None


@dataclass(frozen=True)
class Cell:
    """One unit of work: one task × one strategy × one seed, with its budget and device."""

    task_id: str
    task_kind: str
    task_params: dict[str, Any]
    strategy_id: str
    strategy_kind: str
    strategy_params: dict[str, Any]
    seed: int
    budget: dict[str, Any]
    device: str
    threads: int = 1
    compile: bool = True  # the engine's compiled path where a strategy does not say

    @property
    def key(self) -> str:
        return f"{self.task_id}/{self.strategy_id}/{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**data)


@dataclass(frozen=True)
class Entry:
    """One `[[tasks]]` or `[[strategies]]` table: id, registered kind and its parameters."""

    id: str
    kind: str
    params: dict[str, Any]
    budget: dict[str, Any] | None = None  # strategies only: replaces the suite budget


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str
    seeds: tuple[int, ...]
    device: str
    budget: dict[str, Any] | None
    tasks: tuple[Entry, ...]
    strategies: tuple[Entry, ...]
    exclude: tuple[str, ...] = ()  # "task_id/strategy_id" pairs not to run
    threads: int = 1  # torch threads per cell: pinned, so results do not depend on --jobs
    paper_tables: tuple[str, ...] = ()  # paper experiments the report compares with
    compile: bool = True  # gradient strategies on the engine's compiled path (false: eager)

    def cells(self, device: str | None = None) -> list[Cell]:
        """All cells, task-major then strategy then seed; `device` overrides the suite's."""
        return [
            Cell(
                task_id=task.id,
                task_kind=task.kind,
                task_params=dict(task.params),
                strategy_id=strategy.id,
                strategy_kind=strategy.kind,
                strategy_params=dict(strategy.params),
                seed=seed,
                budget=dict(strategy.budget or self.budget or {}),
                device=device or self.device,
                threads=self.threads,
                compile=self.compile,
            )
            for task in self.tasks
            for strategy in self.strategies
            if f"{task.id}/{strategy.id}" not in self.exclude
            for seed in self.seeds
        ]


def suite_dirs() -> list[Path]:
    """Where bare suite names are looked up: ./suites, then the suites hobench ships (those of
    the source tree it is installed from)."""
    shipped = Path(__file__).resolve().parents[2] / "suites"
    dirs = [d for d in (Path("suites"), shipped) if d.is_dir()]
    return [d for i, d in enumerate(dirs) if d.resolve() not in {e.resolve() for e in dirs[:i]}]


def resolve_suite_path(spec: str | Path) -> Path:
    """`spec` as given, or `<dir>/<spec>.toml` from `suite_dirs()` when `spec` is a bare suite
    name. A name found nowhere raises SuiteError naming the closest known suite."""
    path = Path(spec)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    for directory in suite_dirs():
        if (candidate := directory / f"{spec}.toml").is_file():
            return candidate
    known = sorted({p.stem for d in suite_dirs() for p in d.glob("*.toml")})
    raise SuiteError(
        f"{spec}: no such suite file or suite name; "
        f"{did_you_mean(str(spec), known)}known suites: {', '.join(known) or '(none)'}"
    )


def did_you_mean(name: str, known: list[str]) -> str:
    """'did you mean 'X'? ' for the closest known name, or '' when none is close."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; raise `SuiteError` (one line) on the first problem.

    A first pass against the saved catalog of the registries (hobench.catalog) finds most
    mistakes before torch is imported; the second, against the imported classes, is complete.
    """
    path = Path(path)
    data = _read_toml(path)
    from hobench import catalog  # here: it hashes the sources, which only loading needs

    first = catalog.cached()
    if first is not None:
        _Validator(path, *first).suite(data)
    load_registries()
    catalog.save()
    return _Validator(path, TASKS, STRATEGIES).suite(data)


def check_suite(path: str | Path) -> Suite:
    """Validate a suite file against the saved catalog alone when there is one (the first pass
    of `load_suite`: no torch, no `check_params`), else as `load_suite` does."""
    path = Path(path)
    from hobench import catalog

    first = catalog.cached()
    if first is None:
        return load_suite(path)
    return _Validator(path, *first).suite(_read_toml(path))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: file not found; give the path of a .toml suite") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SuiteError(
            f"{path}: cannot read file ({reason}); give a readable UTF-8 file"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with "(at line L, column C)" or "(at end of document)".
        message = str(exc)
        where = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if where:
            position = f"line {where[1]}, column {where[2]}"
        else:
            position = f"line {len(text.splitlines()) or 1} (end of file)"
        message = re.sub(r"\s*\(at [^)]*\)$", "", message)
        raise SuiteError(
            f"{path}: {position}: TOML syntax error: {message}; fix the syntax"
        ) from None


def _type_name(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Validator:
    """Walks the parsed TOML; every check raises one SuiteError naming `self.path` and a key."""

    def __init__(self, path: Path, tasks: Registry, strategies: Registry) -> None:
        # `tasks`, `strategies`: the live registries, or hobench.catalog's saved ones.
        self.path, self.tasks, self.strategies = path, tasks, strategies

    def fail(self, key: str, problem: str, fix: str) -> SuiteError:
        return SuiteError(f"{self.path}: {key}: {problem}; {fix}")

    def suite(self, data: dict[str, Any]) -> Suite:
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                raise self.fail(
                    key, "unknown top-level key", f"allowed: {', '.join(TOP_LEVEL_KEYS)}"
                )
        name = self.string(data, "name", self.path.stem)
        if not _NAME.fullmatch(name):
            raise self.fail("name", f"{name!r} is not a usable directory name", NAME_RULE)
        tasks = self.entries(data, "tasks", self.tasks)
        strategies = self.entries(data, "strategies", self.strategies)
        budget = None
        if "budget" in data:
            budget = self.budget(data["budget"], "budget")
        elif any(s.budget is None for s in strategies):
            raise self.fail(
                "budget", "missing", "add a [budget] table with `cost`, `seconds` and/or `steps`"
            )
        return Suite(
            name=name,
            path=str(self.path),
            description=self.string(data, "description", ""),
            seeds=self.seeds(data.get("seeds", 1)),
            device=self.device(data.get("device", "cpu")),
            budget=budget,
            tasks=tasks,
            strategies=strategies,
            exclude=self.exclude(data.get("exclude", []), tasks, strategies),
            threads=self.threads(data.get("threads", 1)),
            paper_tables=self.paper_tables(data.get("paper_tables", [])),
            compile=self.compile(data.get("compile", True)),
        )

    def compile(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(
                "compile",
                f"expected true or false, got {value!r}",
                "compile = false runs every gradient strategy eager (default: true, compiled)",
            )
        return value

    def paper_tables(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or any(v not in PAPER_TABLES for v in value):
            raise self.fail(
                "paper_tables",
                f"expected a list of {', '.join(map(repr, PAPER_TABLES))}, got {value!r}",
                'e.g. paper_tables = ["hypercleaning"], or leave it out for no paper table',
            )
        return tuple(dict.fromkeys(value))

    def threads(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(
                "threads",
                f"expected an integer >= 1, got {value!r}",
                "set the torch threads each cell uses, e.g. threads = 1",
            )
        return value

    def string(self, table: dict[str, Any], key: str, default: str, where: str = "") -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.fail(
                f"{where}{key}",
                f"expected a string, got {_type_name(value)}",
                f'write {key} = "..."',
            )
        return value

    def seeds(self, value: Any) -> tuple[int, ...]:
        fix = "use a list of distinct non-negative integers, e.g. seeds = [0, 1], or a count"
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise self.fail("seeds", f"count {value} runs nothing", fix)
            return tuple(range(value))
        if not isinstance(value, list):
            raise self.fail("seeds", f"expected a list or an integer, got {_type_name(value)}", fix)
        if not value:
            raise self.fail("seeds", "empty list", fix)
        for i, seed in enumerate(value):
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise self.fail(f"seeds[{i}]", f"expected an integer, got {_type_name(seed)}", fix)
            if seed < 0:
                raise self.fail(f"seeds[{i}]", f"negative seed {seed}", fix)
            if seed > MAX_SEED:
                raise self.fail(f"seeds[{i}]", f"seed {seed} is above {MAX_SEED}", fix)
            if seed in value[:i]:
                raise self.fail(f"seeds[{i}]", f"duplicate seed {seed}", fix)
        return tuple(value)

    def exclude(
        self, value: Any, tasks: tuple[Entry, ...], strategies: tuple[Entry, ...]
    ) -> tuple[str, ...]:
        """Task/strategy pairs not to run (e.g. forward-HG where m makes it hopeless)."""
        fix = 'use a list of "TASK_ID/STRATEGY_ID" strings'
        if not isinstance(value, list):
            raise self.fail("exclude", f"expected a list, got {_type_name(value)}", fix)
        task_ids, strategy_ids = [t.id for t in tasks], [s.id for s in strategies]
        for i, pair in enumerate(value):
            if not isinstance(pair, str) or pair.count("/") != 1:
                raise self.fail(f"exclude[{i}]", f"not a TASK_ID/STRATEGY_ID pair: {pair!r}", fix)
            task_id, strategy_id = pair.split("/")
            if task_id not in task_ids:
                known = f"task ids: {', '.join(task_ids)}"
                raise self.fail(f"exclude[{i}]", f"unknown task id {task_id!r}", known)
            if strategy_id not in strategy_ids:
                known = f"strategy ids: {', '.join(strategy_ids)}"
                raise self.fail(f"exclude[{i}]", f"unknown strategy id {strategy_id!r}", known)
        if len(set(value)) == len(task_ids) * len(strategy_ids):
            raise self.fail("exclude", "excludes every task/strategy pair", "remove some pairs")
        return tuple(value)

    def device(self, value: Any) -> str:
        if not isinstance(value, str) or not DEVICE_PATTERN.match(value):
            raise self.fail("device", f"bad device {value!r}", "use cpu, cuda, cuda:N or auto")
        return value

    def budget(self, value: Any, where: str) -> dict[str, Any]:
        fix = (
            "give cost (plain-training runs, > 0), seconds (>= 0.1) and/or steps (an integer >= 1)"
        )
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {_type_name(value)}", fix)
        for key in value:
            if key not in BUDGET_KEYS:
                raise self.fail(f"{where}.{key}", "unknown budget key", fix)
        if not value:
            raise self.fail(where, "empty budget", fix)
        cost, seconds, steps = value.get("cost"), value.get("seconds"), value.get("steps")
        if cost is not None:
            if not _is_number(cost) or not math.isfinite(cost):
                raise self.fail(f"{where}.cost", f"not a finite number: {cost!r}", fix)
            if cost <= 0:
                raise self.fail(f"{where}.cost", f"non-positive: {cost}", fix)
        if seconds is not None:
            if not _is_number(seconds) or not math.isfinite(seconds):
                raise self.fail(f"{where}.seconds", f"not a finite number: {seconds!r}", fix)
            if seconds <= 0:
                raise self.fail(f"{where}.seconds", f"non-positive: {seconds}", fix)
            if seconds < MIN_SECONDS:
                raise self.fail(f"{where}.seconds", f"impossible budget {seconds} s", fix)
        if steps is not None:
            if not isinstance(steps, int) or isinstance(steps, bool):
                raise self.fail(f"{where}.steps", f"not an integer: {steps!r}", fix)
            if steps < 1:
                raise self.fail(f"{where}.steps", f"impossible budget of {steps} steps", fix)
        return {
            "cost": None if cost is None else float(cost),
            "seconds": None if seconds is None else float(seconds),
            "steps": steps,
        }

    def entries(self, data: dict[str, Any], key: str, registry: Registry) -> tuple[Entry, ...]:
        fix = f"add at least one [[{key}]] table with a `kind`"
        if key not in data:
            raise self.fail(key, "missing", fix)
        tables = data[key]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise self.fail(key, f"expected [[{key}]] tables", fix)
        if not tables:
            raise self.fail(key, "empty list", fix)
        entries: list[Entry] = []
        for i, table in enumerate(tables):
            entry = self.entry(table, f"{key}[{i}]", registry, is_task=key == "tasks")
            if any(e.id == entry.id for e in entries):
                raise self.fail(
                    f"{key}[{i}].id", f"duplicate id {entry.id!r}", "give each entry a unique `id`"
                )
            entries.append(entry)
        return tuple(entries)

    def entry(self, table: dict[str, Any], where: str, registry: Registry, is_task: bool) -> Entry:
        known = ", ".join(registry.names()) or "(none registered)"
        if "kind" not in table:
            raise self.fail(f"{where}.kind", "missing", f"known {registry.kind} kinds: {known}")
        kind = self.string(table, "kind", "", f"{where}.")
        if kind not in registry.names():
            suggestion = did_you_mean(kind, registry.names())
            raise self.fail(
                f"{where}.kind", f"unknown {registry.kind} {kind!r}", f"{suggestion}known: {known}"
            )
        entry_id = self.string(table, "id", kind, f"{where}.")
        if not _NAME.fullmatch(entry_id):  # part of cell keys, file lines and table rows
            fix = NAME_RULE if "id" in table else f"{NAME_RULE}: set an `id`"
            raise self.fail(f"{where}.id", f"bad id {entry_id!r}", fix)
        params = {k: v for k, v in table.items() if k not in ("id", "kind", "budget")}
        budget = None
        if "budget" in table:
            if is_task:
                raise self.fail(
                    f"{where}.budget",
                    "a task has no budget",
                    "set [budget] at the top level or in a [[strategies]] entry",
                )
            budget = self.budget(table["budget"], f"{where}.budget")
        params = self.params(params, where, registry, kind, is_task)
        try:
            check(registry.get(kind), params)
        except ParamError as exc:
            raise self.fail(f"{where}.{exc.name}", exc.problem, exc.fix) from None
        return Entry(entry_id, kind, params, budget)

    def params(
        self, params: dict[str, Any], where: str, registry: Registry, kind: str, is_task: bool
    ) -> dict[str, Any]:
        defaults = registry.parameters(kind)
        if is_task:
            for key in HARNESS_TASK_KEYS:
                defaults.pop(key, None)
        allowed = ", ".join(f"{k}={_show_default(v)}" for k, v in defaults.items()) or "none"
        checked: dict[str, Any] = {}
        for key, value in params.items():
            if is_task and key in HARNESS_TASK_KEYS:
                raise self.fail(
                    f"{where}.{key}", "set by the harness, not by a task", HARNESS_TASK_KEYS[key]
                )
            if key not in defaults:
                raise self.fail(
                    f"{where}.{key}",
                    f"unknown parameter of {registry.kind} {kind!r}",
                    f"{did_you_mean(key, list(defaults))}allowed: {allowed}",
                )
            checked[key] = self.typed(value, defaults[key], f"{where}.{key}")
        for key, default in defaults.items():
            if default is inspect.Parameter.empty and key not in checked:
                raise self.fail(
                    f"{where}.{key}", f"required by {registry.kind} {kind!r}", f"set {key} = ..."
                )
        # Every parameter with the value it runs with: results and reports then say what ran
        # (e.g. the hyper-cleaning radius and data source) even where the suite kept a default.
        return {key: checked.get(key, default) for key, default in defaults.items()}

    def typed(self, value: Any, default: Any, where: str) -> Any:
        """`value` checked against the type of the parameter's default (None: anything goes)."""
        if default is None or default is inspect.Parameter.empty:
            return value
        expected = _type_name(default)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = _is_number(value)
            value = float(value) if ok else value  # int accepted for float, stored as float
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, list | tuple):
            ok, expected = isinstance(value, list), "list"
        elif isinstance(default, dict):
            ok = isinstance(value, dict)
        else:
            ok = True  # an exotic default: the constructor decides
        if not ok:
            raise self.fail(
                where,
                f"expected {expected}, got {_type_name(value)} {value!r}",
                f"the default is {_show_default(default)}",
            )
        return value


def _show_default(value: Any) -> str:
    return "(required)" if value is inspect.Parameter.empty else repr(value)
