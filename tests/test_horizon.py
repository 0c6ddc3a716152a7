"""The short-horizon-bias diagnostic: one backward sweep gives every truncation exactly, K = T is
the full Reverse-HG hypergradient bit for bit, and the cosine is the cosine."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks import horizon_bias as script
from hobench.hypergrad import reverse
from hobench.hypergrad.horizon import cosine, horizon_bias, truncations
from tests import hypergrad_problems as problems


def test_every_truncation_of_one_sweep_is_truncated_reverse_and_K_equal_T_is_full_reverse():
    problem = problems.mlp_momentum()  # momentum, minibatches that change with t
    T = 9
    args = (problem.dynamics, problem.s0, problem.hp, T, problem.batch_at, problem.outer)
    swept = truncations(*args, ks=[1, 4, T])
    for k in (1, 4, T):
        alone = reverse(*args, truncate=k).grad
        assert all(torch.equal(swept[k][n], alone[n]) for n in problem.hp)
    full = reverse(*args).grad
    assert all(torch.equal(swept[T][n], full[n]) for n in problem.hp)
    assert not torch.equal(swept[4]["lr"], full["lr"])  # truncation does drop something


def test_K_equal_T_includes_the_initial_states_dependence_on_lambda():
    base = problems.weighted_softmax()
    p0 = base.s0["w"]

    def s0(hp):
        return base.dynamics.init((p0[0] * (1 + hp["lr"]), p0[1]), hp)

    args = (base.dynamics, s0, base.hp, 4, base.batch_at, base.outer)
    swept, full = truncations(*args, ks=[4]), reverse(*args).grad
    assert all(torch.equal(swept[4][n], full[n]) for n in base.hp)


def test_cosine_is_computed_over_every_entry_of_every_hyperparameter():
    a = {"w": torch.tensor([1.0, 0.0]), "s": torch.tensor(2.0)}
    b = {"w": torch.tensor([0.0, 1.0]), "s": torch.tensor(2.0)}
    assert cosine(a, b) == pytest.approx(4 / 5, abs=1e-15)  # (0 + 0 + 4) / (√5 √5)
    assert cosine(a, a) == pytest.approx(1.0, abs=1e-15)
    assert cosine(a, {k: -v for k, v in a.items()}) == pytest.approx(-1.0, abs=1e-15)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=7), rng.normal(size=7)
    split = {"p": torch.tensor(x[:3]), "q": torch.tensor(x[3:])}
    other = {"p": torch.tensor(y[:3]), "q": torch.tensor(y[3:])}
    expected = x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
    assert cosine(split, other) == pytest.approx(expected, abs=1e-14)
    assert math.isnan(cosine(a, {k: torch.zeros_like(v) for k, v in a.items()}))
    with pytest.raises(ValueError, match="different hyperparameters"):
        cosine(a, {"w": a["w"]})


def test_horizon_bias_rows():
    full = {"x": torch.tensor([3.0, 4.0])}
    rows = horizon_bias({2: {"x": torch.tensor([3.0, 0.0])}, 5: full}, full)
    assert [r["K"] for r in rows] == [2, 5]
    assert rows[0]["cosine"] == pytest.approx(3 / 5) and rows[0]["norm_ratio"] == pytest.approx(
        3 / 5
    )
    assert rows[1] == {"K": 5, "cosine": pytest.approx(1.0), "norm_ratio": 1.0}


def test_the_script_writes_json_csv_and_a_figure(tmp_path):
    result = script.measure("ridge", params={"groups": 2, "steps": 30, "l2_high": 3.0})
    assert [p["K"] for p in result["curve"]] == [1, 2, 5, 10, 20, 30]
    assert result["curve"][-1]["cosine"] == pytest.approx(1.0, abs=1e-12)
    paths = script.write([result], tmp_path)
    figure = script.plot([result], tmp_path / "horizon.png")
    saved = json.loads(paths[0].read_text())
    assert saved["tasks"][0]["curve"] == result["curve"]
    assert len(paths[1].read_text().splitlines()) == 1 + len(result["curve"])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
