"""The sum of per-step products that the weight gradients of the recurrent cores take."""

import tracemalloc

import numpy as np
import pytest

from models import layers

STEPS, ROWS, WIDTH, OUT = 4, 6, 3, 5


def reference(a, b):
    return np.einsum("snd,snm->dm", a, b)


@pytest.mark.parametrize("limit", [0, 10**6], ids=["one product", "per step"])
def test_step_products_sum_every_step(monkeypatch, limit):
    monkeypatch.setattr(layers, "SMALL_PRODUCT", limit)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((STEPS, ROWS, WIDTH))
    b = rng.standard_normal((STEPS, ROWS, OUT))
    np.testing.assert_allclose(layers.step_products(a, b), reference(a, b), rtol=1e-12)


@pytest.mark.parametrize("limit", [0, 10**6], ids=["one product", "per step"])
def test_step_products_of_strided_rows(monkeypatch, limit):
    monkeypatch.setattr(layers, "SMALL_PRODUCT", limit)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((STEPS, ROWS + 2, WIDTH))[:, 1:-1]
    b = rng.standard_normal((STEPS, ROWS + 2, OUT))[:, 2:]
    np.testing.assert_allclose(layers.step_products(a, b), reference(a, b), rtol=1e-12)


@pytest.mark.parametrize("steps", [0, 1])
def test_step_products_of_few_steps(steps):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((steps, ROWS + 2, WIDTH))[:, 1:-1]
    b = rng.standard_normal((steps, ROWS, OUT))
    np.testing.assert_allclose(layers.step_products(a, b), reference(a, b), atol=1e-12)


def test_step_products_of_one_row_steps():
    """Steps of one row each take one product: the S products would outgrow the inputs."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((50, 1, 200))
    b = rng.standard_normal((50, 1, 300))
    tracemalloc.start()
    result = layers.step_products(a, b)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_allclose(result, reference(a, b), rtol=1e-12, atol=1e-12)
    assert peak < 4 * result.nbytes  # the 50 products per step would take 50 times its size
