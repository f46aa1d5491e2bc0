"""The buffer pool of a model: arrays and whole structures of arrays reused between passes."""

import numpy as np
import pytest

from models import make_model
from models.readout import ArrayPool


def build_pair(empty):
    """Build a structure of two arrays, 36 bytes in all."""
    return {"a": empty((2, 3), np.float32), "b": empty((3,), np.float32)}


def test_reuse_returns_structure_given_back():
    pool = ArrayPool()
    lease = pool.lease()
    first = lease.reuse("pair", build_pair)
    lease.release()

    second = pool.lease().reuse("pair", build_pair)

    assert second is first


def test_reuse_builds_for_each_open_lease():
    pool = ArrayPool()
    first = pool.lease().reuse("pair", build_pair)

    second = pool.lease().reuse("pair", build_pair)

    assert second is not first
    assert second["a"] is not first["a"]


@pytest.mark.parametrize(
    ("max_bytes", "key"),
    [(2**20, "other pair"), (32, "pair")],
    ids=["other key", "over the limit"],
)
def test_reuse_builds_anew(max_bytes, key):
    """A structure of another key, or one the pool could not keep, is not reused."""
    pool = ArrayPool(max_bytes=max_bytes)
    lease = pool.lease()
    first = lease.reuse("pair", build_pair)
    lease.release()

    second = pool.lease().reuse(key, build_pair)

    assert second is not first


def rmc_and_data():
    model = make_model(
        "rmc", input_size=3, output_size=2, mem_slots=2, head_size=4, num_heads=2, dtype="float64"
    )
    rng = np.random.default_rng(0)
    x_first, x_second = rng.standard_normal((2, 3, 5, 3))
    d_outputs = rng.standard_normal((3, 2))
    return model, x_first, x_second, d_outputs


def assert_same_grads(actual, expected):
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def test_rmc_cache_survives_later_forward():
    model, x_first, x_second, d_outputs = rmc_and_data()
    _, cache, _ = model.forward(x_first)
    expected_dx, expected_grads = model.backward(d_outputs, cache)
    cache.lease.release()

    _, cache, _ = model.forward(x_first)
    model.forward(x_second)  # while the first cache is still held
    dx, grads = model.backward(d_outputs, cache)

    np.testing.assert_array_equal(dx, expected_dx)
    assert_same_grads(grads, expected_grads)


def test_rmc_repeats_loss_and_grads_after_reuse():
    model, x_first, x_second, _ = rmc_and_data()
    targets = np.zeros((3, 2))
    loss, grads = model.loss_and_grads(x_first, targets, "mse")
    model.loss_and_grads(x_second, targets, "mse")

    repeated_loss, repeated_grads = model.loss_and_grads(x_first, targets, "mse")

    assert repeated_loss == loss
    assert_same_grads(repeated_grads, grads)


def test_rmc_reuse_follows_updated_params():
    model, x_first, _, _ = rmc_and_data()
    targets = np.zeros((3, 2))
    _, grads = model.loss_and_grads(x_first, targets, "mse")
    for name, value in model.params.items():
        value -= 0.1 * grads[name]  # in place, as the optimizer updates them
    fresh = type(model)(model.hyper, {name: value.copy() for name, value in model.params.items()})

    loss, grads = model.loss_and_grads(x_first, targets, "mse")
    fresh_loss, fresh_grads = fresh.loss_and_grads(x_first, targets, "mse")

    assert loss == fresh_loss
    assert_same_grads(grads, fresh_grads)
