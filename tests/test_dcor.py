"""Distance correlation: agrees with the ``dcor`` package and is safe to differentiate."""

from __future__ import annotations

import dcor
import numpy as np
import pytest
import torch

from shortcutlab.estimators.dcor import distance_correlation


def _pair(n: int, p: int, q: int, dependent: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = rng.normal(size=(n, q))
    if dependent:
        y = y + np.tanh(x[:, :1]) * 2.0 + x[:, :1] ** 2
    return x, y


@pytest.mark.parametrize("p,q", [(1, 1), (5, 5), (1, 5), (5, 1)])
@pytest.mark.parametrize("dependent", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_dcor_package(p: int, q: int, dependent: bool, seed: int) -> None:
    x, y = _pair(60, p, q, dependent, seed)
    ours = distance_correlation(torch.from_numpy(x), torch.from_numpy(y)).item()
    ref = dcor.distance_correlation(x, y)
    assert abs(ours - ref) < 1e-4
    if dependent:
        assert ours > 0.3


def test_float32_input_matches_and_keeps_dtype() -> None:
    x, y = _pair(50, 5, 5, True, 3)
    out = distance_correlation(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert out.dtype == torch.float32
    assert abs(out.item() - dcor.distance_correlation(x, y)) < 1e-4


def test_gradients_finite_with_duplicates_and_constants() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    x[1] = x[0]  # a zero off-diagonal distance
    x.requires_grad_(True)
    y = (x[:, :2] * 2).detach().requires_grad_(True)
    d = distance_correlation(x, y)
    d.backward()
    assert torch.isfinite(d)
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert x.grad.abs().sum() > 0

    const = torch.ones(32, 3, requires_grad=True)
    z = torch.randn(32, 3, requires_grad=True)
    d0 = distance_correlation(const, z)
    d0.backward()
    assert d0.item() == 0.0
    assert torch.isfinite(const.grad).all() and torch.isfinite(z.grad).all()


def test_identical_inputs_give_one() -> None:
    x = torch.randn(40, 3, dtype=torch.float64)
    assert abs(distance_correlation(x, x).item() - 1.0) < 1e-9
