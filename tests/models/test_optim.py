"""Adam, gradient clipping and learning-rate schedules."""

import copy
import math

import numpy as np
import pytest

from models.optim import Adam, global_norm, scheduled_learning_rate
from models.readout import packed_params


def quadratic_grads(params, curvature, centre):
    """Gradient of 0.5 * sum(curvature * (w - centre)^2)."""
    return {"w": curvature * (params["w"] - centre)}


def test_adam_converges_on_quadratic():
    curvature = np.array([1.0, 10.0, 100.0])
    centre = np.array([1.0, -2.0, 0.5])
    params = {"w": np.zeros(3)}
    optimizer = Adam(params)
    for step in range(2000):
        learning_rate = scheduled_learning_rate(
            step, peak=0.05, schedule="cosine", total_steps=2000
        )
        optimizer.step(params, quadratic_grads(params, curvature, centre), learning_rate)
    assert np.abs(params["w"] - centre).max() < 1e-3


def test_adam_first_step_size():
    # With bias correction the first update is lr * g / (|g| + eps), about lr * sign(g).
    params = {"a": np.array([1.0, 1.0]), "b": np.array([[0.0]])}
    grads = {"a": np.array([3.0, -0.001]), "b": np.array([[-50.0]])}
    Adam(params).step(params, grads, learning_rate=0.1)
    assert params["a"] == pytest.approx([0.9, 1.1], abs=1e-6)
    assert params["b"][0, 0] == pytest.approx(0.1, abs=1e-6)


def test_adam_keeps_parameter_dtype():
    params = {"w": np.ones(4, dtype=np.float32)}
    optimizer = Adam(params)
    optimizer.step(params, {"w": np.full(4, 0.5, dtype=np.float32)}, 1e-3)
    assert params["w"].dtype == np.float32
    assert optimizer.first_moment["w"].dtype == np.float32


def packed_and_loose(rng):
    """Return the same parameters packed into one buffer and as separate arrays."""
    loose = {
        "a": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal(5).astype(np.float32),
        "c": rng.standard_normal((2, 2, 2)).astype(np.float32),
    }
    return packed_params(loose), {key: value.copy() for key, value in loose.items()}


def test_packed_params_share_buffer():
    packed, loose = packed_and_loose(np.random.default_rng(0))
    assert list(packed) == list(loose)
    buffer = packed["a"].base
    assert buffer.shape == (12 + 5 + 8,)
    for key in loose:
        assert packed[key].base is buffer
        np.testing.assert_array_equal(packed[key], loose[key])


def test_adam_packed_matches_loose():
    rng = np.random.default_rng(1)
    packed, loose = packed_and_loose(rng)
    optimizers = Adam(packed), Adam(loose)
    assert optimizers[0]._groups[0].packed is not None
    assert optimizers[1]._groups[0].packed is None
    for _ in range(3):
        grads = {
            key: rng.standard_normal(value.shape).astype(np.float32) for key, value in loose.items()
        }
        optimizers[0].step(packed, grads, 0.01)
        optimizers[1].step(loose, grads, 0.01)
    for key in loose:
        np.testing.assert_array_equal(packed[key], loose[key])


def test_adam_replaced_packed_param():
    """A parameter replaced after the optimizer was built is updated, not its old view."""
    rng = np.random.default_rng(2)
    packed, _ = packed_and_loose(rng)
    optimizer = Adam(packed)
    replaced = packed["b"].copy()
    old_view = packed["b"]
    packed["b"] = replaced
    grads = {key: np.ones_like(value) for key, value in packed.items()}
    optimizer.step(packed, grads, 0.1)
    np.testing.assert_allclose(replaced, old_view - 0.1, rtol=1e-5)
    np.testing.assert_array_equal(old_view, packed_and_loose(np.random.default_rng(2))[0]["b"])


def test_adam_deep_copied_params():
    """A copy of the parameters and the optimizer together owns new memory, which is updated."""
    packed, _ = packed_and_loose(np.random.default_rng(3))
    params, optimizer = copy.deepcopy((packed, Adam(packed)))
    before = {key: value.copy() for key, value in params.items()}
    optimizer.step(params, {key: np.ones_like(value) for key, value in params.items()}, 0.1)
    for key, value in params.items():
        np.testing.assert_allclose(value, before[key] - 0.1, rtol=1e-5)


def test_global_norm_covers_all_arrays():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0, 0.0]]), "c": np.zeros(5, np.float32)}
    assert global_norm(grads) == 5.0


def test_clipping_scales_gradients_to_clip_norm():
    params = {"a": np.zeros(2), "b": np.zeros(1)}
    grads = {"a": np.array([6.0, 0.0]), "b": np.array([8.0])}  # global norm 10
    optimizer = Adam(params, beta1=0.9, clip_norm=2.0)

    norm = optimizer.step(params, grads, learning_rate=1e-3)

    assert norm == pytest.approx(10.0)  # reported before clipping
    # The first moment after one step is (1 - beta1) * clipped gradient.
    assert optimizer.first_moment["a"] == pytest.approx([0.1 * 1.2, 0.0])
    assert optimizer.first_moment["b"] == pytest.approx([0.1 * 1.6])


def test_clipping_leaves_small_gradients_alone():
    params = {"w": np.zeros(2)}
    optimizer = Adam(params, clip_norm=2.0)
    norm = optimizer.step(params, {"w": np.array([0.3, 0.4])}, learning_rate=1e-3)
    assert norm == pytest.approx(0.5)
    assert optimizer.first_moment["w"] == pytest.approx([0.03, 0.04])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradients_leave_parameters_unchanged(bad):
    params = {"w": np.array([1.0, 2.0])}
    optimizer = Adam(params)
    norm = optimizer.step(params, {"w": np.array([bad, 0.0])}, learning_rate=0.1)
    assert not math.isfinite(norm)
    assert params["w"].tolist() == [1.0, 2.0]
    assert optimizer.steps_taken == 0
    assert not optimizer.first_moment["w"].any()


def test_adam_rejects_mismatched_gradient_keys():
    params = {"w": np.zeros(2), "b": np.zeros(1)}
    with pytest.raises(ValueError, match=r"missing \['b'\], extra \['v'\]"):
        Adam(params).step(params, {"w": np.zeros(2), "v": np.zeros(1)}, 1e-3)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"beta1": 1.0}, "beta1 must be in"),
        ({"beta2": -0.1}, "beta2 must be in"),
        ({"eps": 0.0}, "eps must be positive"),
        ({"clip_norm": 0.0}, "clip_norm must be positive or None, got 0.0"),
    ],
)
def test_adam_rejects_invalid_settings(arguments, message):
    with pytest.raises(ValueError, match=message):
        Adam({"w": np.zeros(1)}, **arguments)


def test_constant_schedule_with_warmup():
    def rate(step):
        return scheduled_learning_rate(
            step, peak=1e-3, schedule="constant", total_steps=100, warmup_steps=4
        )

    assert rate(0) == pytest.approx(0.25e-3)
    assert rate(1) == pytest.approx(0.5e-3)
    assert rate(3) == pytest.approx(1e-3)
    assert rate(4) == pytest.approx(1e-3)
    assert rate(99) == pytest.approx(1e-3)


def test_cosine_schedule_values():
    def rate(step, warmup_steps=0):
        return scheduled_learning_rate(
            step, peak=2.0, schedule="cosine", total_steps=101, warmup_steps=warmup_steps
        )

    assert rate(0) == pytest.approx(2.0)
    assert rate(50) == pytest.approx(0.2 + 1.8 * 0.5)  # half-way down to 10% of the peak
    assert rate(100) == pytest.approx(0.2)
    assert rate(25) > rate(26)
    # After a warm-up of 11 steps the decay covers steps 11 to 100.
    assert rate(10, warmup_steps=11) == pytest.approx(2.0)
    assert rate(11, warmup_steps=11) == pytest.approx(2.0)
    assert rate(100, warmup_steps=11) == pytest.approx(0.2)


def test_unknown_schedule_rejected():
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        scheduled_learning_rate(0, peak=1.0, schedule="linear", total_steps=10)
