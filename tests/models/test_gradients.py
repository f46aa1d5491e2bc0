"""Backpropagation through time checked against central finite differences in float64.

Every case unrolls T = 4 steps and checks every parameter of the model, up to
``ENTRIES_PER_PARAM`` seeded entries each, plus every entry of the input x.
The finite differences use the fourth-order central stencil
(-f(+2h) + 8 f(+h) - 8 f(-h) + f(-2h)) / 12h, whose truncation error is far
below the tolerance at h = STEP.
"""

import numpy as np
import pytest

from models import rmc
from models.factory import make_model
from models.losses import loss_and_gradient

STEP = 1e-5
TOLERANCE = 1e-6
ENTRIES_PER_PARAM = 16
BATCH, STEPS, INPUT_SIZE, OUTPUT_SIZE = 2, 4, 3, 3

# Relative error |a - b| / max(|a| + |b|, FLOOR). Central differences of a
# float64 loss of order 1 with STEP are accurate to about 1e-10 (rounding of
# the loss divided by the step), so entries whose gradient is below FLOOR are
# held to an absolute error of FLOOR * TOLERANCE = 1e-9 instead. Some entries
# are exactly zero in theory, such as the key part of ``qkv_norm.bias``,
# because softmax ignores a shift shared by every key.
FLOOR = 1e-3


def relative_error(analytic, numeric):
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), FLOOR)


def sample_batch(loss, per_step, rng):
    x = rng.standard_normal((BATCH, STEPS, INPUT_SIZE))
    target_shape = (BATCH, STEPS) if per_step else (BATCH,)
    if loss == "mse":
        return x, rng.standard_normal((*target_shape, OUTPUT_SIZE))
    return x, rng.integers(0, OUTPUT_SIZE, size=target_shape)


def loss_value(model, x, y, loss):
    outputs, _, _ = model.forward(x)
    return loss_and_gradient(loss, outputs, y)[0]


def numeric_gradient(array, indices, evaluate):
    """Central differences of ``evaluate()`` with respect to the given flat entries of array."""
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array), "the perturbed entries must be the model's own"
    numeric = np.empty(len(indices))
    for n, index in enumerate(indices):
        original = flat[index]
        values = []
        for offset in (2, 1, -1, -2):
            flat[index] = original + offset * STEP
            values.append(evaluate())
        flat[index] = original
        numeric[n] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * STEP)
    return numeric


def max_errors(model, x, y, loss):
    """Return {name: max relative error} for every parameter and for "x"."""
    rng = np.random.default_rng(1)
    outputs, cache, _ = model.forward(x)
    _, d_outputs = loss_and_gradient(loss, outputs, y)
    dx, grads = model.backward(d_outputs, cache)
    assert set(grads) == set(model.params)

    errors = {}
    for name, value in model.params.items():
        count = min(value.size, ENTRIES_PER_PARAM)
        indices = rng.choice(value.size, size=count, replace=False)
        numeric = numeric_gradient(value, indices, lambda: loss_value(model, x, y, loss))
        errors[name] = relative_error(grads[name].reshape(-1)[indices], numeric).max()

    indices = np.arange(x.size)
    numeric = numeric_gradient(x, indices, lambda: loss_value(model, x, y, loss))
    errors["x"] = relative_error(dx.reshape(-1), numeric).max()
    return errors


def jitter_params(model, rng):
    """Move every parameter off its initial value.

    Zero biases put ReLU inputs exactly at the kink whenever a row of the layer
    below is all zeros, where finite differences and the subgradient disagree.
    Jitter also moves gains off 1 so that they are checked away from a special
    point.
    """
    for value in model.params.values():
        value += 0.1 * rng.standard_normal(value.shape)


def assert_gradients_match(kind, loss, per_step=False, **hyper):
    model = make_model(
        kind,
        input_size=INPUT_SIZE,
        output_size=OUTPUT_SIZE,
        seed=3,
        dtype="float64",
        per_step_targets=per_step,
        **hyper,
    )
    jitter_params(model, np.random.default_rng(4))
    x, y = sample_batch(loss, per_step, np.random.default_rng(2))
    errors = max_errors(model, x, y, loss)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE, f"{worst}: relative error {errors[worst]:.2e}"
    return errors


RMC_TINY = {"mem_slots": 3, "head_size": 2, "num_heads": 2, "key_size": 3}

RMC_CASES = {
    "unit-gates-one-block": dict(gate_style="unit", num_blocks=1),
    "unit-gates-two-blocks": dict(gate_style="unit", num_blocks=2),
    "memory-gates-one-block": dict(gate_style="memory", num_blocks=1),
    "memory-gates-two-blocks": dict(gate_style="memory", num_blocks=2),
    "no-gates-one-block": dict(gate_style=None, num_blocks=1),
    "no-gates-two-blocks": dict(gate_style=None, num_blocks=2),
    "three-mlp-layers-readout-mlp": dict(attention_mlp_layers=3, readout_hidden=[5, 4]),
    # A width of 4: a layer norm over 2 columns outputs only +-1, which passes
    # almost no gradient to the parameters below it.
    "more-slots-than-width": dict(mem_slots=5, num_heads=1, head_size=4, key_size=2),
}


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("case", sorted(RMC_CASES))
def test_rmc_gradients(case, loss):
    assert_gradients_match("rmc", loss, **{**RMC_TINY, **RMC_CASES[case]})


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_rmc_gradients_per_step_targets(gate_style, loss):
    assert_gradients_match("rmc", loss, per_step=True, gate_style=gate_style, **RMC_TINY)


@pytest.mark.parametrize(
    ("split_input", "share_memory"), [(True, True), (True, False), (False, True)]
)
@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("case", sorted(RMC_CASES))
def test_rmc_gradients_split_maps(case, per_step, split_input, share_memory, monkeypatch):
    """The maps that save FLOPs: the first block's qkv map of the input rows taken
    through x for all steps (where D < F), and at step 0 the maps of the initial
    memory taken once per slot. Both off is the default of the tiny models."""
    monkeypatch.setattr(rmc, "MIN_SPLIT_FLOPS", 0)
    if not split_input:
        monkeypatch.setattr(rmc.RelationalMemory, "_splits_input_qkv", lambda self, batch: False)
    if not share_memory:
        monkeypatch.setattr(
            rmc.RelationalMemory, "_shares_initial_memory", lambda self, batch: False
        )
    hyper = {**RMC_TINY, **RMC_CASES[case]}
    model = make_model("rmc", input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, **hyper)
    width = hyper["num_heads"] * hyper["head_size"]
    splits = split_input and INPUT_SIZE < width
    assert model._splits_input_qkv(BATCH) == splits
    assert model._shares_initial_memory(BATCH) == share_memory
    assert_gradients_match("rmc", "mse", per_step=per_step, **hyper)


@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_one_step_sequences_with_split_maps(gate_style, monkeypatch):
    """A single step, whose shared step 0 leaves no other step for the weight gradients."""
    hyper = {**RMC_TINY, "gate_style": gate_style}
    model = make_model(
        "rmc", input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, dtype="float64", **hyper
    )
    rng = np.random.default_rng(5)
    x = rng.standard_normal((BATCH, 1, INPUT_SIZE))
    y = rng.standard_normal((BATCH, OUTPUT_SIZE))
    monkeypatch.setattr(rmc, "MIN_SPLIT_FLOPS", 0)
    loss, grads = model.loss_and_grads(x, y, "mse")
    monkeypatch.setattr(rmc, "MIN_SPLIT_FLOPS", 10**18)
    whole_loss, whole_grads = model.loss_and_grads(x, y, "mse")

    np.testing.assert_allclose(loss, whole_loss, rtol=1e-12)
    for name, value in whole_grads.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-10, atol=1e-14, err_msg=name)


def test_small_batches_keep_the_whole_maps():
    model = make_model("rmc", input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, **RMC_TINY)
    assert not model._splits_input_qkv(BATCH)
    assert not model._shares_initial_memory(BATCH)
    assert not model._shares_initial_memory(1)


def test_initial_memory_marked_constant():
    """The first block's tape holds the initial memory's slots as constants at step 0."""
    hyper = {**RMC_TINY, "num_blocks": 2}
    model = make_model("rmc", input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, **hyper)
    x, _ = sample_batch("mse", False, np.random.default_rng(4))
    _, cache, _ = model.forward(x)
    tapes = cache.core.blocks
    assert tapes[0].constant_slots == RMC_TINY["mem_slots"]
    assert tapes[1].constant_slots == 0


@pytest.mark.parametrize(("kind", "split"), [("rmc", False), ("rmc", True), ("lstm", False)])
def test_backward_without_input_grad(kind, split, monkeypatch):
    """``input_grad=False`` skips dx and leaves every parameter gradient as it was."""
    if split:
        monkeypatch.setattr(rmc, "MIN_SPLIT_FLOPS", 0)
    hyper = RMC_TINY if kind == "rmc" else {"hidden_size": 4}
    model = make_model(kind, input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, seed=3, **hyper)
    x, y = sample_batch("mse", False, np.random.default_rng(2))
    outputs, cache, _ = model.forward(x)
    _, d_outputs = loss_and_gradient("mse", outputs, y)
    dx, grads = model.backward(d_outputs, cache)
    no_dx, grads_without = model.backward(d_outputs, cache, input_grad=False)
    assert dx.shape == x.shape
    assert no_dx is None
    assert grads_without.keys() == grads.keys()
    for name, value in grads.items():
        np.testing.assert_array_equal(grads_without[name], value, err_msg=name)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("per_step", [False, True])
def test_lstm_gradients(loss, per_step):
    assert_gradients_match("lstm", loss, per_step=per_step, hidden_size=4)


def test_lstm_gradients_readout_mlp():
    assert_gradients_match("lstm", "cross_entropy", hidden_size=4, readout_hidden=[6, 5])


def test_gradient_check_detects_a_wrong_gradient():
    model = make_model(
        "lstm", input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, dtype="float64", hidden_size=4
    )
    x, y = sample_batch("mse", False, np.random.default_rng(2))
    outputs, cache, _ = model.forward(x)
    _, d_outputs = loss_and_gradient("mse", outputs, y)
    _, grads = model.backward(d_outputs, cache)
    indices = np.arange(model.params["lstm.W"].size)
    numeric = numeric_gradient(
        model.params["lstm.W"], indices, lambda: loss_value(model, x, y, "mse")
    )
    analytic = grads["lstm.W"].reshape(-1)
    assert relative_error(analytic, numeric).max() < TOLERANCE
    assert relative_error(analytic * 1.001, numeric).max() > TOLERANCE


@pytest.mark.parametrize(
    ("kind", "hyper", "learning_rate"),
    [
        ("lstm", {"hidden_size": 8}, 0.3),
        ("rmc", {"mem_slots": 3, "head_size": 4, "num_heads": 2}, 0.05),
    ],
)
def test_gradient_descent_lowers_loss(kind, hyper, learning_rate):
    """Plain gradient descent in float32 fits a fixed batch of random targets.

    At a rate of 0.1 the RMC's loss jumps back up at some steps on the way
    down, in float64 too: one float32 run was at 0.58 of its first loss at
    step 200. Where the jumps fall depends on rounding, so the rate here is 0.05.
    """
    model = make_model(kind, input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, **hyper)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5, INPUT_SIZE))
    y = rng.standard_normal((16, OUTPUT_SIZE))
    first, _ = model.loss_and_grads(x, y, "mse")
    for _ in range(300):
        loss, grads = model.loss_and_grads(x, y, "mse")
        for name in model.params:
            model.params[name] -= learning_rate * grads[name]
    assert loss < 0.1 * first
