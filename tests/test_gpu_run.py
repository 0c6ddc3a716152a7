"""tools/gpu-run.sh, the one-command GPU run (docs/gpu.md), exercised on this machine's CPU.

The same script runs with DEVICE=cpu and the QUICK sizes in a clean virtual environment made
only from torch (the CPU build from the local index, pinned as .ci/run pins it) and packed
wheels: the pack's "image" share stands in for the GPU image's own packages (numpy, pandas,
scipy, ...), and the pack itself (what `make gpu-pack` carries: optuna, mlxtend, autorank, cmaes,
torchopt, higher, hobench, ...) is installed by the script with --no-index --target, as on the
GPU machine. The GPU's Python is 3.12 and this one may differ, so the pack is made for this
interpreter, in build/gpu-pack-pyX.Y/ (kept between runs; hobench's wheel is rebuilt every time,
the rest when pyproject.toml changes). Skipped only when there is no such pack and PyPI cannot be
reached to make one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PACK = ROOT / "build" / f"gpu-pack-py{PY}"
# The running torch, local label included (2.13.0+cpu here: the CPU build on this machine's disk,
# as .ci/run installs it); never an unpinned one, which would pull a CUDA build of several GB.
TORCH = torch.__version__


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def gpu_pack(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_pack.py"), "--python", PY, *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def ensure_pack() -> tuple[Path, Path]:
    """The pack and the image's share for this interpreter, with this tree's hobench."""
    whl, image = PACK / "whl", PACK / "image"
    manifest = whl / "PACK.json"
    pyproject = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if (
        manifest.is_file()
        and image.is_dir()
        and json.loads(manifest.read_text()).get("pyproject_sha256") == pyproject
    ):
        gpu_pack("--out", str(whl), "--hobench-only")
    elif pypi_reachable():
        gpu_pack(
            "--pin", f"torch=={TORCH.split('+')[0]}", "--out", str(whl), "--image-dir", str(image)
        )
    else:
        pytest.skip(
            f"no pack for Python {PY} in {PACK.relative_to(ROOT)} (or one made for another "
            "pyproject.toml) and pypi.org cannot be reached to make it"
        )
    return whl, image


@pytest.mark.slow
def test_gpu_run_on_cpu_in_a_clean_environment(tmp_path):
    whl, image = ensure_pack()
    venv, out = tmp_path / "venv", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # pip: the image has it
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling torch's and the image's thousands of modules at install
    # took half this test (25 of 50 s); the script itself installs the pack so too.
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    install = [*pip, "install", "-q", "--no-compile"]
    image_wheels = ["--no-index", "--no-deps", *map(str, image.glob("*.whl"))]
    for extra in (["--only-binary=:all:", f"torch=={TORCH}"], image_wheels):
        done = subprocess.run(install + extra, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(DEVICE="cpu", QUICK="1", PYTHON=str(python), PACK=str(whl), OUT=str(out))
    done = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu-run.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]

    # What comes back from the device machine: at most 8 plain files of at most 16 MiB.
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files
    assert all((out / f).is_file() and (out / f).stat().st_size <= 16 * 2**20 for f in files)
    for name in ("SUMMARY.md", "summary.json", "logs.tar.gz", "population-cpu.json"):
        assert name in files, files
    for suite in ("smoke-cpu", "default-seed0-cpu"):
        with tarfile.open(out / f"{suite}.tar.gz") as t:
            names = t.getnames()
        assert f"{suite}/runs.jsonl" in names and f"{suite}/report/REPORT.md" in names, names

    summary = json.loads((out / "summary.json").read_text())
    stages = {s["stage"]: s["rc"] for s in summary["stages"]}
    assert set(stages) >= {"install", "engine", "smoke-cpu", "default-seed0-cpu", "population"}
    assert set(stages.values()) == {0}, stages
    assert summary["smoke"] and set(summary["smoke"].values()) == {"ok"}
    page = (out / "SUMMARY.md").read_text()
    assert "float64 reference" in page and "configurations per second" in page.lower()

    # The packed packages came from the script's target; the image's from the clean venv.
    with tarfile.open(out / "logs.tar.gz") as t:
        log = t.extractfile("logs/install.log").read().decode()
    where = dict(ln.split(" ", 2)[::2] for ln in log.splitlines() if ln.count(" ") >= 2)
    for name in ("optuna", "mlxtend", "autorank", "cmaes", "torchopt", "higher", "hobench"):
        assert "/site/" in where[name], (name, where[name])
    assert where["numpy"].startswith(str(venv)), where["numpy"]
