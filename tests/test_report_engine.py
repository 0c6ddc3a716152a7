"""The engine summary as a report table: its caption says which device measured what memory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hobench.report.engine import engine_table

COMMITTED = Path(__file__).resolve().parent.parent / "results" / "engine-bench.json"


def test_cpu_summary_caption_speaks_of_rss(tmp_path: Path) -> None:
    path = tmp_path / "engine-bench.json"
    shutil.copy(COMMITTED, path)
    table = engine_table(path)
    caption = table.caption
    assert "peak RSS" in caption and "make bench-engine" in caption
    # readable case names, not the benchmark's ids
    names = [row[0] for row in table.rows]
    assert "Reverse-HG" in names and "reverse" not in names
    # Which run, where: make bench shows this machine's or the committed one's.
    assert f"({path}, commit " in caption and "on a 2-core AMD EPYC" in caption


def test_gpu_summary_caption_names_the_gpu_and_its_memory(tmp_path: Path) -> None:
    """A summary as make bench-gpu writes it (its meta: device, gpu, cuda), built from the
    committed CPU one: no GPU figures exist yet."""
    summary = json.loads(COMMITTED.read_text(encoding="utf-8"))
    summary["meta"] |= {"device": "cuda", "gpu": "a GPU name", "cuda": "12.x"}
    path = tmp_path / "engine-bench-cuda.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    caption = engine_table(path).caption
    assert "cuda (a GPU name)" in caption and "GPU memory" in caption
    assert "peak RSS" not in caption and "make bench-gpu" in caption
