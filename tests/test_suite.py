"""Suite loading: every malformed file gives one SuiteError line naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hobench.harness.suite import Cell, SuiteError, load_suite
from tests import harness_toys

HEAD = "seeds = [0, 1]\n[budget]\nsteps = 100\n"
TASK = '[[tasks]]\nkind = "toy-quad"\n'
STRATEGY = '[[strategies]]\nkind = "toy-random"\n'
VALID = HEAD + TASK + STRATEGY

# id → (suite text, key path the message must name, a word of the problem or fix)
MALFORMED = {
    "syntax-at-end": (VALID + "oops = [1,\n", "line 8 (end of file): TOML syntax error", "fix"),
    "syntax": (HEAD + "kind = = 1\n" + TASK + STRATEGY, "line 4, column 8: TOML syntax", ""),
    "unknown-top-level": ("seed = 1\n" + VALID, "seed: unknown top-level key", "allowed"),
    "missing-tasks": (HEAD + STRATEGY, "tasks: missing", "[[tasks]]"),
    "missing-strategies": (HEAD + TASK, "strategies: missing", "[[strategies]]"),
    "empty-tasks": ("tasks = []\n" + HEAD + STRATEGY, "tasks: empty list", "at least one"),
    "tasks-not-tables": ('tasks = ["toy-quad"]\n' + HEAD + STRATEGY, "tasks:", "[[tasks]]"),
    "seed-not-int": (VALID.replace("[0, 1]", '[0, "a"]'), "seeds[1]:", "integer"),
    "seed-negative": (VALID.replace("[0, 1]", "[0, -1]"), "seeds[1]: negative", "non-negative"),
    "seed-duplicate": (VALID.replace("[0, 1]", "[0, 1, 0]"), "seeds[2]: duplicate", "distinct"),
    "seeds-zero": (VALID.replace("[0, 1]", "0"), "seeds: count 0", "integers"),
    "seeds-empty": (VALID.replace("[0, 1]", "[]"), "seeds: empty list", "integers"),
    "seeds-float": (VALID.replace("[0, 1]", "1.5"), "seeds: expected a list", "integers"),
    "unknown-task": (VALID.replace('"toy-quad"', '"nope"'), "tasks[0].kind", "toy-quad"),
    "unknown-strategy": (VALID.replace('"toy-random"', '"nope"'), "strategies[0].kind", "toy-nan"),
    "missing-kind": (HEAD + "[[tasks]]\nid = 'a'\n" + STRATEGY, "tasks[0].kind: missing", "known"),
    "unknown-task-param": (VALID + "", "", ""),  # filled below
    "unknown-strategy-param": (VALID + "pionts = 3\n", "strategies[0].pionts", "points=4"),
    "float-param-string": (
        HEAD + TASK + 'scale = "big"\n' + STRATEGY,
        "tasks[0].scale: expected float",
        "default is 1.0",
    ),
    "int-param-float": (VALID + "points = 2.5\n", "strategies[0].points: expected int", "4"),
    "int-param-bool": (VALID + "points = true\n", "strategies[0].points: expected int", "4"),
    "bool-param-int": (VALID + "verbose = 1\n", "strategies[0].verbose: expected bool", "False"),
    "list-param": (HEAD + TASK + "weights = 3\n" + STRATEGY, "tasks[0].weights: expected list", ""),
    "str-param": (HEAD + TASK + "label = 3\n" + STRATEGY, "tasks[0].label: expected string", ""),
    "duplicate-task-id": (VALID + TASK, "tasks[1].id: duplicate id 'toy-quad'", "unique"),
    "duplicate-strategy-id": (VALID + STRATEGY, "strategies[1].id: duplicate", "unique"),
    "bad-device": ('device = "gpu"\n' + VALID, "device: bad device 'gpu'", "cuda:N"),
    "device-not-string": ("device = 0\n" + VALID, "device: bad device", "auto"),
    "budget-missing": ("seeds = 1\n" + TASK + STRATEGY, "budget: missing", "seconds"),
    "budget-empty": (VALID.replace("steps = 100", ""), "budget: empty budget", "seconds"),
    "budget-not-table": ("budget = 5\n" + TASK + STRATEGY, "budget: expected a table", "steps"),
    "budget-unknown-key": (VALID.replace("steps", "minutes"), "budget.minutes: unknown", "steps"),
    "seconds-zero": (VALID.replace("steps = 100", "seconds = 0"), "budget.seconds: non-pos", ""),
    "seconds-negative": (VALID.replace("steps = 100", "seconds = -5"), "budget.seconds:", ""),
    "seconds-string": (VALID.replace("steps = 100", 'seconds = "9"'), "budget.seconds: not", ""),
    "seconds-nan": (VALID.replace("steps = 100", "seconds = nan"), "budget.seconds: not", ""),
    "seconds-impossible": (VALID.replace("100", "100\nseconds = 0.01"), "budget.seconds: imp", ""),
    "steps-zero": (VALID.replace("steps = 100", "steps = 0"), "budget.steps: impossible", ""),
    "steps-float": (VALID.replace("steps = 100", "steps = 1.5"), "budget.steps: not an int", ""),
    "task-seed": (HEAD + TASK + "seed = 3\n" + STRATEGY, "tasks[0].seed: set by the harness", ""),
    "task-device": (HEAD + TASK + 'device = "cpu"\n' + STRATEGY, "tasks[0].device: set by", ""),
    "task-data-dir": (HEAD + TASK + 'data_dir = "x"\n' + STRATEGY, "tasks[0].data_dir:", ""),
    "task-budget": (HEAD + TASK + "[tasks.budget]\nsteps = 5\n" + STRATEGY, "tasks[0].budget", ""),
    "strategy-budget": (
        VALID + "[strategies.budget]\nsteps = 0\n",
        "strategies[0].budget.steps: impossible",
        "steps",
    ),
    "bad-name": ('name = "a/b"\n' + VALID, "name: 'a/b' is not a usable", ""),
    "id-with-slash": (HEAD + TASK + 'id = "a/b"\n' + STRATEGY, "tasks[0].id: bad id", ""),
    "exclude-not-list": ('exclude = "q/toy-random"\n' + VALID, "exclude: expected a list", ""),
    "exclude-not-pair": ('exclude = ["toy-quad"]\n' + VALID, "exclude[0]: not a TASK_ID/", ""),
    "exclude-unknown-task": (
        'exclude = ["hc/toy-random"]\n' + VALID,
        "exclude[0]: unknown task id 'hc'",
        "task ids: toy-quad",
    ),
    "exclude-unknown-strategy": (
        'exclude = ["toy-quad/tpe"]\n' + VALID,
        "exclude[0]: unknown strategy id 'tpe'",
        "strategy ids: toy-random",
    ),
    "exclude-everything": ('exclude = ["toy-quad/toy-random"]\n' + VALID, "exclude: excludes", ""),
    "description-not-string": ("description = 1\n" + VALID, "description: expected a string", ""),
}
# Values of the right type outside their domain (issue 14, points 2 and 3): each is one line
# before any cell, where it used to loop forever or fail in every cell. The built-in tasks and
# strategies declare the domains; the suites use cheap settings but nothing is built here.
RIDGE = '[[tasks]]\nkind = "ridge"\n'
HC = '[[tasks]]\nkind = "hypercleaning"\nn_train = 100\nn_corrupt = 50\nradius = 50\n'
AUX = '[[tasks]]\nkind = "auxtarget"\n'


def kind(name: str, extra: str = "") -> str:
    return f'[[strategies]]\nkind = "{name}"\n{extra}'


DOMAIN_CASES = {
    # point 2: accepted values that looped forever under a steps budget
    "rtho-delta-zero": (
        RIDGE,
        kind("rtho", "delta = 0\n"),
        "strategies[0].delta: 0 is out",
        ">= 1",
    ),
    "rtho-delta-negative": (RIDGE, kind("rtho", "delta = -2\n"), "strategies[0].delta:", ">= 1"),
    "ridge-steps-zero-tpe": (RIDGE + "steps = 0\n", kind("tpe"), "tasks[0].steps: 0 is", ">= 1"),
    "ridge-steps-zero-reverse": (RIDGE + "steps = 0\n", kind("reverse-hg"), "tasks[0].steps", ""),
    # point 3: failed once per cell, after work
    "n-corrupt-above-n-train": (
        HC.replace("n_corrupt = 50", "n_corrupt = 101"),
        kind("tpe"),
        "tasks[0].n_corrupt: 101 > n_train = 100",
        "0..n_train",
    ),
    "radius-zero": (HC.replace("radius = 50", "radius = 0"), kind("tpe"), "tasks[0].radius", "> 0"),
    "radius-above-n-train": (
        HC.replace("radius = 50", "radius = 101"),
        kind("tpe"),
        "tasks[0].radius: 101.0 > n_train",
        "radius <= n_train",
    ),
    "negative-size": (HC + "n_test = -1\n", kind("tpe"), "tasks[0].n_test: -1 is out", ">= 1"),
    "sizes-above-embedded-data": (
        AUX + "n_train = 4500\n",
        kind("tpe"),
        "tasks[0].n_train: n_train + n_val + n_test = 6500 but source 'embedded' has 5000",
        'source = "full"',
    ),
    "source-bogus": (HC + 'source = "bogus"\n', kind("tpe"), "tasks[0].source: unknown", "full"),
    "dtype-float8": (RIDGE + 'dtype = "float8"\n', kind("tpe"), "tasks[0].dtype:", "float64"),
    "groups-zero": (RIDGE + "groups = 0\n", kind("tpe"), "tasks[0].groups: 0 is out", ">= 1"),
    "l2-low-zero": (RIDGE + "l2_low = 0\n", kind("tpe"), "tasks[0].l2_low: 0.0 is out", "> 0"),
    "l2-range-empty": (RIDGE + "l2_low = 5\nl2_high = 1\n", kind("tpe"), "tasks[0].l2_high", ""),
    "n-train-below-features": (RIDGE + "n_train = 10\n", kind("tpe"), "tasks[0].n_train", ">="),
    "hyper-lr-negative": (RIDGE, kind("reverse-hg", "hyper_lr = -1\n"), "hyper_lr: -1.0", ">= 0"),
    "points-per-dim-negative": (RIDGE, kind("grid", "points_per_dim = -1\n"), "points_per_dim", ""),
    "record-every-zero": (RIDGE, kind("rtho", "record_every = 0\n"), "record_every: 0", ">= 1"),
    "hg-steps-negative": (RIDGE, kind("forward-hg", "steps = -5\n"), "strategies[0].steps", ">="),
    "truncate-negative": (RIDGE, kind("reverse-hg", "truncate = -3\n"), "truncate: -3", ">= 0"),
    "truncated-hg-truncate-zero": (
        RIDGE,
        kind("truncated-hg", "truncate = 0\n"),
        "truncate: 0",
        ">= 1",
    ),
    "truncated-online-above-delta": (
        RIDGE,
        kind("truncated-online", "delta = 4\ntruncate = 5\n"),
        "strategies[0].truncate: 5 > delta = 4",
        "truncate <= delta",
    ),
    "ift-iterations-zero": (RIDGE, kind("ift-cg", "iterations = 0\n"), "iterations: 0", ">= 1"),
    "ift-tol-negative": (RIDGE, kind("ift-cg", "tol = -1\n"), "strategies[0].tol", ">= 0"),
    "ift-form-bogus": (RIDGE, kind("ift-neumann", 'form = "x"\n'), "form: unknown", "'hessian'"),
    "ift-hessian-without-alpha": (
        RIDGE,
        kind("ift-neumann", 'form = "hessian"\n'),
        "strategies[0].alpha: the Hessian form needs a step",
        "0 < alpha < 2/L",
    ),
    "ift-fixed-point-with-alpha": (
        RIDGE,
        kind("ift-neumann", "alpha = 0.1\n"),
        "strategies[0].alpha: the fixed-point form takes",
        'form = "hessian"',
    ),
    "check-every-zero": (RIDGE, kind("early-stopping", "check_every = 0\n"), "check_every", ""),
    "task-steps-zero": (AUX + "steps = 0\n", kind("default"), "tasks[0].steps: 0 is", ">= 1"),
    "start-bogus": (RIDGE, kind("reverse-hg", 'start = "bogus"\n'), "start: unknown", "'null'"),
    "startup-negative": (RIDGE, kind("tpe", "n_startup_trials = -1\n"), "n_startup_trials", ""),
    "width-zero": (AUX + "width = 0\n", kind("tpe"), "tasks[0].width: 0 is out", ">= 1"),
    "final-steps-small": (HC + "final_steps = 5\n", kind("tpe"), "tasks[0].final_steps", ">= 10"),
}
for _case, (_task, _strategy, _key, _hint) in DOMAIN_CASES.items():
    MALFORMED[_case] = (HEAD + _task + _strategy, _key, _hint)
MALFORMED["seed-above-2**32"] = (
    VALID.replace("[0, 1]", "[0, 4294967296]"),
    "seeds[1]: seed 4294967296 is above 4294967295",
    "integers",
)
MALFORMED["compile-not-bool"] = (
    'compile = "yes"\n' + VALID,
    "compile: expected true or false",
    "eager",
)
MALFORMED["id-with-newline"] = (HEAD + TASK + 'id = "a\\nb"\n' + STRATEGY, "tasks[0].id: bad", "")
MALFORMED["id-with-space"] = (HEAD + TASK + 'id = "a b"\n' + STRATEGY, "tasks[0].id: bad", "")
# One rule for every name that becomes a path or a table key: [A-Za-z0-9._-], ASCII.
for _case, _id in {
    "id-unicode": "tâche",
    "id-non-ascii-digits": "hc-R١٠٠٠",  # Arabic-Indic digits
    "id-trailing-newline": "a\\n",
    "id-empty": "",
    "id-leading-dot": ".hidden",
    "id-leading-dash": "-x",
    "id-backslash": "a\\\\b",
    "id-pipe": "a|b",  # a Markdown table's column separator
    "id-colon": "a:b",
    "id-tab": "a\\tb",
}.items():
    MALFORMED[_case] = (HEAD + TASK + f'id = "{_id}"\n' + STRATEGY, "tasks[0].id: bad id", "ASCII")
MALFORMED["strategy-id-unicode"] = (
    VALID + 'id = "süche"\n',
    "strategies[0].id: bad id 'süche'",
    "letters, digits",
)
MALFORMED["name-unicode"] = ('name = "süite"\n' + VALID, "name: 'süite' is not a usable", "ASCII")
MALFORMED["name-empty"] = ('name = ""\n' + VALID, "name: '' is not a usable", "ASCII")
MALFORMED["name-trailing-newline"] = ('name = "a\\n"\n' + VALID, "name: 'a\\n' is not", "ASCII")

MALFORMED["unknown-task-param"] = (
    HEAD + TASK + "radius = 3\n" + STRATEGY,
    "tasks[0].radius: unknown parameter of task 'toy-quad'",
    "scale=1.0",
)


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_suite_gives_one_line(tmp_path: Path, case: str) -> None:
    text, key, hint = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert key in message
    assert hint in message
    assert "; " in message  # problem; fix


def test_cmaes_missing_is_one_line_before_any_cell(tmp_path: Path, monkeypatch) -> None:
    """cmaes installs with hobench; where it is absent anyway the suite says so up front."""
    monkeypatch.setitem(sys.modules, "cmaes", None)  # `import cmaes` raises ImportError
    path = write(tmp_path, HEAD + TASK + '[[strategies]]\nkind = "cmaes"\n')
    with pytest.raises(SuiteError, match=r"strategies\[0\]\.kind: the cmaes strategy.*pip"):
        load_suite(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"nowhere\.toml: file not found; "):
        load_suite(tmp_path / "nowhere.toml")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SuiteError, match="cannot read file"):
        load_suite(path)


def test_valid_suite_cells(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'description = "two tasks"\nseeds = 2\ndevice = "auto"\n[budget]\nseconds = 5\n'
        '[[tasks]]\nid = "q1"\nkind = "toy-quad"\nscale = 2\n'
        '[[tasks]]\nkind = "toy-quad"\nweights = [1, 2]\n'
        '[[strategies]]\nkind = "toy-random"\npoints = 3\n'
        '[[strategies]]\nid = "short"\nkind = "toy-random"\n[strategies.budget]\nsteps = 20\n',
        name="mine.toml",
    )
    suite = load_suite(path)
    assert suite.name == "mine" and suite.description == "two tasks"
    assert suite.seeds == (0, 1) and suite.device == "auto"
    cells = suite.cells()
    assert len(cells) == 2 * 2 * 2
    assert [c.key for c in cells[:4]] == [
        "q1/toy-random/0",
        "q1/toy-random/1",
        "q1/short/0",
        "q1/short/1",
    ]
    first = cells[0]
    assert first == Cell(
        task_id="q1",
        task_kind="toy-quad",
        # every parameter with the value it runs with, defaults included
        task_params={"scale": 2.0, "label": "toy", "weights": (1.0,), "extra": None},
        strategy_id="toy-random",
        strategy_kind="toy-random",
        strategy_params={"points": 3, "sleep": 0.0, "allocate_mb": 0, "verbose": False},
        seed=0,
        budget={"cost": None, "seconds": 5.0, "steps": None},
        device="auto",
    )
    assert isinstance(first.task_params["scale"], float)  # int accepted for float, stored as float
    assert cells[2].budget == {
        "cost": None,
        "seconds": None,
        "steps": 20,
    }  # a strategy's budget replaces it
    assert cells[4].task_params["weights"] == [1, 2]
    assert suite.cells(device="cpu")[0].device == "cpu"
    assert Cell.from_dict(first.to_dict()) == first


def test_exclude_skips_pairs(tmp_path: Path) -> None:
    text = 'exclude = ["toy-quad/toy-nan"]\n' + VALID + '[[strategies]]\nkind = "toy-nan"\n'
    suite = load_suite(write(tmp_path, text))
    assert suite.exclude == ("toy-quad/toy-nan",)
    assert [c.key for c in suite.cells()] == ["toy-quad/toy-random/0", "toy-quad/toy-random/1"]


def test_strategy_budgets_make_suite_budget_optional(tmp_path: Path) -> None:
    path = write(tmp_path, TASK + STRATEGY + "[strategies.budget]\nseconds = 1\n")
    suite = load_suite(path)
    assert suite.budget is None and suite.seeds == (0,)
    assert suite.cells()[0].budget == {"cost": None, "seconds": 1.0, "steps": None}


@pytest.mark.parametrize("case", ["unknown-task", "task-seed", "syntax"])
def test_cli_reports_bad_suite_in_one_line(tmp_path: Path, case: str) -> None:
    text, key, _ = MALFORMED[case]
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "hobench", "run", str(path), "--results-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=harness_toys.subprocess_env(),
        timeout=600,  # a net only: CI machines run at load 6-10
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"hobench: error: SuiteError: {path}: ")
    assert key in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_paper_tables_key(tmp_path: Path) -> None:
    """A suite asks for paper tables by name; anything else is a one-line error."""
    base = (
        'seeds = [0]\n[budget]\ncost = 2\n[[tasks]]\nkind = "ridge"\n'
        '[[strategies]]\nkind = "random"\n'
    )
    path = tmp_path / "s.toml"
    path.write_text('paper_tables = ["hypercleaning"]\n' + base)
    assert load_suite(path).paper_tables == ("hypercleaning",)
    path.write_text(base)
    assert load_suite(path).paper_tables == ()
    path.write_text('paper_tables = ["timit"]\n' + base)
    with pytest.raises(SuiteError, match="paper_tables: expected a list of") as error:
        load_suite(path)
    assert "\n" not in str(error.value)
