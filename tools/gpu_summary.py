"""The one-page summary of tools/gpu-run.sh, and the files it leaves in $OUT.

Called after every stage, so a run cut short still leaves what it measured. Reads the run's
work folder (stages.jsonl, the engine summary under results/local/, the suites' runs.jsonl, the
population JSON, the logs) and writes into OUT, at most 8 files:

    SUMMARY.md               the page: device, versions, each stage's exit and seconds, the engine
                             ratios and targets, the suites' cells and seconds per cell (the
                             default seed beside the committed CPU run's), configurations/s by k
    summary.json             the same figures as JSON
    engine-bench-DEV.json    the engine benchmarks' summary (benchmarks/conftest.py)
    population-DEV.json      benchmarks/population.py's output
    smoke-DEV.tar.gz         the smoke suite's results folder (runs.jsonl, report/)
    default-seed0-DEV.tar.gz one seed of the default suite's results folder
    logs.tar.gz              every stage's log, nvidia-smi, pytest-benchmark's saved run
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import tarfile
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cells(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest record of each cell."""
    return {r["cell"]: r for r in rows}


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def suite_section(name: str, rows: dict[str, dict], baseline: dict[str, dict] | None) -> list[str]:
    lines = [f"## {name}", ""]
    if not rows:
        return lines + ["no cell finished", ""]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    failed = [r for r in rows.values() if r["status"] != "ok"]
    walls = [r["resources"]["wall_s"] for r in ok]
    peaks = [r["resources"].get("cuda_peak_mb") for r in ok]
    peaks = [p for p in peaks if p is not None]
    lines.append(
        f"{len(ok)} cells ok, {len(failed)} failed; seconds per cell: median "
        f"{fmt(statistics.median(walls) if walls else None)}, total {sum(walls):.1f}"
        + (f"; CUDA peak {max(peaks):.1f} MB" if peaks else "")
    )
    for r in failed:
        lines.append(f"- FAILED {r['cell']}: {(r.get('error') or '')[:200]}")
    if baseline is not None:
        base = next(iter(baseline.values()), {}).get("manifest", {})
        lines += [
            "",
            f"beside the committed run (results/default, seed 0, on {base.get('device_name')} "
            f"{base.get('device')}, torch {base.get('packages', {}).get('torch')}):",
            "",
            "| cell | s here | s committed | here / committed | test metric here | committed |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for key, r in sorted(rows.items()):
            b = baseline.get(key)
            here = r["resources"]["wall_s"] if r["status"] == "ok" else None
            there = b["resources"]["wall_s"] if b and b["status"] == "ok" else None
            ratio = here / there if here and there else None

            def metric(rec):
                final = (rec or {}).get("final") or {}
                v = final.get("test_acc")
                return v if v is not None else final.get("test_loss")

            lines.append(
                f"| {key} | {fmt(here)} | {fmt(there)} | {fmt(ratio)} | {fmt(metric(r), 4)} | "
                f"{fmt(metric(b), 4)} |"
            )
    return lines + [""]


def engine_section(engine: dict[str, Any] | None, log: Path, cpu: dict[str, Any]) -> list[str]:
    """`cpu`: the committed CPU run (results/engine-bench.json), beside each ratio."""
    lines = ["## Engine benchmarks", ""]
    if engine is None:
        text = log.read_text(errors="replace").splitlines() if log.is_file() else []
        start = next((i for i, ln in enumerate(text) if "engine benchmark summary" in ln), None)
        if start is None:
            return lines + ["no summary: the stage did not finish (logs.tar.gz, engine.log)", ""]
        return lines + [
            "a partial run (no summary file): its table from engine.log",
            "",
            "```",
            *text[start + 1 : start + 60],
            "```",
            "",
        ]
    meta, cpu_meta = engine["meta"], cpu.get("meta", {})
    cpu_cases = {c["case"]: c for c in cpu.get("cases", [])}
    cpu_targets = {t["target"]: t for t in cpu.get("targets", [])}
    lines += [
        f"{meta.get('shape')}; T = {meta.get('steps')}; {meta.get('gpu') or meta.get('device')}; "
        f"{'compiled' if engine.get('compiled') else 'eager'} path; plain = {engine.get('plain')}",
        "",
        f"beside the committed CPU run (results/engine-bench.json): {cpu_meta.get('processor')}, "
        f"T = {cpu_meta.get('steps')}, {'compiled' if cpu.get('compiled') else 'eager'} path",
        "",
        "| case | median s | ratio to plain | CPU ratio | extra peak MB | CPU extra MB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in engine["cases"]:
        b = cpu_cases.get(c["case"], {})
        lines.append(
            f"| {c['case']} | {fmt(c['median_s'])} | {fmt(c['ratio_to_plain'])} | "
            f"{fmt(b.get('ratio_to_plain'))} | {fmt(c['extra_peak_mb'])} | "
            f"{fmt(b.get('extra_peak_mb'))} |"
            + (f" skipped: {c['skipped']}" if c["skipped"] else "")
        )
    lines += [
        "",
        "| target | value | CPU value | limit | status | CPU status |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in engine["targets"]:
        b = cpu_targets.get(t["target"], {})
        lines.append(
            f"| {t['target']} | {fmt(t['value'])} | {fmt(b.get('value'))} | {fmt(t['limit'])} | "
            f"{t['status']} | {b.get('status', '—')} |"
        )
    lines += ["", "agreement:"]
    for check, a in engine["agreement"].items():
        tol = "no tolerance" if a.get("tol") is None else f"tolerance {a['tol']:g}"
        lines.append(f"- {check}: {fmt(a.get('rel_diff'))} ({tol})")
    return lines + [""]


def population_section(pop: dict[str, Any] | None) -> list[str]:
    lines = ["## Population training (configurations per second)", ""]
    if pop is None:
        return lines + ["no summary (the stage did not finish: see logs.tar.gz)", ""]
    ks = pop["ks"]
    lines += [
        f"{pop.get('gpu') or pop.get('device') or 'cpu'}, median of {pop['rounds']} rounds; "
        "torch threads in the second column",
        "",
        "| task | threads | " + " | ".join(f"k={k}" for k in ks) + f" | k={ks[-1]} / k={ks[0]} |",
        "| --- | --- | " + " | ".join("---" for _ in ks) + " | --- |",
    ]
    for task, row in pop["tasks"].items():
        for threads, cell in row["threads"].items():
            rates = " | ".join(fmt(cell["k"][str(k)]["configs_per_s"]) for k in ks)
            last = cell["speedup"].get(str(ks[-1])) if len(ks) > 1 else None
            lines.append(f"| {task} | {threads} | {rates} | {fmt(last)} |")
    return lines + [""]


def tar(out: Path, name: str, sources: list[tuple[Path, str]]) -> None:
    sources = [(p, arc) for p, arc in sources if p.exists()]
    if not sources:
        return
    tmp = out / f".{name}.tmp"
    with tarfile.open(tmp, "w:gz") as t:
        for path, arc in sources:
            t.add(path, arcname=arc)
    tmp.replace(out / name)


def environment(work: Path, root: Path, pack: Path) -> dict[str, Any]:
    info: dict[str, Any] = {}
    install = work / "logs" / "install.log"
    if install.is_file():
        lines = install.read_text().splitlines()
        info["versions"] = [ln for ln in lines if ln.startswith("python ")][-1:] or None
    smi = work / "logs" / "nvidia-smi.log"
    if smi.is_file():
        info["nvidia_smi"] = smi.read_text().splitlines()[:12]
    commit = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    info["commit"] = commit.stdout.strip() or None
    manifest = pack / "PACK.json"
    if manifest.is_file():
        info["pack_commit"] = json.loads(manifest.read_text()).get("commit")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--quick", default="0")
    parser.add_argument("--root", required=True)
    parser.add_argument("--pack", required=True)
    args = parser.parse_args()
    work, out, root, dev = Path(args.work), Path(args.out), Path(args.root), args.device
    out.mkdir(parents=True, exist_ok=True)

    stages = read_jsonl(work / "stages.jsonl")
    engine_files = sorted((work / "results" / "local").glob("engine-bench*.json"))
    engine = json.loads(engine_files[-1].read_text()) if engine_files else None
    pop_file = work / f"population-{dev}.json"
    pop = json.loads(pop_file.read_text()) if pop_file.is_file() else None
    smoke = cells(read_jsonl(work / "runs" / f"smoke-{dev}" / "runs.jsonl"))
    default = cells(read_jsonl(work / "runs" / f"default-seed0-{dev}" / "runs.jsonl"))
    committed = {
        k: r
        for k, r in cells(read_jsonl(root / "results" / "default" / "runs.jsonl")).items()
        if r["seed"] == 0
    }
    env = environment(work, root, Path(args.pack))
    where = (engine or {}).get("meta", {}).get("gpu") or (pop or {}).get("gpu") or dev
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    lines = [
        f"# hobench on {where}: tools/gpu-run.sh",
        "",
        f"{now}; device {dev}{' (QUICK sizes: not figures)' if args.quick == '1' else ''}; "
        f"commit {env.get('commit')} (pack built at {env.get('pack_commit')}); "
        + " ".join(env.get("versions") or []),
        "",
        "| stage | exit | seconds | limit s |",
        "| --- | --- | --- | --- |",
    ]
    for s in stages:
        note = {124: " (hit its limit)", 125: " (skipped: no time left)"}.get(s["rc"], "")
        lines.append(f"| {s['stage']} | {s['rc']}{note} | {s['seconds']} | {s['limit_s']} |")
    lines.append("")
    cpu_file = root / "results" / "engine-bench.json"
    cpu_engine = json.loads(cpu_file.read_text()) if cpu_file.is_file() else {}
    lines += engine_section(engine, work / "logs" / "engine.log", cpu_engine)
    lines += suite_section("Smoke suite", smoke, None)
    lines += suite_section("Default suite, seed 0", default, committed)
    lines += population_section(pop)
    if env.get("nvidia_smi"):
        lines += ["## nvidia-smi", "", "```", *env["nvidia_smi"], "```", ""]
    (out / "SUMMARY.md").write_text("\n".join(lines))

    summary = {
        "date": now,
        "device": dev,
        "where": where,
        "quick": args.quick == "1",
        "environment": env,
        "stages": stages,
        "engine_file": engine_files[-1].name if engine_files else None,
        "smoke": {k: r["status"] for k, r in smoke.items()},
        "default_seed0_wall_s": {
            k: r["resources"]["wall_s"] for k, r in default.items() if r["status"] == "ok"
        },
        "committed_default_seed0_wall_s": {
            k: r["resources"]["wall_s"] for k, r in committed.items() if r["status"] == "ok"
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if engine_files:
        shutil.copy2(engine_files[-1], out / f"engine-bench-{dev}.json")
    if pop_file.is_file():
        shutil.copy2(pop_file, out / pop_file.name)
    for name in (f"smoke-{dev}", f"default-seed0-{dev}"):
        tar(out, f"{name}.tar.gz", [(work / "runs" / name, name)])
    tar(
        out,
        "logs.tar.gz",
        [(work / "logs", "logs"), (work / "benchmark-storage", "benchmark-storage")],
    )


if __name__ == "__main__":
    main()
