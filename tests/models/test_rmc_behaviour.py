"""Behaviour of the Relational Memory Core: semantics, gates, traces and validation."""

import numpy as np
import pytest

from models.factory import make_model
from models.rmc import (
    allocate_gate_tape,
    gates_step_backward,
    gates_step_forward,
    initial_memory,
)

INPUT_SIZE, OUTPUT_SIZE = 3, 2


def small_rmc(dtype="float64", **hyper):
    options = {"mem_slots": 3, "head_size": 4, "num_heads": 2, "key_size": 3, **hyper}
    return make_model("rmc", input_size=INPUT_SIZE, output_size=OUTPUT_SIZE, dtype=dtype, **options)


def random_inputs(batch=4, steps=5, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, steps, INPUT_SIZE))


def layer_norm(rows, gain, bias):
    centred = rows - rows.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-5) * gain + bias


def reference_memory(model, x):
    """Return the memory (B, T, N, F) from a loop-based RMC, one sequence and head at a time."""
    hyper, params = model.hyper, model.params
    slots, heads, head_size = hyper.mem_slots, hyper.num_heads, hyper.head_size
    key_size = hyper.key_size or head_size
    width = heads * head_size
    group = 2 * key_size + head_size
    memories = np.zeros((x.shape[0], x.shape[1], slots, width))
    for b in range(x.shape[0]):
        memory = np.eye(slots, width)
        for t in range(x.shape[1]):
            projected = x[b, t] @ params["input_proj.W"] + params["input_proj.b"]
            rows = np.vstack([memory, projected])
            for block in range(hyper.num_blocks):

                def p(name, block=block):
                    return params[f"block{block}.{name}"]

                qkv = layer_norm(
                    rows @ p("qkv.W") + p("qkv.b"), p("qkv_norm.gain"), p("qkv_norm.bias")
                )
                attended = []
                for h in range(heads):
                    part = qkv[:, h * group : (h + 1) * group]
                    q, k, v = (
                        part[:, :key_size],
                        part[:, key_size : 2 * key_size],
                        part[:, 2 * key_size :],
                    )
                    logits = q @ k.T / np.sqrt(key_size)
                    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
                    attended.append(weights / weights.sum(axis=1, keepdims=True) @ v)
                rows = layer_norm(
                    rows + np.hstack(attended), p("attention_norm.gain"), p("attention_norm.bias")
                )
                hidden = rows
                for j in range(hyper.attention_mlp_layers):
                    # One MLP shared by every block.
                    hidden = (
                        hidden @ params[f"attention_mlp.{j}.W"] + params[f"attention_mlp.{j}.b"]
                    )
                    if j < hyper.attention_mlp_layers - 1:
                        hidden = np.maximum(hidden, 0.0)
                rows = layer_norm(rows + hidden, p("mlp_norm.gain"), p("mlp_norm.bias"))
            candidate = rows[:slots]
            if hyper.gate_style is None:
                memory = candidate
            else:
                pre = (
                    np.tanh(memory) @ params["gate_memory.W"]
                    + params["gate_memory.b"]
                    + projected @ params["gate_input.W"]
                    + params["gate_input.b"]
                )
                half = pre.shape[1] // 2
                input_gate = 1 / (1 + np.exp(-pre[:, :half]))
                forget_gate = 1 / (1 + np.exp(-(pre[:, half:] + 1.0)))
                memory = input_gate * np.tanh(candidate) + forget_gate * memory
            memories[b, t] = memory
    return memories


def jitter(model, seed=5):
    rng = np.random.default_rng(seed)
    for value in model.params.values():
        value += 0.1 * rng.standard_normal(value.shape)


@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_rmc_matches_loop_reference(gate_style):
    model = small_rmc(gate_style=gate_style, num_blocks=2, attention_mlp_layers=3)
    jitter(model)
    x = random_inputs()
    _, trace = model.predict(x, trace=True)
    np.testing.assert_allclose(trace["memory"], reference_memory(model, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("slots", "width"), [(3, 8), (4, 4), (6, 2)])
def test_initial_memory_is_cut_or_padded_identity(slots, width):
    memory = initial_memory(2, slots, width, np.float32)
    assert memory.shape == (2, slots, width)
    for b in range(2):
        for i in range(slots):
            for j in range(width):
                assert memory[b, i, j] == (1.0 if i == j else 0.0)


def test_identity_initialised_slots_diverge():
    model = small_rmc(mem_slots=4, num_heads=1, head_size=8)
    _, trace = model.predict(random_inputs(batch=3, steps=6), trace=True)
    memory = trace["memory"]  # (B, T, N, F)
    for t in range(memory.shape[1]):
        for i in range(4):
            for j in range(i + 1, 4):
                gap = np.abs(memory[:, t, i] - memory[:, t, j]).max(axis=-1)
                assert gap.min() > 1e-3, f"slots {i} and {j} coincide at step {t}"
    # Every slot has moved away from its identity row.
    change = np.abs(memory[:, -1] - initial_memory(3, 4, 8, np.float32)).max(axis=-1)
    assert change.min() > 1e-2


def test_memory_gate_style_has_one_gate_per_slot():
    model = small_rmc(gate_style="memory")
    assert model.params["gate_input.W"].shape == (8, 2)
    assert model.params["gate_memory.W"].shape == (8, 2)
    _, trace = model.predict(random_inputs(), trace=True)
    assert trace["input_gate"].shape == (4, 5, 3, 1)
    assert trace["forget_gate"].shape == (4, 5, 3, 1)


def test_unit_gate_style_has_one_gate_per_unit():
    _, trace = small_rmc(gate_style="unit").predict(random_inputs(), trace=True)
    assert trace["input_gate"].shape == (4, 5, 3, 8)
    assert trace["forget_gate"].shape == (4, 5, 3, 8)


@pytest.mark.parametrize("gate_style", ["unit", "memory"])
def test_closed_gates_keep_memory(gate_style):
    model = small_rmc(gate_style=gate_style)
    half = model.params["gate_input.b"].size // 2
    model.params["gate_input.W"][:] = 0.0
    model.params["gate_memory.W"][:] = 0.0
    model.params["gate_memory.b"][:] = 0.0
    model.params["gate_input.b"][:half] = -1000.0  # input gate sigmoid(-1000) = 0
    model.params["gate_input.b"][half:] = 1000.0  # forget gate sigmoid(1001) = 1

    _, trace = model.predict(random_inputs(), trace=True)
    assert np.all(trace["input_gate"] == 0.0)
    assert np.all(trace["forget_gate"] == 1.0)
    expected = np.broadcast_to(initial_memory(4, 3, 8, np.float64)[:, None], trace["memory"].shape)
    np.testing.assert_array_equal(trace["memory"], expected)


def test_without_gates_memory_is_the_candidate():
    model = small_rmc(gate_style=None)
    assert not any(name.startswith("gate_") for name in model.params)
    _, trace = model.predict(random_inputs(), trace=True)
    assert "input_gate" not in trace
    assert "forget_gate" not in trace
    # Each slot is the output of a layer norm with unit gain and zero bias.
    np.testing.assert_allclose(trace["memory"].mean(axis=-1), 0.0, atol=1e-12)


def test_blocks_share_the_attention_mlp():
    model = small_rmc(num_blocks=2, attention_mlp_layers=3)
    for j in range(3):
        assert model.params[f"attention_mlp.{j}.W"].shape == (8, 8)
    for block in range(2):
        assert model.params[f"block{block}.qkv.W"].shape == (8, 2 * (2 * 3 + 4))
        assert model.params[f"block{block}.mlp_norm.gain"].shape == (8,)
    assert not any(".mlp." in name for name in model.params)


def test_attention_rows_sum_to_one():
    model = small_rmc(num_blocks=2)
    _, trace = model.predict(random_inputs(), trace=True)
    attention = trace["attention"]
    assert np.all(attention >= 0.0)
    np.testing.assert_allclose(attention.sum(axis=-1), 1.0, atol=1e-12)


def test_trace_shapes_match_contract():
    model = small_rmc(num_blocks=2, dtype="float32")
    x = random_inputs(batch=4, steps=5)
    predictions, trace = model.predict(x, trace=True)
    assert predictions.shape == (4, OUTPUT_SIZE)
    assert predictions.dtype == np.float32
    assert set(trace) == {"attention", "input_gate", "forget_gate", "memory"}
    assert trace["attention"].shape == (4, 5, 2, 2, 4, 4)  # (B, T, L, H, N+1, N+1)
    assert trace["memory"].shape == (4, 5, 3, 8)  # (B, T, N, F)
    assert model.predict(x)[1] is None


def test_readout_uses_the_last_memory():
    model = small_rmc(readout_hidden=[6])
    x = random_inputs()
    predictions, trace = model.predict(x, trace=True)
    hidden = np.maximum(
        trace["memory"][:, -1].reshape(4, -1) @ model.params["readout.0.W"]
        + model.params["readout.0.b"],
        0,
    )
    expected = hidden @ model.params["readout.1.W"] + model.params["readout.1.b"]
    np.testing.assert_allclose(predictions, expected, atol=1e-12)


def test_per_step_targets_read_out_every_step():
    model = small_rmc(per_step_targets=True)
    x = random_inputs()
    predictions, _ = model.predict(x)
    assert predictions.shape == (4, 5, OUTPUT_SIZE)
    last_only = small_rmc(per_step_targets=False)
    np.testing.assert_allclose(predictions[:, -1], last_only.predict(x)[0], atol=1e-12)
    _, grads = model.loss_and_grads(x, np.zeros((4, 5, OUTPUT_SIZE)), "mse")
    assert set(grads) == set(model.params)


def test_same_seed_gives_same_parameters():
    first = make_model("rmc", input_size=5, output_size=2, seed=7)
    second = make_model("rmc", input_size=5, output_size=2, seed=7)
    other = make_model("rmc", input_size=5, output_size=2, seed=8)
    assert list(first.params) == list(second.params)
    for name in first.params:
        np.testing.assert_array_equal(first.params[name], second.params[name])
    assert any(not np.array_equal(first.params[n], other.params[n]) for n in first.params)


def test_default_dtype_is_float32_and_float64_is_available():
    x = random_inputs()
    y = np.zeros((4, OUTPUT_SIZE))
    for dtype in ("float32", "float64"):
        model = small_rmc(dtype=dtype)
        loss, grads = model.loss_and_grads(x, y, "mse")
        assert isinstance(loss, float)
        for name, value in model.params.items():
            assert value.dtype == np.dtype(dtype), name
            assert grads[name].dtype == np.dtype(dtype), name
            assert grads[name].shape == value.shape, name
    assert make_model("rmc", input_size=1, output_size=1).params["input_proj.W"].dtype == np.float32


def test_param_count_and_config():
    model = small_rmc(readout_hidden=[6])
    assert model.param_count == sum(value.size for value in model.params.values())
    assert model.config["kind"] == "rmc"
    assert model.config["key_size"] == 3
    assert model.config["readout_hidden"] == [6]
    rebuilt = make_model(**model.config)
    assert rebuilt.config == model.config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mem_slots": 0}, "mem_slots must be an integer from 1 to 64, got 0"),
        ({"mem_slots": 2.0}, "mem_slots must be an integer from 1 to 64, got 2.0"),
        ({"num_heads": True}, "num_heads must be an integer from 1 to 32, got True"),
        ({"key_size": 0}, "key_size must be an integer from 1 to 512, got 0"),
        ({"num_blocks": 9}, "num_blocks must be an integer from 1 to 8, got 9"),
        ({"gate_style": "cell"}, "gate_style must be one of ['unit', 'memory', None], got 'cell'"),
        ({"readout_hidden": [8, 0]}, "readout_hidden entries must be integers from 1 to 1024"),
        ({"readout_hidden": 8}, "readout_hidden must be a list of at most 8 integers, got 8"),
        ({"per_step_targets": 1}, "per_step_targets must be true or false, got 1"),
        ({"head_size": 512, "num_heads": 8}, "head_size * num_heads must be at most 2048"),
        ({"hidden_size": 8}, "unknown hyperparameter 'hidden_size' for model 'rmc'"),
    ],
)
def test_invalid_rmc_hyperparameters_are_rejected(options, message):
    with pytest.raises(ValueError) as error:
        make_model("rmc", input_size=3, output_size=2, **options)
    assert message in str(error.value)


@pytest.mark.parametrize("gate_width", [4, 1])
def test_gates_backward_skips_memory_grad(gate_width):
    """``memory_grad=False`` returns no d_memory_prev and keeps the other gradients."""
    rng = np.random.default_rng(5)
    rows, width, batch = 6, 4, 2  # N B = 6 rows of width F = 4 for B = 2
    memory_prev = rng.standard_normal((1, rows, width))
    tape = allocate_gate_tape(memory_prev, rng.standard_normal((width, 2 * gate_width)), batch)
    memory = np.empty((rows, width))
    half_gate_x = rng.standard_normal((batch, 2 * gate_width))
    gates_step_forward(tape, 0, rng.standard_normal((rows, width)), half_gate_x, memory)
    d_memory = rng.standard_normal((rows, width))

    d_gates, d_candidate = np.empty_like(tape.gates), np.empty((rows, width))
    d_memory_prev = gates_step_backward(tape, 0, d_memory, d_gates, d_candidate)
    skipped_gates, skipped_candidate = np.empty_like(tape.gates), np.empty((rows, width))
    skipped = gates_step_backward(
        tape, 0, d_memory, skipped_gates, skipped_candidate, memory_grad=False
    )

    assert d_memory_prev.shape == (rows, width)
    assert skipped is None
    np.testing.assert_array_equal(skipped_gates, d_gates)
    np.testing.assert_array_equal(skipped_candidate, d_candidate)
