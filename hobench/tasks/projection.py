"""Exact Euclidean projection onto the capped simplex {z : 0 <= z_i <= 1, sum(z) <= radius}.

Data hyper-cleaning keeps one weight per training example in this set. By the KKT conditions
the projection of x is clip(x - tau, 0, 1) with tau >= 0: tau = 0 when clipping alone is
feasible, otherwise the tau at which g(tau) = sum_i clip(x_i - tau, 0, 1) equals the radius.
g is continuous, non-increasing and piecewise linear with breakpoints at x_i - 1 (x_i leaves
the cap 1) and x_i (x_i reaches 0). A bisection over the sorted breakpoints finds the piece on
which g crosses the radius, and that linear piece is solved exactly. O(n log n), no QP solver,
one host sync (the feasibility test).
"""

import torch


def project_capped_simplex(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Project the 1-D tensor x onto {z : 0 <= z_i <= 1, sum(z) <= radius}.

    Returns a new tensor on x's device and dtype.

    Raises:
        ValueError: radius is negative or x is not 1-D.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if x.dim() != 1:
        raise ValueError(f"x must be a 1-D tensor, got shape {tuple(x.shape)}")
    clipped = x.clamp(0, 1)
    if clipped.sum() <= radius:
        return clipped
    return (x - _threshold(x, radius)).clamp(0, 1)


def _threshold(x: torch.Tensor, radius: float) -> torch.Tensor:
    """The tau > 0 with sum_i clip(x_i - tau, 0, 1) = radius, given that g(0) > radius."""
    top = x - 1  # computed once so breakpoints and the classification below agree exactly
    # tau >= 0, so negative breakpoints are moved to 0 (keeping a static shape).
    breaks = torch.cat([x.new_zeros(1), top.clamp(min=0), x.clamp(min=0)]).sort().values
    # Bisection over the sorted breakpoints keeps g(breaks[lo]) > radius >= g(breaks[hi]); it
    # holds at the ends since g(0) > radius and g(max x) = 0. The iteration count is fixed, so
    # the loop never waits on the device.
    lo = torch.zeros((), dtype=torch.long, device=x.device)
    hi = torch.full_like(lo, len(breaks) - 1)
    for _ in range(len(breaks).bit_length()):
        mid = (lo + hi) // 2
        above = (x - breaks[mid]).clamp(0, 1).sum() > radius
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    left, right = breaks[lo], breaks[hi]
    # Between consecutive breakpoints g is linear: solve |at_one| + sum_free (x_i - tau) = radius.
    at_one = top >= right  # x_i - tau > 1 on the whole piece
    free = (top <= left) & (x >= right)  # 0 < x_i - tau < 1 on the whole piece
    n_free = free.sum()
    tau = (at_one.sum() + (x * free).sum() - radius) / n_free.clamp(min=1)
    # No free coordinate means g is flat on the piece (only possible up to rounding): take right.
    tau = torch.where(n_free > 0, tau, right)
    return tau.clamp(left, right)  # guards against rounding at the ends of the piece
