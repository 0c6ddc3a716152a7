"""The compiled path: a Dynamics' step, its pullback and its tangent step through torch.compile.

Nothing here is specific to a model: any `Dynamics` whose step torch.compile can trace whole
(`fullgraph=True`) gets three compiled functions, each cached per Dynamics and per signature
(the shapes, dtypes and devices of the state, λ and the batch):

- `step(state, hp, batch)`: Φ for the no-grad forward sweep (Reverse-HG's unroll);
- `pullback(state, hp, batch, α)`: (α A, α B) as `torch.func.vjp` of Φ. Every state is stored,
  so the recomputed Φ(s_{t-1}) is not needed; compiled, its unused work is dropped (eager
  autograd cannot), and softmax/cross-entropy with their double backward become a few kernels;
- `tangent_step(state, Z, hp, basis, batch)`: (s_t, A Z + B) as `vmap` of `torch.func.jvp` over
  the m tangents (Forward-HG, RTHO). Eager forward mode builds a zero tangent as large as the
  data at every step (pytorch issue #69687); compiled, it is never materialised.

A post-grad pass on the ATen graph (`_Rewrite`) (i) splits `addmm(C, A, B)` into
`add(mm(A, B), C)`: the BLAS accumulates into C block by block along the inner dimension, so a
large C (an adjoint α carried over T steps) loses the low bits of every block's sum (compiled
Reverse-HG drifted to 6.9e-5 relative error against float64 without it; torchopt 1.1e-6), and
(ii) fuses independent `mm`s that share a large operand X into one `mm(X, cat([B1, B2]))`, so X
is read once (the step's X Wᵀ and the pullback's X αᵀ).

Whether a call compiles: `use_compiled(compile)`. Compiled is the engine's default: every
function's `compile=None` runs the compiled path. An explicit `compile=False` runs eager, and
HOBENCH_COMPILE=0 forces eager everywhere, `compile=True` included. The harness asks for eager
wherever the numbers are the protocol's (every task's final training, the cost probes) or a
cell is too short to pay for a compile: each cell is a fresh process that compiles anew, for
seconds to tens of seconds on a small CPU, longer than most of the default suite's cells, and
compiled numbers round differently from eager, so a suite's gradient strategies compile only
with `compile = true`. The tests check the eager math with `set_default(False)`
(tests/conftest.py); HOBENCH_COMPILE=1 turns the default back on there too.

Where compiling fails (no C compiler, an untraceable step, a torch without the pass API) one
warning line is given and the eager path is used from then on. `compile_times()` reports the
seconds each first call (compile included) took, so timings of later calls exclude it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import operator
import os
import random
import time
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.func import jvp, vjp, vmap
from torch.utils._pytree import tree_flatten, tree_map

from hobench.hypergrad.dynamics import Dynamics

ENV = "HOBENCH_COMPILE"
# A folder where each compiled function is kept whole for later processes (the harness sets it:
# hobench.harness.compile_cache); unset, a process compiles for itself.
PACKAGES_ENV = "HOBENCH_COMPILED_PACKAGES"
MAX_PACKAGES = 16  # per name: beyond, a function whose constants change every time is not kept

# Why compiling was given up in this process (None while it works); set by the first failure.
_failure: str | None = None
# What `compile=None` means (set_default); compiled unless changed.
_default = True
# (name, seconds of the first call, compile included), in the order they were compiled.
_compile_log: list[tuple[str, float]] = []
# The functions loaded whole from a package instead of traced (see _Packages), in order.
_package_log: list[str] = []


def use_compiled(compile: bool | None = None) -> bool:
    """True when the compiled path should run: HOBENCH_COMPILE=0 forces eager; otherwise an
    explicit `compile` decides, and None is the default (compiled unless set_default(False);
    HOBENCH_COMPILE=1 makes it compiled whatever set_default said)."""
    env = os.environ.get(ENV, "").strip()
    if env == "0" or _failure is not None:
        return False
    if compile is not None:
        return compile
    return _default or env == "1"


def set_default(compiled: bool) -> None:
    """What `compile=None` runs in this process: the compiled path (True, the default) or eager."""
    global _default
    _default = compiled


@contextlib.contextmanager
def default_path(compiled: bool) -> Iterator[None]:
    """`set_default(compiled)` for the duration of a block (a cell: its suite's choice)."""
    before = _default
    set_default(compiled)
    try:
        yield
    finally:
        set_default(before)


def compile_failure() -> str | None:
    """The one-line reason compiling was given up in this process, or None."""
    return _failure


def packages_loaded() -> int:
    """How many compiled functions this process loaded from packages (none traced)."""
    return len(_package_log)


def compile_times() -> list[tuple[str, float]]:
    """(function, seconds) of each compiled function's first call per signature (compile time
    included; the call itself is a single step)."""
    return list(_compile_log)


# --- the functions that are compiled (also the eager fallback) ---


def step_of(dynamics: Dynamics) -> Callable:
    def step(state, hp, batch):
        return dynamics.step(state, hp, batch)

    return step


def pullback_of(dynamics: Dynamics) -> Callable:
    def pullback(state, hp, batch, alpha):
        """(α_t A_t, α_t B_t) at the stored s_{t-1}."""
        _, pull = vjp(lambda s, h: dynamics.step(s, h, batch), state, hp)
        return pull(alpha)

    return pullback


def tangent_step_of(dynamics: Dynamics) -> Callable:
    def tangent_step(state, z, hp, basis, batch):
        """(s_t, A_t Z_{t-1} + B_t), the m tangents batched by vmap."""

        def along(z_j, e_j):
            return jvp(lambda s, h: dynamics.step(s, h, batch), (state, hp), (z_j, e_j))

        s_batched, z_next = vmap(along)(z, basis)
        state_next = tree_map(lambda x: x[0], s_batched)
        # Each tangent in its state's dtype: torch 2.13's forward mode can return a float64
        # tangent of a float32 gradient (a mean's backward beside a λ-weighted term), which
        # the next step's float32 products would refuse. A no-op where the dtypes agree.
        return state_next, tree_map(lambda t, x: t.to(x.dtype), z_next, state_next)

    return tangent_step


_KINDS = {"step": step_of, "pullback": pullback_of, "tangent_step": tangent_step_of}


def compiled(dynamics: Dynamics, kind: str) -> Callable:
    """The compiled `kind` ("step", "pullback" or "tangent_step") of `dynamics`, cached."""
    # Kept on the Dynamics itself (a frozen dataclass, hence through __dict__), so the compiled
    # functions, which hold the Dynamics, are freed with it.
    per_dynamics = dynamics.__dict__.setdefault("_compiled", _PerDynamics())
    if kind not in per_dynamics:
        per_dynamics[kind] = _Compiled(kind, _KINDS[kind](dynamics), dynamics)
    return per_dynamics[kind]


class _PerDynamics(dict):
    """A Dynamics' compiled functions, pickled empty. Packaging a function pickles the Dynamics
    it closes over (its guards' values), and a function compiled before it, kept here, holds
    guard managers that cannot be pickled: Reverse-HG's pullback, packaged after its step,
    failed so on torch 2.13 (TypeError: cannot pickle 'RootGuardManager')."""

    def __reduce__(self):
        return (_PerDynamics, ())


def _signature(args) -> tuple:
    leaves, spec = tree_flatten(args)
    return (str(spec), torch.is_grad_enabled()) + tuple(
        (tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else repr(x)
        for x in leaves
    )


class _Compiled:
    """`fn` through torch.compile, with the first call of each signature timed and any failure
    there turned into one warning and the eager `fn`. Where PACKAGES_ENV names a folder, each
    signature's compiled function is kept there whole (`torch.compile(...).aot_compile`: the
    traced graph, its guards and inductor's code) and a later process loads it instead of
    tracing again (see `_Packages`)."""

    def __init__(self, name: str, fn: Callable, dynamics: Dynamics) -> None:
        self.name, self.fn, self.dynamics = name, fn, dynamics
        self.compiled_fn: Callable | None = None
        self.by_signature: dict[tuple, Callable] = {}

    def __call__(self, *args):
        if _failure is not None:
            return self.fn(*args)
        key = _signature(args)
        run = self.by_signature.get(key)
        if run is not None:
            return run(*args)
        start = time.perf_counter()
        try:
            with _own_random_state():
                run, out = self._first_call(key, args)
        except Exception as exc:  # any failure to compile means eager
            _give_up(exc)
            return self.fn(*args)
        self.by_signature[key] = run
        _compile_log.append((self.name, time.perf_counter() - start))
        return out

    def _torch_compiled(self, **options) -> Callable:
        return torch.compile(
            self.fn,
            fullgraph=True,
            dynamic=False,
            options={"post_grad_custom_post_pass": _rewrite_pass(), **options},
        )

    def _package(self, args: tuple):
        """The whole compiled function for `args`' signature (torch.compile's aot_compile)."""
        from torch._dynamo.exc import RestartAnalysis

        portable = torch.compiler.keep_portable_guards_unsafe
        for attempt in range(3):
            try:
                return self._torch_compiled(guard_filter_fn=portable).aot_compile((args, {}))
            except RestartAnalysis:  # dynamo asks to trace again (a float it now specialises)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _first_call(self, key: tuple, args: tuple) -> tuple[Callable, Any]:
        folder = os.environ.get(PACKAGES_ENV)
        packages = _Packages(Path(folder), self.name, key, self.dynamics) if folder else None
        if packages is not None and packages.packageable():
            try:
                found = packages.load(args, self.fn)
                if found is not None:
                    _package_log.append(self.name)
                    return found
                # Only tensor and grad-mode guards travel (identity and global guards cannot,
                # and some cannot be pickled); constants are in the package's name, and its
                # first answer is checked against eager in every process (_Packages.load).
                aot = self._package(args)
                out = aot(*args)
                packages.save(aot)
                return aot, out
            except Exception as exc:  # torch's packaging is experimental: compile in memory
                packages.give_up(exc)
        if self.compiled_fn is None:
            self.compiled_fn = self._torch_compiled()
        # One compiled graph per Dynamics and signature: more than dynamo's default of 8
        # recompiles of one function is expected when many Dynamics share a step's code.
        with torch._dynamo.config.patch(recompile_limit=1024):
            return self.compiled_fn, self.compiled_fn(*args)


@contextlib.contextmanager
def _own_random_state() -> Iterator[None]:
    """Python's `random` unseeded while compiling, and given back to the cell as it was. Where
    AOTAutograd cannot key a graph (vmap, jvp), torch 2.13's aot_compile keys it by
    `random.random()`: under a cell's seed every such function got the same key, and auxtarget's
    tangent step was served ridge's, whose package then failed ("too many values to unpack").
    Given back, the cell's random numbers do not depend on whether it compiled or loaded."""
    state = random.getstate()
    random.seed()
    try:
        yield
    finally:
        random.setstate(state)


class _Packages:
    """One function's compiled packages for one signature, in a folder shared by processes.

    The file name holds the function, the signature, the torch build, hobench's source, and the
    code and closure constants reachable from the Dynamics (`_code_of`). A package keeps only
    dynamo's tensor and grad-mode guards, so it is used only once its first call agrees with the
    eager function on the same arguments. Several may share a name (suffixes -0, -1, ..., at
    most MAX_PACKAGES), for constants the name does not hold; one that cannot be read is deleted
    with one warning and compiled again.
    """

    def __init__(self, folder: Path, name: str, key: tuple, dynamics: Dynamics) -> None:
        what = repr((name, key, torch.__version__, source_digest(), _code_of(dynamics)))
        self.stem = f"{name}-{hashlib.sha256(what.encode()).hexdigest()[:24]}"
        self.folder, self.name, self.dynamics = folder, name, dynamics

    def load(self, args: tuple, eager: Callable) -> tuple[Callable, Any] | None:
        from torch._guards import TracingContext, tracing
        from torch._subclasses.fake_tensor import FakeTensorMode

        expected: list = []  # the eager answer, computed once if any package gets that far
        for path in sorted(self.folder.glob(f"{self.stem}-*.bin")):
            try:
                # Unpickling its guards installs some in a tracing context (torch 2.13).
                with path.open("rb") as file, tracing(TracingContext(FakeTensorMode())):
                    package = torch.compiler.load_compiled_function(
                        file, external_data={"dynamics": self.dynamics}
                    )
                if not package.guard_check(*args):
                    continue  # another task's constants
                out = package(*args)
            except Exception as exc:
                _discard(path, f"unreadable ({type(exc).__name__})")
                continue
            expected = expected or [eager(*args)]
            if _agree(out, expected[0]):
                return package, out
            # Another task's or seed's constants (or a wrong package): kept for them; if none
            # agrees, a new one is compiled beside it.
        return None

    def packageable(self) -> bool:
        """False once a process found this function cannot be packaged (torch 2.13 cannot
        pickle some guards, e.g. of Reverse-HG's pullback): it is then compiled in memory."""
        return not (self.folder / f"{self.stem}.unpackageable").exists()

    def give_up(self, exc: Exception) -> None:
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            line = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
            (self.folder / f"{self.stem}.unpackageable").write_text(line + "\n")

    def save(self, package) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        taken = {p.name for p in self.folder.glob(f"{self.stem}-*.bin")}
        if len(taken) >= MAX_PACKAGES:
            return  # constants that change with every seed: compiled in memory from now on
        index = next(i for i in range(len(taken) + 1) if f"{self.stem}-{i}.bin" not in taken)
        try:  # written to a temporary file and renamed: a reader sees all of it or nothing
            package.save_compiled_function(
                str(self.folder / f"{self.stem}-{index}.bin"),
                external_data={"dynamics": self.dynamics},
            )
        except Exception as exc:  # a full or read-only folder: this process keeps it in memory
            warnings.warn(
                f"hobench: compiled {self.name} not kept in {self.folder} "
                f"({type(exc).__name__}: {str(exc)[:120]})",
                RuntimeWarning,
                stacklevel=4,
            )


def _discard(path: Path, why: str) -> None:
    warnings.warn(
        f"hobench: compiled package {path.name} {why}; compiling it again",
        RuntimeWarning,
        stacklevel=5,
    )
    path.unlink(missing_ok=True)


def _agree(out: Any, expected: Any) -> bool:
    """The package's first answer against the eager one: equal up to rounding (1e-3 of each
    leaf's scale; compiled code sums in another order, a wrong constant is off by far more)."""
    got, want = tree_flatten(out)[0], tree_flatten(expected)[0]
    if len(got) != len(want):
        return False
    for a, b in zip(got, want, strict=True):
        if not isinstance(a, torch.Tensor):
            if a != b:
                return False
            continue
        scale = max(float(b.abs().max()), float(a.abs().max())) if b.numel() else 0.0
        if a.shape != b.shape or float((a - b).abs().max() if b.numel() else 0.0) > 1e-3 * scale:
            return False
    return True


def _code_of(obj: Any, depth: int = 0) -> list[str]:
    """What a Dynamics computes beyond its arguments: the qualified names and bytecode hashes of
    the functions reachable through its closures and bound methods, and the numbers and strings
    in those closures (a learning rate: dynamo bakes it into the graph). A bound method's object
    (a task, with its seed's numbers) is left out; a constant read from it makes other packages
    of the same name, told apart by their first answers (_Packages.load)."""
    if depth > 6:
        return []
    if isinstance(obj, bool | int | float | str | None):
        return [repr(obj)]
    if isinstance(obj, Dynamics):
        return [c for f in (obj.init, obj.step, obj.loss) for c in _code_of(f, depth + 1)]
    if isinstance(obj, types.MethodType):  # a task's loss: its class and code, not its state
        return [type(obj.__self__).__qualname__] + _code_of(obj.__func__, depth + 1)
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        out = [obj.__qualname__, hashlib.sha256(code.co_code).hexdigest()[:12]]
        for cell in obj.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                out += _code_of(cell.cell_contents, depth + 1)
        return out
    if isinstance(obj, list | tuple):
        return [c for item in obj for c in _code_of(item, depth + 1)]
    return []


@functools.cache
def source_digest() -> str:
    """hobench's source: a change anywhere (a task's loss, the engine) may change the graphs."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _give_up(exc: Exception) -> None:
    global _failure
    first_line = (str(exc).strip().splitlines() or [""])[0][:160]
    _failure = f"{type(exc).__name__}: {first_line}"
    warnings.warn(
        f"hobench: torch.compile failed ({_failure}); using the eager path "
        f"(set {ENV}=0 to skip compiling)",
        RuntimeWarning,
        stacklevel=3,
    )


# --- the post-grad pass ---


def _rewrite_pass():
    """The inductor pass object (imported late: older torch builds lack the API, and then the
    first compile fails over to eager)."""
    from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

    class _Rewrite(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            rewrite(graph)

        def uuid(self) -> bytes:
            # Inductor's caches key on this: a change to this file recompiles.
            return get_hash_for_files((__file__,))

    return _Rewrite()


def rewrite(graph: torch.fx.Graph) -> None:
    """Products with a zero operand become zeros, batched products with a broadcast operand one
    mm, every addmm an mm + add; then independent mms that share a large operand are fused."""
    drop_zero_products(graph)
    unbatch_bmm(graph)
    split_addmm(graph)
    fuse_shared_mm(graph)


_aten = torch.ops.aten


def _fake(x: Any) -> Any:
    if isinstance(x, torch.fx.Node):
        return x.meta["val"]
    if isinstance(x, list | tuple):
        return type(x)(_fake(y) for y in x)
    return x


def _call(graph: torch.fx.Graph, target, args: tuple, kwargs=None) -> torch.fx.Node:
    """A new node `target(*args)`, with its `val` metadata (a fake tensor) as inductor needs."""
    from torch._guards import detect_fake_mode

    node = graph.call_function(target, args, kwargs or {})
    values = _fake(args)
    mode = detect_fake_mode(tree_flatten(values)[0])
    if mode is None:  # no fake tensor among the inputs (new constants; graphs in tests)
        node.meta["val"] = target(*values, **(kwargs or {}))
    else:
        with mode:
            node.meta["val"] = target(*values, **(kwargs or {}))
    return node


def _replace(graph: torch.fx.Graph, node: torch.fx.Node, new: torch.fx.Node) -> None:
    node.replace_all_uses_with(new)
    graph.erase_node(node)


_VIEWS = {
    _aten.expand.default,
    _aten.view.default,
    _aten.reshape.default,
    _aten.permute.default,
    _aten.unsqueeze.default,
    _aten.squeeze.dim,
}


def _is_zero(x: Any) -> bool:
    """A constant zero tensor, seen through views (a zero tangent of constant data)."""
    while isinstance(x, torch.fx.Node) and x.target in _VIEWS:
        x = x.args[0]
    return isinstance(x, torch.fx.Node) and x.target is _aten.full.default and x.args[1] == 0


def drop_zero_products(graph: torch.fx.Graph) -> None:
    """mm or bmm with a zero operand → zeros. Forward mode differentiates the data too: its zero
    tangent, as large as the data, would otherwise be multiplied out at every step."""
    for node in list(graph.nodes):
        if node.target in (_aten.mm.default, _aten.bmm.default) and any(
            _is_zero(a) for a in node.args
        ):
            out = node.meta["val"]
            with graph.inserting_before(node):
                zeros = _call(
                    graph,
                    _aten.full.default,
                    (list(out.shape), 0.0),
                    {"dtype": out.dtype, "layout": torch.strided, "device": out.device},
                )
            _replace(graph, node, zeros)


def _broadcast(x: Any) -> torch.fx.Node | None:
    """X when `x` is X (2-D) expanded along a new leading batch axis, else None."""
    if isinstance(x, torch.fx.Node) and x.target is _aten.expand.default:
        src, size = x.args[0], x.args[1]
        if isinstance(src, torch.fx.Node) and src.meta["val"].dim() == 2 and len(size) == 3:
            return src if list(size[1:]) == list(src.meta["val"].shape) else None
    return None


def unbatch_bmm(graph: torch.fx.Graph) -> None:
    """bmm(X broadcast, B) → one mm(X, [B_1 … B_b]), and bmm(A, X broadcast) → one
    mm([A_1; …; A_b], X): X is read once instead of once per batch entry (vmap over the m
    tangents batches the products with the data this way)."""
    for node in list(graph.nodes):
        if node.target is not _aten.bmm.default:
            continue
        a, b = node.args
        batch, rows, inner = a.meta["val"].shape
        cols = b.meta["val"].shape[2]
        with graph.inserting_before(node):
            if (x := _broadcast(a)) is not None:
                side = _call(graph, _aten.permute.default, (b, [1, 0, 2]))
                side = _call(graph, _aten.reshape.default, (side, [inner, batch * cols]))
                out = _call(graph, _aten.mm.default, (x, side))
                out = _call(graph, _aten.reshape.default, (out, [rows, batch, cols]))
                out = _call(graph, _aten.permute.default, (out, [1, 0, 2]))
            elif (x := _broadcast(b)) is not None:
                side = _call(graph, _aten.reshape.default, (a, [batch * rows, inner]))
                out = _call(graph, _aten.mm.default, (side, x))
                out = _call(graph, _aten.reshape.default, (out, [batch, rows, cols]))
            else:
                continue
        _replace(graph, node, out)


def split_addmm(graph: torch.fx.Graph) -> None:
    """addmm(C, A, B) → add(mm(A, B), C), the add left to inductor to fuse with its neighbours."""
    for node in list(graph.nodes):
        if node.target is _aten.addmm.default and not node.kwargs and len(node.args) == 3:
            c, a, b = node.args
            with graph.inserting_before(node):
                product = _call(graph, _aten.mm.default, (a, b))
                total = _call(graph, _aten.add.Tensor, (product, c))
            _replace(graph, node, total)


def _ancestors(node: torch.fx.Node) -> set[torch.fx.Node]:
    seen, stack = set(), list(node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def fuse_shared_mm(graph: torch.fx.Graph) -> None:
    """mm(X, B1), mm(X, B2), ... (neither an input of the other) → one mm(X, cat([B1, B2], 1))
    split back into its parts; likewise mm(A1, X), mm(A2, X) with A stacked along rows. Done
    only when X is larger than the operands stacked, so the copy costs less than a read of X."""
    from torch._inductor.pattern_matcher import stable_topological_sort

    for side in (0, 1):  # the shared operand is the left one, then the right one
        groups: dict[torch.fx.Node, list[torch.fx.Node]] = {}
        for node in graph.nodes:
            if node.target is _aten.mm.default and isinstance(node.args[side], torch.fx.Node):
                groups.setdefault(node.args[side], []).append(node)
        for shared, group in groups.items():
            picked, ancestors = [], {}
            for node in group:
                ancestors[node] = _ancestors(node)
                if all(p not in ancestors[node] and node not in ancestors[p] for p in picked):
                    picked.append(node)
            others = [node.args[1 - side] for node in picked]
            dim = 1 - side  # B's columns, or A's rows
            sizes = [o.meta["val"].shape[dim] for o in others]
            if len(picked) < 2 or shared.meta["val"].numel() <= sum(
                o.meta["val"].numel() for o in others
            ):
                continue
            with graph.inserting_before(picked[0]):
                stacked = _call(graph, _aten.cat.default, (others, dim))
                args = (shared, stacked) if side == 0 else (stacked, shared)
                product = _call(graph, _aten.mm.default, args)
                parts = _call(graph, _aten.split_with_sizes.default, (product, sizes, dim))
                for i, node in enumerate(picked):
                    part = graph.call_function(operator.getitem, (parts, i))
                    part.meta["val"] = parts.meta["val"][i]
                    node.replace_all_uses_with(part)
            for node in picked:
                graph.erase_node(node)
    stable_topological_sort(graph)
    graph.lint()
