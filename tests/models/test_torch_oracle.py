"""The NumPy models against an independent PyTorch oracle, in float64.

``bench.torch_reference`` builds each model in PyTorch from the same weights
(the RMC written from its equations, the LSTM as ``torch.nn.LSTM``), and
autograd provides the gradients. Outputs, loss, trace and every parameter
gradient must agree to ``TOLERANCE`` relative. Runs only where PyTorch is
installed, as with ``pip install -e '.[bench]'``.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.torch_reference import from_numpy_model, loss_of  # noqa: E402
from models.factory import make_model  # noqa: E402
from models.losses import loss_and_gradient  # noqa: E402

TOLERANCE = 1e-6
# Relative error |a - b| / max(|a| + |b|, FLOOR): entries below FLOOR, such as
# gradients that are zero in theory, are held to an absolute error of 1e-14.
FLOOR = 1e-8
BATCH, STEPS, INPUT_SIZE, OUTPUT_SIZE = 3, 5, 4, 3

RMC_SMALL = {
    "mem_slots": 3,
    "head_size": 4,
    "num_heads": 2,
    "key_size": 3,
    "num_blocks": 2,
    "attention_mlp_layers": 2,
    "readout_hidden": [5],
}
LSTM_SMALL = {"hidden_size": 6, "readout_hidden": [5]}


def relative_error(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    return float(
        np.max(np.abs(actual - expected) / np.maximum(np.abs(actual) + np.abs(expected), FLOOR))
    )


def small_model(kind, per_step=False, **hyper):
    """Return a float64 model whose parameters are jittered off their initial values.

    Jitter moves layer-norm gains off 1 and biases off 0, so that no ReLU input
    sits exactly at the kink and no term of the gradients vanishes by symmetry.
    """
    defaults = RMC_SMALL if kind == "rmc" else LSTM_SMALL
    model = make_model(
        kind,
        input_size=INPUT_SIZE,
        output_size=OUTPUT_SIZE,
        seed=7,
        dtype="float64",
        per_step_targets=per_step,
        **{**defaults, **hyper},
    )
    rng = np.random.default_rng(8)
    for value in model.params.values():
        value += 0.1 * rng.standard_normal(value.shape)
    return model


def sample_batch(loss, per_step=False):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((BATCH, STEPS, INPUT_SIZE))
    target_shape = (BATCH, STEPS) if per_step else (BATCH,)
    if loss == "mse":
        return x, rng.standard_normal((*target_shape, OUTPUT_SIZE))
    return x, rng.integers(0, OUTPUT_SIZE, size=target_shape)


def numpy_results(model, x, y, loss):
    outputs, cache, _ = model.forward(x)
    value, d_outputs = loss_and_gradient(loss, outputs, y)
    _, grads = model.backward(d_outputs, cache)
    return outputs, value, grads


def torch_results(model, x, y, loss):
    reference = from_numpy_model(model, torch.float64)
    outputs, _ = reference.forward(torch.from_numpy(x))
    value = loss_of(outputs, torch.from_numpy(y), loss)
    value.backward()
    return outputs.detach().numpy(), value.item(), reference.numpy_grads()


def assert_model_matches_torch(model, loss, per_step=False):
    x, y = sample_batch(loss, per_step)
    outputs, value, grads = numpy_results(model, x, y, loss)
    expected_outputs, expected_value, expected_grads = torch_results(model, x, y, loss)

    assert relative_error(outputs, expected_outputs) < TOLERANCE
    assert relative_error(value, expected_value) < TOLERANCE
    assert set(grads) == set(expected_grads)
    errors = {name: relative_error(grads[name], expected_grads[name]) for name in grads}
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE, f"{worst}: relative error {errors[worst]:.2e}"


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_rmc_matches_torch(gate_style, loss):
    assert_model_matches_torch(small_model("rmc", gate_style=gate_style), loss)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_lstm_matches_torch(loss):
    assert_model_matches_torch(small_model("lstm"), loss)


@pytest.mark.parametrize("kind", ["rmc", "lstm"])
def test_per_step_targets_match_torch(kind):
    assert_model_matches_torch(small_model(kind, per_step=True), "cross_entropy", per_step=True)


def test_one_block_rmc_matches_torch():
    model = small_model("rmc", num_blocks=1, attention_mlp_layers=3, readout_hidden=[])
    assert_model_matches_torch(model, "mse")


@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_rmc_trace_matches_torch(gate_style):
    model = small_model("rmc", gate_style=gate_style)
    x, _ = sample_batch("mse")
    _, trace = model.predict(x, trace=True)
    with torch.no_grad():
        _, expected = from_numpy_model(model, torch.float64).forward(
            torch.from_numpy(x), trace=True
        )
    assert set(trace) == set(expected)
    for name, value in trace.items():
        assert value.shape == tuple(expected[name].shape), name
        assert relative_error(value, expected[name].numpy()) < TOLERANCE, name


def test_oracle_detects_a_small_weight_change():
    """The comparison is sensitive enough to see a 1e-4 change in one weight of block 1."""
    model = small_model("rmc")
    x, y = sample_batch("mse")
    expected_outputs, _, expected_grads = torch_results(model, x, y, "mse")
    model.params["block1.qkv.W"][0, 0] += 1e-4
    outputs, _, grads = numpy_results(model, x, y, "mse")
    assert relative_error(outputs, expected_outputs) > TOLERANCE
    assert relative_error(grads["attention_mlp.0.W"], expected_grads["attention_mlp.0.W"]) > TOLERANCE
