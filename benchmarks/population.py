"""Population training's throughput: configurations evaluated per second at k = 1, 8, 32.

On each default-suite task (suites/default.toml's ridge, hc-R250 and auxtarget, at the suite's
sizes and seed 0), `Task.evaluate_population` trains k configurations drawn like random search
(uniform, log-uniform on a log scale; the same 32 for every k, the first k of them); k = 1 is
`Task.evaluate`, what `population = 1` runs. Configurations per second = k / seconds of one
population. Rounds are interleaved (every task and k, under one torch thread and under torch's
default threads, in a rotated order, then the next round) so a change in the machine's load
reaches every case alike; a case's figure is its median over the rounds, and the speed-up
k/1 is the ratio of the two medians, measured side by side in the same run.

Before timing, each task checks the population against one-by-one evaluation (k = 8) and
records the largest relative difference of the validation losses: 0 or a few ulps in float64,
larger in float32 (a batched matrix product sums in another order).

    .venv/bin/python -m benchmarks.population --out results/population-bench.json

prints a table and writes every timing, the medians, the ratios, the machine, torch's version
and the load average before and after to the JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
from torch.utils._pytree import tree_leaves

from hobench.registry import TASKS

SUITE = Path(__file__).resolve().parent.parent / "suites" / "default.toml"
TASK_IDS = ("ridge", "hc-R250", "auxtarget")
KS = (1, 8, 32)


def suite_tasks(ids=TASK_IDS) -> dict[str, tuple[str, dict]]:
    """id → (kind, parameters) of the default suite's tasks."""
    tables = tomllib.loads(SUITE.read_text())["tasks"]
    found = {}
    for table in tables:
        params = dict(table)
        kind = params.pop("kind")
        found[params.pop("id", kind)] = (kind, params)
    return {i: found[i] for i in ids}


def draw_configs(task, count: int, seed: int = 0) -> list[dict[str, float]]:
    """`count` configurations of the task's space, drawn as random search draws them."""
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(count):
        config = {}
        for p in task.space():
            if p.log:
                config[p.name] = float(math.exp(rng.uniform(math.log(p.low), math.log(p.high))))
            else:
                config[p.name] = float(rng.uniform(p.low, p.high))
        configs.append(config)
    return configs


def largest_difference(task, configs) -> float:
    """The largest relative difference of the validation losses, population against one by
    one (over the configurations neither run failed)."""
    batched = task.evaluate_population(configs)
    alone = [task.evaluate(c) for c in configs]
    worst = 0.0
    for b, a in zip(batched, alone, strict=True):
        if b.failed != a.failed:
            return math.inf
        if not a.failed:
            worst = max(worst, abs(b.val_loss - a.val_loss) / max(abs(a.val_loss), 1e-300))
    return worst


def timed(task, configs, device: str = "cpu") -> float:
    """Seconds of one population; on a GPU, until its kernels are done."""
    started = time.perf_counter()
    task.evaluate_population(configs)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/population-bench.json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS))
    parser.add_argument("--tasks", nargs="+", default=list(TASK_IDS))
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args(argv)

    default_threads = torch.get_num_threads()
    thread_settings = sorted({1, default_threads})
    load_before = os.getloadavg()
    tasks, configs, info = {}, {}, {}
    for task_id, (kind, params) in suite_tasks(args.tasks).items():
        task = TASKS.create(kind, seed=0, device=args.device, **params)
        tasks[task_id], configs[task_id] = task, draw_configs(task, max(args.ks))
        task.evaluate(configs[task_id][0])  # warm: data, caches (hc's scoring model), vmap
        info[task_id] = {
            "kind": kind,
            "params": params,
            "T": task.steps_per_evaluation(),
            "dtype": str(tree_leaves(task.training().params0())[0].dtype).removeprefix("torch."),
            "max_rel_diff_k8": largest_difference(task, configs[task_id][:8]),
        }
        print(f"{task_id}: ready (k = 8 vs one by one: {info[task_id]['max_rel_diff_k8']:.2g})")

    seconds = {t: {n: {k: [] for k in args.ks} for n in thread_settings} for t in tasks}
    for r in range(args.rounds):
        for threads in thread_settings:
            torch.set_num_threads(threads)
            for task_id, task in tasks.items():
                shift = r % len(args.ks)
                for k in args.ks[shift:] + args.ks[:shift]:  # rotated: no k always first
                    seconds[task_id][threads][k].append(
                        timed(task, configs[task_id][:k], args.device)
                    )
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    torch.set_num_threads(default_threads)

    results = {}
    for task_id in tasks:
        results[task_id] = {**info[task_id], "threads": {}}
        for threads in thread_settings:
            by_k = {}
            for k in args.ks:
                s = seconds[task_id][threads][k]
                by_k[str(k)] = {
                    "seconds": s,
                    "median_s": statistics.median(s),
                    "configs_per_s": k / statistics.median(s),
                }
            base = by_k[str(args.ks[0])]["configs_per_s"]
            results[task_id]["threads"][str(threads)] = {
                "k": by_k,
                "speedup": {str(k): by_k[str(k)]["configs_per_s"] / base for k in args.ks[1:]},
            }

    summary = {
        "command": " ".join(
            ["python -m benchmarks.population", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "device": args.device,
        "gpu": (
            torch.cuda.get_device_name(torch.device(args.device))
            if torch.device(args.device).type == "cuda"
            else None
        ),
        "default_threads": default_threads,
        "rounds": args.rounds,
        "ks": args.ks,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "tasks": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")

    where = summary["gpu"] or args.device
    print(f"\nconfigurations per second on {where} (median of {args.rounds} interleaved rounds)")
    header = f"{'task':<10} {'threads':>7} " + " ".join(f"{'k=' + str(k):>9}" for k in args.ks)
    header += " " + " ".join(f"{str(k) + '/' + str(args.ks[0]):>7}" for k in args.ks[1:])
    print(header)
    for task_id, row in results.items():
        for threads, cell in row["threads"].items():
            rates = " ".join(f"{cell['k'][str(k)]['configs_per_s']:9.2f}" for k in args.ks)
            ratios = " ".join(f"{cell['speedup'][str(k)]:6.2f}x" for k in args.ks[1:])
            print(f"{task_id:<10} {threads:>7} {rates} {ratios}")
    print(f"load average before {load_before}, after {summary['load_average_after']}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
