"""Short-horizon bias: cosine between the K-step truncated hypergradient and the full Reverse-HG
one, as K grows, on each task at its default hyperparameters and T; the implicit hypergradients
(ift-cg, ift-neumann's fixed-point form, at their strategies' defaults) are measured against the
same full one and drawn as flat lines.

    .venv/bin/python -m benchmarks.horizon_bias --out results/horizon

writes horizon.json (every number, with the tasks' parameters and torch's version), horizon.csv
(one row per task and K) and horizon.png.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hobench.hypergrad import ift_cg, ift_fixed_point
from hobench.hypergrad.horizon import cosine, horizon_bias, truncations
from hobench.registry import TASKS

TASKS_MEASURED = ("ridge", "hypercleaning", "auxtarget")


def horizons(T: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below T, then T."""
    ks, scale = [], 1
    while scale < T:
        ks += [k for k in (scale, 2 * scale, 5 * scale) if k < T]
        scale *= 10
    return ks + [T]


def measure(kind: str, seed: int = 0, params: dict | None = None) -> dict:
    """The curve and the implicit hypergradients' cosines for one task."""
    params = params or {}
    task = TASKS.create(kind, seed=seed, **params)
    problem = task.gradient_problem()
    hp = problem.project(problem.hp0)
    s0 = problem.dynamics.init(problem.params0(), hp)
    T = problem.steps
    args = (problem.dynamics, s0, hp, T, problem.batch_at, problem.outer)
    # Eager, as the committed results/horizon were made: a few calls are no place for a compile.
    truncated = truncations(*args, ks=horizons(T), compile=False)
    full = truncated[T]
    implicit = {
        "ift-cg": ift_cg(*args, compile=False),
        "ift-neumann (fixed-point)": ift_fixed_point(*args, compile=False),
    }
    return {
        "task": kind,
        "seed": seed,
        "params": params,
        "T": T,
        "m": sum(v.numel() for v in hp.values()),
        "curve": horizon_bias(truncated, full),
        "implicit": {name: cosine(hg.grad, full) for name, hg in implicit.items()},
        "implicit_products": {name: hg.solver_iterations for name, hg in implicit.items()},
        # Which hyperparameters carry the cosines: each one's share, as a norm.
        "norms": {
            name: {k: float(g.norm()) for k, g in grad.items()}
            for name, grad in [("full", full)] + [(n, hg.grad) for n, hg in implicit.items()]
        },
    }


def write(results: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = {"torch": torch.__version__, "tasks": results}
    json_path, csv_path = out / "horizon.json", out / "horizon.csv"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "T", "m", "K", "cosine", "norm_ratio"])
        for r in results:
            for point in r["curve"]:
                writer.writerow(
                    [r["task"], r["T"], r["m"], point["K"], point["cosine"], point["norm_ratio"]]
                )
    return [json_path, csv_path]


def plot(results: list[dict], path: Path) -> Path:
    """One panel per task: the cosine against K/T, and the implicit hypergradients' cosines as
    flat lines."""
    fig = Figure(figsize=(4 * len(results), 4.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for ax, r in zip(axes, results, strict=True):
        fractions = [p["K"] / r["T"] for p in r["curve"]]
        cosines = [p["cosine"] for p in r["curve"]]
        ax.plot(fractions, cosines, "o-", color="tab:blue", label="truncated Reverse-HG")
        for (name, value), style, color in zip(
            r["implicit"].items(), ("--", ":"), ("tab:red", "tab:green"), strict=True
        ):
            ax.axhline(value, linestyle=style, color=color, linewidth=2, label=name)
        ax.set_xscale("log")
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(f"{r['task']}  (T = {r['T']}, m = {r['m']})")
        ax.set_xlabel("K / T")
        ax.grid(True, alpha=0.4)
    axes[0].set_ylabel("cosine with the full hypergradient")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    fig.suptitle("Short-horizon bias at each task's default λ (seed 0)")
    fig.savefig(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/horizon"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", default=",".join(TASKS_MEASURED), help="comma-separated")
    args = parser.parse_args(argv)
    results = [measure(kind, args.seed) for kind in args.tasks.split(",")]
    paths = write(results, args.out) + [plot(results, args.out / "horizon.png")]
    for r in results:
        points = ", ".join(f"K={p['K']}: {p['cosine']:.3f}" for p in r["curve"])
        implicit = ", ".join(f"{k} {v:.3f}" for k, v in r["implicit"].items())
        print(f"{r['task']} (T={r['T']}, m={r['m']}): {points}; {implicit}")
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
