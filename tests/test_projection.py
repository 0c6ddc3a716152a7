"""The capped-simplex projection against a brute-force solution of its KKT system."""

import itertools

import numpy as np
import pytest
import torch

from hobench.tasks.projection import project_capped_simplex


def brute_force(x: np.ndarray, radius: float) -> np.ndarray:
    """Projection by enumeration: every split of the coordinates into at-0, at-1 and free.

    For each split the free coordinates are either x_i (sum constraint inactive) or x_i - tau
    (active, tau fixed by sum = radius). The optimum is one of these candidates, so the
    feasible candidate nearest to x is the projection.
    """
    best, best_dist = None, np.inf
    for labels in itertools.product((0, 1, 2), repeat=len(x)):
        state = np.array(labels)
        free = state == 2
        base = np.where(state == 1, 1.0, 0.0)
        candidates = [np.where(free, x, base)]
        if free.any():
            tau = (base.sum() + x[free].sum() - radius) / free.sum()
            candidates.append(np.where(free, x - tau, base))
        for z in candidates:
            feasible = (z >= -1e-12).all() and (z <= 1 + 1e-12).all() and z.sum() <= radius + 1e-9
            dist = np.sum((z - x) ** 2)
            if feasible and dist < best_dist:
                best, best_dist = z, dist
    return best


def assert_kkt(x: np.ndarray, z: np.ndarray, radius: float, atol: float) -> None:
    """z = clip(x - tau, 0, 1) with tau >= 0 and tau * (sum z - radius) = 0.

    atol bounds the error of one coordinate, so a sum of n may be off by atol * n.
    """
    sum_atol = atol * len(z)
    assert (z >= 0).all() and (z <= 1).all()
    assert z.sum() <= radius + sum_atol
    free = (z > atol) & (z < 1 - atol)
    if free.any():
        tau = np.mean(x[free] - z[free])
        assert tau >= -atol
        np.testing.assert_allclose(z, np.clip(x - tau, 0, 1), atol=atol)
        if tau > atol:
            assert z.sum() == pytest.approx(radius, abs=sum_atol)


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_on_small_vectors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    x = rng.normal(0.5, 0.8, size=n)
    radius = float(rng.uniform(0, n + 0.5))
    if seed % 2:  # quarter steps: coinciding breakpoints, and radii that land on them
        x, radius = np.round(4 * x) / 4, np.round(4 * radius) / 4
    z = project_capped_simplex(torch.tensor(x, dtype=torch.float64), radius).numpy()
    np.testing.assert_allclose(z, brute_force(x, radius), atol=1e-10)
    assert_kkt(x, z, radius, atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_no_random_feasible_point_is_closer(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, radius = 8, 2.5
    x = rng.normal(0.5, 1.0, size=n)
    z = project_capped_simplex(torch.tensor(x), radius).numpy()
    points = rng.uniform(0, 1, size=(20000, n))
    sums = points.sum(axis=1, keepdims=True)
    points = np.where(sums > radius, points * radius / sums, points)  # scaled into the set
    assert np.sum((z - x) ** 2) <= np.sum((points - x) ** 2, axis=1).min() + 1e-12


def test_large_radius_reduces_to_clipping() -> None:
    x = torch.tensor([-0.5, 0.3, 0.9, 1.7, 2.0], dtype=torch.float64)
    for radius in (5.0, 100.0):
        torch.testing.assert_close(project_capped_simplex(x, radius), x.clamp(0, 1))


def test_radius_zero_gives_zero() -> None:
    x = torch.tensor([0.4, 1.3, -2.0, 7.0])
    assert torch.equal(project_capped_simplex(x, 0.0), torch.zeros(4))


def test_already_feasible_point_is_unchanged() -> None:
    x = torch.tensor([0.1, 0.2, 0.0, 1.0, 0.3], dtype=torch.float64)
    assert torch.equal(project_capped_simplex(x, 2.0), x)


def test_sum_constraint_active_on_the_boundary() -> None:
    x = torch.tensor([0.5, 0.8, 1.5, -0.2], dtype=torch.float64)
    z = project_capped_simplex(x, 1.0)
    torch.testing.assert_close(z, torch.tensor([0.0, 0.15, 0.85, 0.0], dtype=torch.float64))


def test_ties_are_treated_alike() -> None:
    x = torch.tensor([0.7, 0.7, 0.7, 0.7, 1.0, 1.0, 0.0], dtype=torch.float64)
    z = project_capped_simplex(x, 2.0)
    np.testing.assert_allclose(z.numpy(), brute_force(x.numpy(), 2.0), atol=1e-12)
    assert z.sum().item() == pytest.approx(2.0)
    assert len(set(z[:4].tolist())) == 1 and z[4] == z[5]


def test_integer_valued_breakpoints() -> None:
    # Breakpoints coincide and the radius lands exactly on one: the flat-piece corner case.
    x = torch.tensor([2.0, 2.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    for radius in (0.5, 1.0, 2.0, 3.0):
        z = project_capped_simplex(x, radius)
        np.testing.assert_allclose(z.numpy(), brute_force(x.numpy(), radius), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_vector_keeps_dtype_and_hits_the_radius(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(5000, generator=gen, dtype=torch.float64) * 0.6 + 0.8).to(dtype)
    assert x.clamp(0, 1).sum() > 2500  # so the sum constraint is active for every radius
    for radius in (1000.0, 1500.0, 2000.0, 2500.0):
        z = project_capped_simplex(x, radius)
        assert z.dtype == dtype and z.shape == x.shape
        assert z.min() >= 0 and z.max() <= 1
        eps = torch.finfo(dtype).eps
        assert z.double().sum().item() == pytest.approx(radius, rel=10 * eps)
        assert_kkt(x.double().numpy(), z.double().numpy(), radius, atol=10 * eps)


def test_far_from_the_box() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5000, generator=gen, dtype=torch.float64) * 50 + 100
    z = project_capped_simplex(x, 1000.0)
    assert z.sum().item() == pytest.approx(1000.0, rel=1e-12)
    assert_kkt(x.numpy(), z.numpy(), 1000.0, atol=1e-12)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="radius"):
        project_capped_simplex(torch.zeros(3), -1.0)
    with pytest.raises(ValueError, match="1-D"):
        project_capped_simplex(torch.zeros(2, 2), 1.0)
