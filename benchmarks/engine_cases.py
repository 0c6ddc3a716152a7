"""The engine benchmark cases on the hyper-cleaning shape.

5000 examples × 784 features × 10 classes, softmax regression, full-batch, T steps, float32, on
the CPU, or on a GPU with HOBENCH_BENCH_DEVICE=cuda (bench_device.py): the data, the parameters
and the peers' models all live on the data's device. Each case is a zero-argument callable doing
the whole job once, built by `build(name)`, which on a GPU waits for the device before returning;
the timing benchmarks and the peak-memory subprocesses both use these, so they measure the same
work.

Our hypergradients run the engine's compiled path (`compile=True`; HOBENCH_COMPILE=0 forces
eager, and the summary says which ran); the `-eager` cases run the same work on the eager path,
side by side. Every Dynamics is built once per process and reads the data from its batch, not
from a closure, so each compiled function is compiled once and its compile time is measured in
the first call, apart from the timed rounds.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.bench_device import requested_device, synced
from hobench.hypergrad import Dynamics, ForwardState, forward, gd, momentum, reverse

N, D, C = 5000, 784, 10
STEPS = int(os.environ.get("HOBENCH_BENCH_T", "500"))
# HOBENCH_BENCH_THREADS=n: torch's threads for every case (default: torch's own, one per core).
# On a machine shared with other work, 1 keeps OpenMP's waiting threads from fighting the other
# processes for the cores, which makes multi-threaded timings erratic. The summary prints it.
if os.environ.get("HOBENCH_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["HOBENCH_BENCH_THREADS"]))
LR = 0.1
# Where the cases run; conftest.py stops the session with one line if it is not there.
DEVICE = requested_device()

# RTHO's hyper-step interval (the rtho strategy's default Δ).
RTHO_DELTA = 10

PLAIN = ["plain-autograd", "plain-analytic"]
HYPERGRADIENTS = ["reverse", "forward-m1", "forward-m3", "forward-m10", "rtho-m3"]
EAGER = ["reverse-eager", "forward-m1-eager", "rtho-m3-eager"]
PEERS = ["torchopt", "higher"]
CASES = PLAIN + HYPERGRADIENTS + EAGER + PEERS


def make_data(seed: int = 0, device: str | torch.device = DEVICE) -> dict[str, torch.Tensor]:
    """Drawn on the CPU, then moved: every device gets the same numbers."""
    g = torch.Generator().manual_seed(seed)
    data = {
        "X": torch.rand(N, D, generator=g),
        "y": torch.randint(0, C, (N,), generator=g),
        "Xv": torch.rand(N, D, generator=g),
        "yv": torch.randint(0, C, (N,), generator=g),
        "lam": torch.rand(N, generator=g),
    }
    return {k: v.to(device) for k, v in data.items()}


def device_of(data: dict[str, torch.Tensor]) -> torch.device:
    return data["X"].device


def weighted_ce(params, lam, X, y):
    W, b = params
    return (lam * F.cross_entropy(F.linear(X, W, b), y, reduction="none")).mean()


def fresh_params(device: str | torch.device):
    return torch.zeros(C, D, device=device), torch.zeros(C, device=device)


def plain_autograd(data, T: int) -> Callable[[], object]:
    """The usual PyTorch loop: autograd gradient, in-place update."""

    def run():
        W, b = (p.requires_grad_() for p in fresh_params(device_of(data)))
        for _ in range(T):
            gW, gb = torch.autograd.grad(
                weighted_ce((W, b), data["lam"], data["X"], data["y"]), (W, b)
            )
            with torch.no_grad():
                W -= LR * gW
                b -= LR * gb
        return W, b

    return run


def plain_analytic(data, T: int) -> Callable[[], object]:
    """The same training with the softmax-regression gradient written out: no autograd at all."""
    X, lam = data["X"], data["lam"]
    Y = F.one_hot(data["y"], C).to(X.dtype)

    def run():
        W, b = fresh_params(device_of(data))
        for _ in range(T):
            G = (torch.softmax(F.linear(X, W, b), dim=1) - Y) * (lam / N)[:, None]
            W -= LR * (G.T @ X)
            b -= LR * G.sum(0)
        return W, b

    return run


def validation_loss(data) -> Callable:
    def outer(p, hp):
        return F.cross_entropy(F.linear(data["Xv"], *p), data["yv"])

    return outer


# Hyper-cleaning's dynamics: λ are the per-example weights; the batch is (X, y).
CLEANING = gd(lambda p, hp, batch: weighted_ce(p, hp["lam"], *batch), lr=LR)


def ours_reverse(data, T: int, compile: bool = True) -> Callable[[], torch.Tensor]:
    """∂E/∂λ for the per-example weights λ (m = 5000) by our Reverse-HG."""
    outer = validation_loss(data)

    def run():
        hp = {"lam": data["lam"]}
        batch = (data["X"], data["y"])
        s0 = CLEANING.init(fresh_params(device_of(data)), hp)
        return reverse(CLEANING, s0, hp, T, lambda t: batch, outer, compile=compile).grad["lam"]

    return run


def _momentum_dynamics(m: int) -> Dynamics:
    groups = max(m - 2, 1)

    def loss(p, hp, batch):
        W, _ = p
        X, y, lam = batch
        decay = hp.get("decay", torch.full((groups,), 1e-3, device=W.device))
        per_group = (W.reshape(C, groups, D // groups) ** 2).sum((0, 2))
        return weighted_ce(p, lam, X, y) + 0.5 * (decay * per_group).sum()

    return momentum(loss, lr="lr", mu="momentum" if m > 1 else 0.5)


MOMENTUM = {m: _momentum_dynamics(m) for m in (1, 3, 10)}


def forward_problem(data, m: int) -> tuple[Dynamics, dict[str, torch.Tensor], Callable, tuple]:
    """The momentum problem with m scalar hyperparameters: η; then μ; then one weight decay per
    group of input features (m = 3: one group, m = 10: eight groups of 98 features).
    Returns (dynamics, hp, outer, batch); the forward cases time it, the correctness test also
    runs Reverse-HG on it."""
    device = device_of(data)
    hp = {"lr": torch.tensor(LR, device=device)}
    if m > 1:
        hp |= {
            "momentum": torch.tensor(0.5, device=device),
            "decay": torch.full((max(m - 2, 1),), 1e-3, device=device),
        }
    return MOMENTUM[m], hp, validation_loss(data), (data["X"], data["y"], data["lam"])


def ours_forward(data, T: int, m: int, compile: bool = True) -> Callable[[], dict]:
    """Forward-HG on `forward_problem(data, m)`."""
    dyn, hp, outer, batch = forward_problem(data, m)

    def run():
        s0 = dyn.init(fresh_params(device_of(data)), hp)
        return forward(dyn, s0, hp, T, lambda t: batch, outer, compile=compile).grad

    return run


def ours_rtho(data, T: int, m: int, compile: bool = True) -> Callable[[], dict]:
    """RTHO's work on `forward_problem(data, m)`: T steps of s and Z, and every RTHO_DELTA
    steps (and at the last) the hypergradient on the validation set. λ is not moved (the
    hyper-step itself is a few scalar operations), so every round trains the same trajectory."""
    dyn, hp, outer, batch = forward_problem(data, m)

    def run():
        online = ForwardState(dyn, dyn.init(fresh_params(device_of(data)), hp), hp, compile=compile)
        grads = []
        for t in range(1, T + 1):
            online.advance(batch)
            if t % RTHO_DELTA == 0 or t == T:
                grads.append(online.hypergradient(outer).grad)
        return grads

    return run


def _linear_model(device: torch.device) -> torch.nn.Linear:
    net = torch.nn.Linear(D, C, device=device)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
    return net


def peer_torchopt(data, T: int) -> Callable[[], torch.Tensor]:
    """torchopt's MetaSGD: the T steps unrolled into one autograd graph, then one backward."""
    import torchopt

    def run():
        lam = data["lam"].clone().requires_grad_()
        net = _linear_model(device_of(data))
        opt = torchopt.MetaSGD(net, lr=LR)
        for _ in range(T):
            opt.step(weighted_ce((net.weight, net.bias), lam, data["X"], data["y"]))
        outer = F.cross_entropy(net(data["Xv"]), data["yv"])
        return torch.autograd.grad(outer, lam)[0]

    return run


def peer_higher(data, T: int) -> Callable[[], torch.Tensor]:
    """higher's innerloop_ctx with a differentiable SGD, unrolled likewise."""
    import higher

    def run():
        lam = data["lam"].clone().requires_grad_()
        net = _linear_model(device_of(data))
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        with higher.innerloop_ctx(net, opt, copy_initial_weights=True) as (fnet, diffopt):
            for _ in range(T):
                diffopt.step(weighted_ce((fnet.weight, fnet.bias), lam, data["X"], data["y"]))
            outer = F.cross_entropy(fnet(data["Xv"]), data["yv"])
            return torch.autograd.grad(outer, lam)[0]

    return run


def peer_available(name: str) -> str | None:
    """None when the peer library imports, else the reason it is skipped."""
    try:
        __import__(name)
    except ImportError as exc:
        return (
            f"{name} is not installed ({exc}); install the peers extra: pip install -e '.[peers]'"
        )
    return None


def build(name: str, data: dict[str, torch.Tensor], steps: int = STEPS) -> Callable[[], object]:
    """The case `name` doing `steps` training steps (T) on `data`, on the data's device (waiting
    for it before returning, on a GPU)."""
    builders = {
        "plain-autograd": plain_autograd,
        "plain-analytic": plain_analytic,
        "reverse": ours_reverse,
        "forward-m1": lambda d, T: ours_forward(d, T, 1),
        "forward-m3": lambda d, T: ours_forward(d, T, 3),
        "forward-m10": lambda d, T: ours_forward(d, T, 10),
        "rtho-m3": lambda d, T: ours_rtho(d, T, 3),
        "reverse-eager": lambda d, T: ours_reverse(d, T, compile=False),
        "forward-m1-eager": lambda d, T: ours_forward(d, T, 1, compile=False),
        "rtho-m3-eager": lambda d, T: ours_rtho(d, T, 3, compile=False),
        "torchopt": peer_torchopt,
        "higher": peer_higher,
    }
    return synced(builders[name](data, steps), device_of(data))
