"""Slot, attention and connectivity analysis on hand-made cases with known results."""

import math

import numpy as np
import pytest

from models import analysis
from models.factory import make_model
from models.tasks import make_task

INPUT_SIZE, OUTPUT_SIZE = 5, 2
# A pre-activation of +-40 saturates the sigmoid to exactly 0 or 1 in float64.
SATURATED = 40.0


def small_rmc(**hyper):
    options = {"mem_slots": 3, "head_size": 4, "num_heads": 2, **hyper}
    return make_model(
        "rmc", input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, dtype="float64", **options
    )


def small_lstm(**hyper):
    return make_model(
        "lstm",
        input_size=INPUT_SIZE,
        output_size=OUTPUT_SIZE,
        dtype="float64",
        **{"hidden_size": 6, **hyper},
    )


def random_inputs(batch=3, steps=6, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, steps, INPUT_SIZE))


def freeze_rmc_gates(model):
    """Set the gates to input 0 and forget 1 for every input: the memory never changes."""
    width = model.gate_width
    for name in ("gate_input", "gate_memory"):
        model.params[f"{name}.W"][:] = 0.0
        model.params[f"{name}.b"][:] = 0.0
    model.params["gate_input.b"][:width] = -SATURATED
    model.params["gate_input.b"][width:] = SATURATED


def test_frozen_gates_keep_memory_constant():
    model = small_rmc()
    freeze_rmc_gates(model)
    result = analysis.analyse_batch(model, random_inputs())

    assert np.all(result["memory_change"] == 0.0)
    assert np.all(result["input_gate"] == 0.0)
    assert np.all(result["forget_gate"] == 1.0)
    assert result["input_gate"].shape == (6, 3)


def test_frozen_gates_cut_every_input_off():
    model = small_rmc()
    freeze_rmc_gates(model)
    connectivity = analysis.input_gradient_norms(model, random_inputs())
    assert connectivity.shape == (3, 6)
    assert np.all(connectivity == 0.0)


def test_zero_qkv_weights_give_uniform_attention():
    model = small_rmc(num_blocks=2)
    for block in range(2):
        model.params[f"block{block}.qkv.W"][:] = 0.0
        model.params[f"block{block}.qkv.b"][:] = 0.0
    result = analysis.analyse_batch(model, random_inputs())
    rows = 3 + 1

    assert result["max_entropy"] == pytest.approx(math.log(rows))
    np.testing.assert_allclose(result["entropy"], math.log(rows), rtol=1e-12)
    np.testing.assert_allclose(result["attention_received"], 1.0 / rows, rtol=1e-12)
    np.testing.assert_allclose(result["input_attention"], 1.0 / rows, rtol=1e-12)
    np.testing.assert_allclose(result["slot_usage"], 1.0, rtol=1e-12)
    assert result["entropy"].shape == (6, 2, 2, rows)
    assert result["input_attention"].shape == (6, 2, 2, 3)
    assert result["unused_slots"] == []


def test_slot_nobody_reads_is_unused():
    # N = 2 slots plus the input row; no row other than slot 1 itself ever reads slot 1.
    matrix = np.array(
        [
            [0.5, 0.0, 0.5],  # slot 0 reads itself and the input
            [0.2, 0.6, 0.2],  # slot 1 reads itself most
            [1.0, 0.0, 0.0],  # the input row reads slot 0
        ]
    )
    attention = np.broadcast_to(matrix, (2, 4, 1, 1, 3, 3))  # (B, T, L, H, N+1, N+1)

    usage = analysis.slot_usage(attention)
    # Slot 0 gets (0.2 + 1.0) / 2 from the other rows, 1.8 uniform shares of 1/3.
    np.testing.assert_allclose(usage, [1.8, 0.0])
    assert analysis.unused_slots(usage) == [1]
    np.testing.assert_allclose(
        analysis.attention_received(attention)[0, 0, 0, 0], [1.7 / 3, 0.6 / 3, 0.7 / 3]
    )


def test_entropy_of_one_hot_and_uniform_rows():
    attention = np.array([[[[[[1.0, 0.0], [0.5, 0.5]]]]]])  # (1, 1, 1, 1, 2, 2)
    entropy = analysis.attention_entropy(attention)[0, 0, 0, 0]
    np.testing.assert_allclose(entropy, [0.0, math.log(2)])


def test_object_correlation_of_tracking_slot():
    observed = np.array([[0, 1, 1, 0, 2, 1], [2, 0, 0, 1, 2, 0]])  # (B, T), last is the query
    signal = np.zeros((2, 6, 2))  # (B, T, N)
    signal[..., 0] = observed == 0  # slot 0 fires exactly when object 0 is observed
    signal[..., 1] = 0.3  # slot 1 never changes
    signal[:, -1] = 5.0  # the query step must be left out

    correlation = analysis.object_correlation(signal, observed, num_objects=3)
    assert correlation.shape == (2, 3)
    assert correlation[0, 0] == pytest.approx(1.0)
    assert correlation[0, 1] < 0
    assert correlation[0, 2] < 0
    assert np.all(np.isnan(correlation[1]))


def test_memory_change_is_distance_to_previous_step():
    memory = np.zeros((1, 2, 2, 3))  # (B, T, N, F); the initial memory is eye(2, 3)
    memory[0, 0] = np.eye(2, 3)
    memory[0, 0, 1, 2] = 2.0
    memory[0, 1] = memory[0, 0] * 3.0
    change = analysis.memory_change(memory)[0]
    np.testing.assert_allclose(change[0], [0.0, 2.0])
    np.testing.assert_allclose(change[1], [2.0, 2.0 * math.sqrt(5.0)])


def test_lstm_that_reads_only_the_last_step():
    model = small_lstm()
    units = model.hyper.hidden_size
    model.params["lstm.W"][INPUT_SIZE:] = 0.0  # no recurrent weights
    model.params["lstm.b"][units : 2 * units] = -SATURATED  # forget gate 0: no cell memory
    connectivity = analysis.input_gradient_norms(model, random_inputs())

    assert np.all(connectivity[:, :-1] == 0.0)
    assert np.all(connectivity[:, -1] > 0.0)


def finite_difference_norms(model, x, eps=1e-6):
    """Return the Jacobian norm of the prediction per input step by central differences."""
    norms = np.zeros(x.shape[:2])
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            squared = 0.0
            for d in range(x.shape[2]):
                plus, minus = x.copy(), x.copy()
                plus[b, t, d] += eps
                minus[b, t, d] -= eps
                column = (model.predict(plus)[0][b] - model.predict(minus)[0][b]) / (2 * eps)
                squared += float((column**2).sum())
            norms[b, t] = math.sqrt(squared)
    return norms


@pytest.mark.parametrize("kind", ["rmc", "lstm"])
def test_connectivity_matches_finite_differences(kind):
    model = small_rmc(gate_style="memory") if kind == "rmc" else small_lstm()
    x = random_inputs(batch=2, steps=4, seed=3)
    expected = finite_difference_norms(model, x)
    actual = analysis.input_gradient_norms(model, x)
    assert np.all(expected > 0)
    np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_connectivity_reads_last_step_of_per_step_model():
    model = small_lstm(per_step_targets=True)
    x = random_inputs(batch=2, steps=4)
    single = small_lstm()
    single.params = model.params  # the same weights, read out at the last step only
    np.testing.assert_allclose(
        analysis.input_gradient_norms(model, x), analysis.input_gradient_norms(single, x)
    )


def test_tracking_batch_has_object_correlations():
    task = make_task("tracking", num_objects=3, num_steps=6)
    model = make_model(
        "rmc",
        input_size=task.input_size,
        output_size=task.output_size,
        mem_slots=4,
        head_size=4,
        num_heads=2,
    )
    x, _, info = task.sample_with_info(8, np.random.default_rng(0))
    result = analysis.analyse_batch(model, x, info)

    for key in ("object_attention_correlation", "object_update_correlation"):
        assert result[key].shape == (4, 3)
        assert np.all(np.abs(result[key]) <= 1.0 + 1e-9)
    assert result["connectivity"].shape == (8, 7)
    assert result["memory_change"].shape == (7, 4)


def test_lstm_batch_has_gate_means():
    model = small_lstm()
    result = analysis.analyse_batch(model, random_inputs())
    assert set(result) == {"kind", "connectivity", "input_gate", "forget_gate", "output_gate"}
    for name in ("input_gate", "forget_gate", "output_gate"):
        assert result[name].shape == (6,)
        assert np.all((result[name] > 0) & (result[name] < 1))
