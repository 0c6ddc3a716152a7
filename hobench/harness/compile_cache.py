"""Where a suite's compiled code lives, so each machine compiles a task's functions once.

Every cell is a fresh process, and torch.compile keeps nothing across processes by default
but inductor's on-disk caches (its generated kernels, its FX-graph and AOT-autograd results)
under /tmp, which a reboot clears. A suite points them at the user's cache directory, one
folder per torch build (`compile_cache_dir`), so a second run, and every cell after the first
of a task shape, loads the compiled code instead of generating it. Inductor keys each entry by
the graph, the torch build, the compiler and the processor's instruction set, and treats an
entry it cannot read as a miss: it compiles afresh and writes the entry again.

What a process still pays before its first compiled call is inductor's own start-up, mostly
probing the C compiler for the processor's vector instructions (1.6 s of subprocesses) and
importing its code generators: `preload()` does that in the worker zygote, once per run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from hobench.catalog import cache_dir
from hobench.hypergrad.compiled import PACKAGES_ENV

INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"
PRELOAD_ENV = "HOBENCH_PRELOAD_COMPILER"  # "1": the worker zygote runs `preload()`


def compile_cache_dir() -> Path:
    """The compiled code of this torch build: `<hobench cache>/compile/torch-<version>`."""
    return cache_dir() / "compile" / f"torch-{torch.__version__}"


def configure() -> tuple[str, str | None]:
    """Point inductor's caches at `compile_cache_dir()` for this process and the workers it
    starts (their environment is this one's), unless the user set TORCHINDUCTOR_CACHE_DIR.
    Returns (the folder used, a one-line warning or None): a folder that cannot be written
    falls back to a temporary one, compiled code kept for this run only."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # Inductor writes its default (/tmp/torchinductor_<user>) there itself once it is used.
    chosen = os.environ.get(INDUCTOR_ENV)
    if chosen and chosen != default_cache_dir():
        os.environ.setdefault(PACKAGES_ENV, str(Path(chosen) / "hobench-packages"))
        return chosen, None
    folder, warning = compile_cache_dir(), None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        fallback = tempfile.mkdtemp(prefix="hobench-compile-")
        warning = (
            f"compile cache {folder} is not writable ({exc.strerror or exc}); compiling into "
            f"{fallback} for this run only (set HOBENCH_CACHE_DIR to a writable folder)"
        )
        folder = Path(fallback)
    os.environ[INDUCTOR_ENV] = str(folder)
    os.environ[PACKAGES_ENV] = str(folder / "packages")  # whole compiled functions
    return str(folder), warning


def compile_cache_counts() -> dict[str, int]:
    """Inductor's FX-graph cache lookups so far in this process: {"hits": n, "misses": m}."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return {"hits": inductor["fxgraph_cache_hit"], "misses": inductor["fxgraph_cache_miss"]}


def compiler_problem() -> str | None:
    """Why inductor cannot compile for the CPU here (no C++ compiler), in one line, or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler, or anything else that stops compiling
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        return f"{type(exc).__name__}: {first}"
    return None


def preload() -> None:
    """What a process's first compiled call would otherwise do inside a cell: import inductor's
    compiler and code generators and pick the processor's vector instruction set (which
    compiles and runs probe programs). No compiling and no autograd: safe before a fork."""
    import torch._functorch.aot_autograd  # noqa: F401
    import torch._inductor.codegen.cpp  # noqa: F401
    import torch._inductor.compile_fx  # noqa: F401
    import torch._inductor.lowering  # noqa: F401
    import torch._inductor.select_algorithm  # noqa: F401
    from torch._inductor.codecache import torch_key
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    pick_vec_isa()
    torch_key()
