"""The NumPy models against an independent PyTorch oracle, in float64.

``bench.torch_reference`` builds each model in PyTorch from the same weights
(the RMC written from its equations, the LSTM as ``torch.nn.LSTM``), and
autograd provides the gradients. Outputs, loss, trace and every parameter
gradient must agree to ``TOLERANCE`` relative. The one-call layer functions
(one attention block, one gate step, one LSTM step) are checked the same way.
Runs only where PyTorch is installed, as with ``pip install -e '.[bench]'``.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.torch_reference import from_numpy_model, loss_of  # noqa: E402
from models.attention import attention_block_backward, attention_block_forward  # noqa: E402
from models.factory import make_model  # noqa: E402
from models.losses import loss_and_gradient  # noqa: E402
from models.lstm import lstm_step_backward, lstm_step_forward  # noqa: E402
from models.rmc import gates_backward, gates_forward  # noqa: E402

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
    name = "attention_mlp.0.W"
    assert relative_error(grads[name], expected_grads[name]) > TOLERANCE


# --- the one-call layer functions ----------------------------------------------


def block_params(model, reference):
    """Return one block's and the MLP's parameters, as NumPy arrays and as PyTorch leaves."""
    names = [name for name in model.params if name.startswith("block0.")]
    block = {name.split(".", 1)[1]: model.params[name] for name in names}
    block_t = {name.split(".", 1)[1]: reference.params[name] for name in names}
    layers = range(model.hyper.attention_mlp_layers)
    mlp = [
        (model.params[f"attention_mlp.{j}.W"], model.params[f"attention_mlp.{j}.b"]) for j in layers
    ]
    mlp_t = [
        (reference.params[f"attention_mlp.{j}.W"], reference.params[f"attention_mlp.{j}.b"])
        for j in layers
    ]
    return block, block_t, mlp, mlp_t


def test_one_call_attention_block_matches_torch():
    model = small_model("rmc", num_blocks=1)
    reference = from_numpy_model(model, torch.float64)
    block, block_t, mlp, mlp_t = block_params(model, reference)
    rng = np.random.default_rng(10)
    z = rng.standard_normal((BATCH, model.hyper.mem_slots + 1, model.mem_size))  # (B, R, F)
    d_out = rng.standard_normal(z.shape)

    out, cache = attention_block_forward(z, block, mlp, model.hyper.num_heads, model.key_size)
    dz, grads, mlp_grads = attention_block_backward(d_out, cache)

    z_t = torch.from_numpy(z).requires_grad_()
    out_t, _ = reference.block_forward(z_t, block_t, mlp_t)
    (out_t * torch.from_numpy(d_out)).sum().backward()
    assert relative_error(out, out_t.detach().numpy()) < TOLERANCE
    assert relative_error(dz, z_t.grad.numpy()) < TOLERANCE
    for name, value in grads.items():
        assert relative_error(value, block_t[name].grad.numpy()) < TOLERANCE, name
    for j, local in enumerate(mlp_grads):
        assert relative_error(local["W"], mlp_t[j][0].grad.numpy()) < TOLERANCE
        assert relative_error(local["b"], mlp_t[j][1].grad.numpy()) < TOLERANCE


@pytest.mark.parametrize("gate_style", ["unit", "memory"])
def test_one_call_gates_match_torch(gate_style):
    model = small_model("rmc", gate_style=gate_style)
    reference = from_numpy_model(model, torch.float64)
    rng = np.random.default_rng(11)
    shape = (BATCH, model.hyper.mem_slots, model.mem_size)  # (B, N, F)
    candidate, memory_prev, d_memory = (rng.standard_normal(shape) for _ in range(3))
    gate_x = rng.standard_normal((BATCH, 2 * model.gate_width))
    weight, bias = model.params["gate_memory.W"], model.params["gate_memory.b"]

    memory, cache = gates_forward(candidate, memory_prev, gate_x, weight, bias)
    d_candidate, d_memory_prev, d_gate_x, grads = gates_backward(d_memory, cache)

    inputs = [torch.from_numpy(a).requires_grad_() for a in (candidate, memory_prev, gate_x)]
    # gate_x here is u @ W_gx + b_gx: the reference adds gate_memory.b inside gate_forward.
    memory_t, _, _ = reference.gate_forward(*inputs)
    (memory_t * torch.from_numpy(d_memory)).sum().backward()
    assert relative_error(memory, memory_t.detach().numpy()) < TOLERANCE
    for value, tensor in zip((d_candidate, d_memory_prev, d_gate_x), inputs, strict=True):
        assert relative_error(value, tensor.grad.numpy()) < TOLERANCE
    assert relative_error(grads["W"], reference.params["gate_memory.W"].grad.numpy()) < TOLERANCE
    assert relative_error(grads["b"], reference.params["gate_memory.b"].grad.numpy()) < TOLERANCE


def test_one_step_lstm_matches_torch():
    model = small_model("lstm")
    reference = from_numpy_model(model, torch.float64)
    units = model.hyper.hidden_size
    rng = np.random.default_rng(12)
    x_t = rng.standard_normal((BATCH, INPUT_SIZE))
    h_prev, c_prev, dh, dc = (rng.standard_normal((BATCH, units)) for _ in range(4))
    weight, bias = model.params["lstm.W"], model.params["lstm.b"]

    h, c, cache = lstm_step_forward(x_t, h_prev, c_prev, weight, bias)
    d_xh, dc_prev, d_weight, d_bias = lstm_step_backward(dh, dc, cache, weight)

    inputs = [torch.from_numpy(a).requires_grad_() for a in (x_t, h_prev, c_prev)]
    _, (h_t, c_t) = reference.lstm(inputs[0][:, None], (inputs[1][None], inputs[2][None]))
    ((h_t[0] * torch.from_numpy(dh)).sum() + (c_t[0] * torch.from_numpy(dc)).sum()).backward()
    assert relative_error(h, h_t[0].detach().numpy()) < TOLERANCE
    assert relative_error(c, c_t[0].detach().numpy()) < TOLERANCE
    assert relative_error(d_xh[:, :INPUT_SIZE], inputs[0].grad.numpy()) < TOLERANCE
    assert relative_error(d_xh[:, INPUT_SIZE:], inputs[1].grad.numpy()) < TOLERANCE
    assert relative_error(dc_prev, inputs[2].grad.numpy()) < TOLERANCE
    expected = np.concatenate(
        [reference.lstm.weight_ih_l0.grad.numpy().T, reference.lstm.weight_hh_l0.grad.numpy().T]
    )  # (D + U, 4U) in the torch gate order [i | f | g | o]
    assert relative_error(d_weight[:, reference.torch_columns], expected) < TOLERANCE
    expected_bias = reference.lstm.bias_ih_l0.grad.numpy()
    assert relative_error(d_bias[reference.torch_columns], expected_bias) < TOLERANCE
