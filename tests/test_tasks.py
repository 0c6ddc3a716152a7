"""The shared tasks: exact, seeded, and the same for every strategy."""

from __future__ import annotations

import pytest
import torch

from hobench.hypergrad import forward, reverse
from hobench.registry import TASKS

SMALL_HC = dict(
    n_train=200,
    n_val=200,
    n_test=400,
    n_corrupt=100,
    radius=100.0,
    steps=20,
    final_steps=60,
    dtype="float64",
)
SMALL_AUX = dict(
    n_train=300,
    n_val=100,
    n_test=100,
    depth=1,
    width=8,
    batch_size=20,
    steps=5,
    val_batch_size=50,
    dtype="float64",
)


def hypergradients(task, T):
    problem = task.gradient_problem()
    s0 = problem.dynamics.init(problem.params0(), problem.hp0)
    args = (problem.dynamics, s0, problem.hp0, T, problem.batch_at, problem.outer)
    return problem, reverse(*args), forward(*args)


def central_difference(problem, T, name, direction, h=1e-5):
    def f(hp):
        s0 = problem.dynamics.init(problem.params0(), hp)
        return float(reverse(problem.dynamics, s0, hp, T, problem.batch_at, problem.outer).value)

    plus = dict(problem.hp0, **{name: problem.hp0[name] + h * direction})
    minus = dict(problem.hp0, **{name: problem.hp0[name] - h * direction})
    return (f(plus) - f(minus)) / (2 * h)


@pytest.mark.parametrize(
    "kind, params, T",
    [
        ("ridge", dict(groups=3, steps=50), 50),
        ("hypercleaning", SMALL_HC, 5),
        # ReLU makes f piecewise smooth: T = 3 keeps every unit on one side within ±h here.
        ("auxtarget", SMALL_AUX, 3),
    ],
)
def test_task_hypergradient_matches_finite_differences(kind, params, T):
    task = TASKS.create(kind, seed=3, **params)
    problem, rev, fwd = hypergradients(task, T)
    for name, value in problem.hp0.items():
        assert torch.allclose(rev.grad[name], fwd.grad[name], rtol=1e-9, atol=1e-12)
        direction = torch.randn(
            value.shape, generator=torch.Generator().manual_seed(0), dtype=value.dtype
        )
        fd = central_difference(problem, T, name, direction)
        ours = float((rev.grad[name] * direction).sum())
        assert ours == pytest.approx(fd, rel=1e-6, abs=1e-10), name


def test_ridge_closed_form_optimum_is_stationary():
    """At λ* the validation loss is flat in every interior group; at a bound it points out."""
    task = TASKS.create("ridge", seed=0)
    problem = task.gradient_problem()
    hp = {"log_l2": task.l2_star.log()}
    s0 = problem.dynamics.init(problem.params0(), hp)
    result = reverse(problem.dynamics, s0, hp, task.steps, problem.batch_at, problem.outer)
    grad = result.grad["log_l2"]
    interior = (task.l2_star > task.l2_low) & (task.l2_star < task.l2_high)
    assert interior.any()
    assert grad[interior].abs().max() < 1e-10
    assert (grad[task.l2_star == task.l2_low] >= 0).all()  # would go lower if it could
    assert (grad[task.l2_star == task.l2_high] <= 0).all()
    # and it is the minimum: every nearby configuration is worse
    best = task.evaluate({f"l2_{g}": float(v) for g, v in enumerate(task.l2_star)}).val_loss
    assert best == pytest.approx(task.f_star, abs=1e-12)
    for g in range(task.groups):
        for factor in (0.8, 1.25):
            config = {f"l2_{j}": float(v) for j, v in enumerate(task.l2_star)}
            config[f"l2_{g}"] = min(max(config[f"l2_{g}"] * factor, task.l2_low), task.l2_high)
            assert task.evaluate(config).val_loss >= best - 1e-12


def test_hypercleaning_oracle_beats_baseline_on_embedded_data():
    task = TASKS.create("hypercleaning", seed=0)
    rows = task.references()
    assert rows == TASKS.create("hypercleaning", seed=0).references()  # seeded, deterministic
    # With the final schedule tuned on validation for the Baseline, the gap is 1.5 points here.
    assert rows["Oracle"]["test_acc"] > rows["Baseline"]["test_acc"] + 0.01


def test_hypercleaning_split_and_corruption():
    task = TASKS.create("hypercleaning", seed=1, **SMALL_HC)
    assert len(task.train[1]) == 200 and len(task.val[1]) == 200 and len(task.test[1]) == 400
    assert len(task.corrupted) == 100
    # the black-box family weights the asked fraction of R, lowest validation-model loss first
    weights = task._rule_weights(0.5)
    assert weights.sum() == 50 and set(weights.tolist()) == {0.0, 1.0}
    kept = torch.nonzero(weights).flatten()
    assert task._validation_scores()[kept].max() <= task._validation_scores()[weights == 0].min()


def test_hypercleaning_rows_share_the_final_schedule():
    """Oracle, Baseline and every DH row retrain with the one schedule chosen on validation:
    keeping every example must reproduce the Baseline row exactly."""
    task = TASKS.create("hypercleaning", seed=1, **SMALL_HC)
    lr, steps = task.final_schedule()
    final = task.finalize({"weights": torch.ones(200, dtype=torch.float64)})
    assert final["kept"] == 200 and (final["final_lr"], final["final_steps"]) == (lr, steps)
    assert final["test_acc"] == final["rows"]["Baseline"]["test_acc"]
    # and a black-box answer that keeps exactly the clean examples reproduces the Oracle row
    clean = torch.ones(200, dtype=torch.float64)
    clean[torch.as_tensor(task.corrupted)] = 0.0
    oracle = task.finalize({"weights": clean})
    assert oracle["f1"] == 1.0 and oracle["test_acc"] == final["rows"]["Oracle"]["test_acc"]


def test_hypercleaning_discards_weights_below_one_thousandth():
    task = TASKS.create("hypercleaning", seed=1, **SMALL_HC)
    weights = torch.full((200,), 0.5, dtype=torch.float64)
    weights[:10] = 0.9e-3
    weights[10:20] = 1.1e-3
    assert task.finalize({"weights": weights})["kept"] == 190


def test_auxtarget_default_is_vanilla_and_names_no_timit():
    task = TASKS.create("auxtarget", seed=0, **SMALL_AUX)
    assert task.default_config() == {"lr": 0.075, "momentum": 0.5, "rho": 0.0}
    assert "TIMIT" not in type(task).name
    ev = task.evaluate(task.default_config())
    assert ev.val_loss == task.evaluate(task.default_config()).val_loss  # replayable batches


def test_hypercleaning_protocol_is_computed_once_per_run_and_identical(tmp_path, monkeypatch):
    """Within a run, the schedule and reference rows one cell computed are read by the others
    (any R): the values are bit-identical to computing them, and computed only once."""
    from hobench.harness import shared
    from hobench.tasks.hypercleaning import HyperCleaning

    alone = TASKS.create("hypercleaning", seed=1, **SMALL_HC)
    expected = (alone.final_schedule(), alone.references())
    calls = []
    original = HyperCleaning._train_references
    monkeypatch.setattr(
        HyperCleaning, "_train_references", lambda self: calls.append(1) or original(self)
    )
    monkeypatch.setattr(shared, "_folder", tmp_path / "shared")
    for radius in (100.0, 50.0):
        task = TASKS.create("hypercleaning", seed=1, **{**SMALL_HC, "radius": radius})
        task.prepare()
        assert (task.final_schedule(), task.references()) == expected
    assert len(calls) == 1
    other_seed = TASKS.create("hypercleaning", seed=2, **SMALL_HC)
    other_seed.prepare()
    assert len(calls) == 2  # another seed, other data: computed anew
