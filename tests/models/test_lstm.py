"""Behaviour of the LSTM baseline, the losses and model-kind validation."""

import numpy as np
import pytest

from models.factory import make_model
from models.losses import accuracy, mse, softmax_cross_entropy

INPUT_SIZE, OUTPUT_SIZE, UNITS = 3, 2, 5


def small_lstm(**hyper):
    return make_model(
        "lstm",
        input_size=INPUT_SIZE,
        output_size=OUTPUT_SIZE,
        dtype="float64",
        hidden_size=UNITS,
        **hyper,
    )


def random_inputs(batch=4, steps=6, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, steps, INPUT_SIZE))


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-values))


def reference_lstm(params, x):
    """Return (hidden, cell), each (B, T, U), from separate per-gate weight slices."""
    weight, bias = params["lstm.W"], params["lstm.b"]
    w_x, w_h = weight[:INPUT_SIZE], weight[INPUT_SIZE:]
    gate = {name: slice(k * UNITS, (k + 1) * UNITS) for k, name in enumerate("ifog")}
    batch, steps, _ = x.shape
    h, c = np.zeros((batch, UNITS)), np.zeros((batch, UNITS))
    hidden, cell = np.zeros((batch, steps, UNITS)), np.zeros((batch, steps, UNITS))
    for t in range(steps):

        def pre(name, t=t, h=h):
            return x[:, t] @ w_x[:, gate[name]] + h @ w_h[:, gate[name]] + bias[gate[name]]

        c = sigmoid(pre("f")) * c + sigmoid(pre("i")) * np.tanh(pre("g"))
        h = sigmoid(pre("o")) * np.tanh(c)
        hidden[:, t], cell[:, t] = h, c
    return hidden, cell


def test_forget_gate_bias_starts_at_one():
    bias = small_lstm().params["lstm.b"]
    np.testing.assert_array_equal(bias[UNITS : 2 * UNITS], 1.0)
    np.testing.assert_array_equal(bias[:UNITS], 0.0)
    np.testing.assert_array_equal(bias[2 * UNITS :], 0.0)


def test_lstm_matches_per_gate_reference():
    model = small_lstm()
    model.params["lstm.b"] += np.random.default_rng(1).standard_normal(4 * UNITS)
    x = random_inputs()
    predictions, trace = model.predict(x, trace=True)
    hidden, cell = reference_lstm(model.params, x)
    np.testing.assert_allclose(trace["hidden"], hidden, atol=1e-12)
    np.testing.assert_allclose(trace["cell"], cell, atol=1e-12)
    expected = hidden[:, -1] @ model.params["readout.0.W"] + model.params["readout.0.b"]
    np.testing.assert_allclose(predictions, expected, atol=1e-12)


def test_lstm_trace_shapes_and_relations():
    predictions, trace = small_lstm().predict(random_inputs(), trace=True)
    assert predictions.shape == (4, OUTPUT_SIZE)
    names = {"input_gate", "forget_gate", "output_gate", "candidate", "cell", "hidden"}
    assert set(trace) == names
    for name in names:
        assert trace[name].shape == (4, 6, UNITS), name
    np.testing.assert_allclose(trace["hidden"], trace["output_gate"] * np.tanh(trace["cell"]))
    for name in ("input_gate", "forget_gate", "output_gate"):
        assert np.all((trace[name] > 0) & (trace[name] < 1)), name


def test_lstm_per_step_targets():
    model = small_lstm(per_step_targets=True)
    x = random_inputs()
    predictions, _ = model.predict(x)
    assert predictions.shape == (4, 6, OUTPUT_SIZE)
    np.testing.assert_allclose(predictions[:, -1], small_lstm().predict(x)[0], atol=1e-12)


def test_same_seed_gives_same_lstm():
    first = make_model("lstm", input_size=4, output_size=3, seed=11)
    second = make_model("lstm", input_size=4, output_size=3, seed=11)
    for name in first.params:
        np.testing.assert_array_equal(first.params[name], second.params[name])
    assert first.params["lstm.W"].dtype == np.float32


def test_input_of_the_wrong_shape_is_rejected():
    model = small_lstm()
    with pytest.raises(
        ValueError, match=r"x must have shape \(batch, steps >= 1, 3\), got \(4, 6\)"
    ):
        model.predict(np.zeros((4, 6)))
    with pytest.raises(ValueError, match=r"got \(4, 6, 2\)"):
        model.predict(np.zeros((4, 6, 2)))


def test_mse_value_and_gradient():
    predictions = np.array([[1.0, 2.0], [3.0, 5.0]])
    targets = np.array([[1.0, 0.0], [2.0, 5.0]])
    value, grad = mse(predictions, targets)
    assert value == pytest.approx((0 + 4 + 1 + 0) / 4)
    np.testing.assert_allclose(grad, 2 * (predictions - targets) / 4)


def test_mse_large_float32_accuracy():
    rng = np.random.default_rng(0)
    predictions = rng.standard_normal((3_000_000, 1)).astype(np.float32) + 1.0
    targets = np.zeros_like(predictions)
    value, _ = mse(predictions, targets)
    expected = float(np.mean(predictions.astype(np.float64) ** 2))
    assert value == pytest.approx(expected, rel=2e-6)


def test_cross_entropy_value_gradient_and_accuracy():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
    labels = np.array([0, 1])
    value, grad = softmax_cross_entropy(logits, labels)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert value == pytest.approx(-(np.log(probs[0, 0]) + np.log(probs[1, 1])) / 2)
    np.testing.assert_allclose(grad, (probs - np.eye(3)[labels]) / 2)
    assert accuracy(logits, labels) == 0.5


def test_cross_entropy_is_stable_for_large_logits():
    value, grad = softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert value == pytest.approx(2000.0)
    assert np.all(np.isfinite(grad))


def test_losses_reject_mismatched_targets():
    with pytest.raises(ValueError, match="mse targets must have the predictions' shape"):
        mse(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must be integers"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="loss must be one of"):
        small_lstm().loss_and_grads(random_inputs(), np.zeros((4, 2)), "hinge")


@pytest.mark.parametrize(
    ("kind", "arguments", "message"),
    [
        ("gru", {}, "kind must be one of ['lstm', 'rmc'], got 'gru'"),
        ("lstm", {"hidden_size": 0}, "hidden_size must be an integer from 1 to 2048, got 0"),
        ("lstm", {"input_size": 0}, "input_size must be an integer from 1 to 4096, got 0"),
        ("lstm", {"output_size": "2"}, "output_size must be an integer from 1 to 4096, got '2'"),
        ("lstm", {"seed": -1}, "seed must be a non-negative integer, got -1"),
        (
            "lstm",
            {"dtype": "float16"},
            "dtype must be one of ['float32', 'float64'], got 'float16'",
        ),
        ("lstm", {"mem_slots": 4}, "unknown hyperparameter 'mem_slots' for model 'lstm'"),
    ],
)
def test_invalid_model_arguments_are_rejected(kind, arguments, message):
    options = {"input_size": 3, "output_size": 2, **arguments}
    with pytest.raises(ValueError) as error:
        make_model(kind, **options)
    assert message in str(error.value)
