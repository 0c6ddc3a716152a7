"""Packs, as wheels, what a borrowed GPU machine lacks to run hobench: `make gpu-pack`.

The GPU machine this project may borrow (one H100 or H200) has Python 3.12 with its own CUDA
build of torch and many packages (numpy, pandas, scipy, statsmodels, seaborn, pytest, ...), but
no network and none of optuna, mlxtend, autorank, cmaes, torchopt or higher. What it lacks
travels as wheels in an ignored folder (default .whl/), which tools/gpu-run.sh installs with
`pip install --no-index --no-deps --target`. Everything that goes there (the working tree and
the wheels) must fit 64 MiB.

How: hobench is built as a wheel, then pip resolves `hobench[peers]` for the target Python and
platform (a dry run that reads only the packages' metadata) with torch pinned to the image's and
stood in for by an empty stub, so torch's own CUDA dependencies never enter the resolution. From
the resolved set, the packages to carry are those reachable from hobench without passing through
torch or a package the image already has (IMAGE_PACKAGES, from the machine's package list); each
is downloaded at its resolved version for that platform, and hobench's own wheel is copied in.
A package published only as source (baycomp, which autorank needs) is built here as a pure-Python
wheel first; one that would need compiling for the target fails the pack with its name.

`--image-dir DIR` also downloads the image's share (the packages hobench reaches that the image is
assumed to have, and theirs): the CPU test installs those into a clean venv to stand in for the
image, then runs tools/gpu-run.sh on it.

Prints one line: the pack's size, the working tree's, and whether both fit the carry limit
(exit status 1 when they do not). PACK.json in the pack lists what is in it and why.

    .venv/bin/python tools/gpu_pack.py --python 3.12 --out .whl
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CARRY_LIMIT = 64 * 2**20  # bytes: the working tree and every carried path, per call

# The 'cuda' image's Python packages (KINDS.md's list, read on such a machine on 2026-11-17).
_IMAGE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp
"""
IMAGE_PACKAGES = _IMAGE_LIST.split()
# Versions known on the image (KINDS.md's pip list): the resolution honours them, so a carried
# package never asks for a newer one than the image holds.
IMAGE_PINS = {"3.12": ["torch==2.11.0", "numpy==2.5.2"]}
# Published as source only: built here; each must come out pure Python (py3-none-any).
SOURCE_ONLY = ["baycomp"]
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]


def pip(python: str, *args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "pip", *args] + (["-q"] if quiet else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        noise = "is ignored: it is neither a file nor a directory"
        err = "\n".join(ln for ln in done.stderr.splitlines() if noise not in ln)
        raise SystemExit(f"gpu-pack: `pip {' '.join(args[:2])} ...` failed:\n{err.strip()}")
    return done


def build_hobench(python: str, directory: Path) -> Path:
    """This tree's hobench as a wheel in `directory` (without build isolation where setuptools
    is at hand, so no index is needed)."""
    isolation = []
    try:
        import setuptools

        if int(setuptools.__version__.split(".")[0]) >= 68:
            isolation = ["--no-build-isolation"]
    except ImportError:
        pass
    for old in directory.glob("hobench-*.whl"):
        old.unlink()
    pip(python, "wheel", "--no-deps", *isolation, "-w", str(directory), str(ROOT))
    return next(directory.glob("hobench-*.whl"))


def sources_sha256() -> str:
    """hobench's sources and pyproject.toml: what the hobench wheel is built from."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "hobench").rglob("*.py")) + [ROOT / "pyproject.toml"]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def target_flags(python_version: str) -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for p in PLATFORMS:
        flags += ["--platform", p]
    return flags


def stub_wheel(directory: Path, name: str, version: str) -> None:
    """An empty wheel that stands in for `name` in the resolution (never packed)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hobench-gpu-pack\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def marker_env(python_version: str) -> dict[str, str]:
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }


def requirements_of(meta: dict, extras: set[str], env: dict[str, str]) -> list[str]:
    """The names `meta`'s package needs in `env` with `extras` asked for."""
    out = []
    for line in meta.get("requires_dist", []):
        req = Requirement(line)
        if req.marker is None or any(
            Marker(str(req.marker)).evaluate({**env, "extra": e}) for e in (extras or {""})
        ):
            out.append(canonicalize_name(req.name))
    return out


def closure(roots, resolved, env, stop) -> set[str]:
    """Names reachable from `roots` (name → extras) through the resolved metadata, not entering
    a name in `stop`."""
    seen, todo = set(), [(canonicalize_name(n), set(e)) for n, e in roots.items()]
    while todo:
        name, extras = todo.pop()
        if name in stop or name in seen:
            continue
        seen.add(name)
        todo += [(n, set()) for n in requirements_of(resolved[name]["metadata"], extras, env)]
    return seen


def wheel_for(directory: Path, name: str, version: str) -> Path | None:
    norm = re.sub(r"[-_.]+", "_", name).lower()
    for path in directory.glob("*.whl"):
        dist, ver = path.name.split("-")[:2]
        if re.sub(r"[-_.]+", "_", dist).lower() == norm and ver == version:
            return path
    return None


def fetch(python, names, resolved, out: Path, local: Path, python_version: str) -> list[Path]:
    """Each name's wheel at its resolved version in `out`; wheels of other packages or versions
    removed (two versions of one package stop the install)."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = {name: resolved[name]["metadata"]["version"] for name in sorted(names)}
    # Built here (hobench, source-only packages): always the fresh build, whose version number
    # need not change with its content.
    copied = {}
    for name, version in wanted.items():
        if built := wheel_for(local, name, version):
            copied[name] = Path(shutil.copy2(built, out))
    have = {n: copied.get(n) or wheel_for(out, n, v) for n, v in wanted.items()}
    missing = [f"{n}=={wanted[n]}" for n, path in have.items() if path is None]
    if missing:  # one pip for all: a pip per package spent most of the pack starting pips
        pip(python, "download", "--no-deps", *target_flags(python_version), "-d", str(out),
            *missing)  # fmt: skip
    kept = []
    for name, version in wanted.items():
        path = have[name] or wheel_for(out, name, version)
        if path is None:
            raise SystemExit(f"gpu-pack: pip downloaded no wheel of {name}=={version}")
        kept.append(path)
    for path in out.glob("*.whl"):
        if path not in kept:
            path.unlink()
    return kept


def commit() -> str | None:
    """The tree's commit, with -dirty when it has changes (None outside git)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return done.stdout.strip() or None


def tree_bytes() -> int:
    """What travels besides the carried paths: tracked files and untracked, unignored ones."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    return sum((ROOT / p).stat().st_size for p in listed if p and (ROOT / p).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="the target's Python (default 3.12)")
    parser.add_argument("--out", default=str(ROOT / ".whl"), help="the pack (default .whl/)")
    parser.add_argument("--image-dir", help="also download the image's share here (CPU test)")
    parser.add_argument(
        "--hobench-only",
        action="store_true",
        help="rebuild only hobench's wheel in an existing pack (no index needed)",
    )
    parser.add_argument(
        "--pin", action="append", default=None,
        help="a version the target holds (name==version); default: the image's known ones",
    )  # fmt: skip
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    env = marker_env(args.python)
    pins = args.pin if args.pin is not None else IMAGE_PINS.get(args.python, [])
    py = sys.executable
    if args.hobench_only:
        manifest = json.loads((out / "PACK.json").read_text())
        built = build_hobench(py, out)
        manifest["hobench_sources_sha256"] = sources_sha256()
        manifest["commit"] = commit()
        (out / "PACK.json").write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"gpu-pack: rebuilt {built.name} in {out}")
        return 0
    with tempfile.TemporaryDirectory(prefix="gpu-pack-") as tmp:
        local = Path(tmp) / "local"
        local.mkdir()
        build_hobench(py, local)
        for name in SOURCE_ONLY:
            pip(py, "wheel", "--no-deps", "--no-binary", name, "-w", str(local), name)
        for built in local.glob("*.whl"):
            if not built.name.endswith("-py3-none-any.whl"):
                raise SystemExit(f"gpu-pack: {built.name} is not pure Python: it needs the target")
        torch_pin = next((p for p in pins if canonicalize_name(p.split("==")[0]) == "torch"), None)
        if torch_pin:
            # A local label sorts above the published release, so pip takes the stub.
            stub_wheel(local, "torch", torch_pin.split("==")[1] + "+stub")
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{p}\n" for p in pins))
        report = Path(tmp) / "report.json"
        pip(py, "install", "--dry-run", "--ignore-installed", "--report", str(report),
            *target_flags(args.python), "--target", str(Path(tmp) / "target"),
            "--find-links", str(local), "-c", str(constraints), "hobench[peers]")  # fmt: skip
        installs = json.loads(report.read_text())["install"]
        resolved = {canonicalize_name(i["metadata"]["name"]): i for i in installs}
        image = {canonicalize_name(n) for n in IMAGE_PACKAGES}
        carried = closure({"hobench": {"peers"}}, resolved, env, stop=image | {"torch"})
        wheels = fetch(py, carried, resolved, out, local, args.python)
        reached = set()
        for c in carried:
            extras = {"peers"} if c == "hobench" else set()
            reached.update(requirements_of(resolved[c]["metadata"], extras, env))
        from_image = sorted((reached & image) - {"torch"})
        if args.image_dir:
            share = closure({n: set() for n in from_image}, resolved, env, stop={"torch"})
            fetch(py, share, resolved, Path(args.image_dir).resolve(), local, args.python)
    (out / "PACK.json").write_text(
        json.dumps(
            {
                "python": args.python,
                "platforms": PLATFORMS,
                "pins": pins,
                "wheels": sorted(w.name for w in wheels),
                "from_image": from_image,
                "hobench_sources_sha256": sources_sha256(),
                "pyproject_sha256": hashlib.sha256(
                    (ROOT / "pyproject.toml").read_bytes()
                ).hexdigest(),
                "commit": commit(),
            },
            indent=2,
        )
        + "\n"
    )
    packed = sum(w.stat().st_size for w in wheels)
    tree = tree_bytes()
    fits = packed + tree <= CARRY_LIMIT
    mib = 2**20
    print(
        f"gpu-pack: {len(wheels)} wheels for Python {args.python}, {packed / mib:.1f} MiB in "
        f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} + working tree "
        f"{tree / mib:.1f} MiB = {(packed + tree) / mib:.1f} of {CARRY_LIMIT / mib:.0f} MiB: "
        + ("fits the carry limit" if fits else "OVER the carry limit")
    )
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
