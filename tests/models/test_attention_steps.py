"""The step functions of the attention block with shared or constant rows at step 0.

A tape whose first slots are the same rows for every sequence at step 0 maps
them once per slot. It must give the same outputs and parameter gradients as
a tape that maps them once per sequence, and a zero input gradient for them.
A tape whose first slots at step 0 are constants gives them a zero input
gradient and changes nothing else.
"""

import numpy as np
import pytest

from models.attention import (
    BLOCK_PARAM_NAMES,
    allocate_block_tape,
    allocate_grad_tape,
    block_param_grads,
    block_step_backward,
    block_step_forward,
    init_attention_block,
    prepare_block,
    write_relu_masks,
)
from models.layers import init_linear

SLOTS, BATCH, WIDTH, HEADS, KEY_SIZE, STEPS = 3, 4, 6, 2, 2, 3
SHARED = 2  # the first SHARED of the SLOTS + 1 rows are shared at step 0


def block_inputs(rng):
    """Return rows z (S, R B, F), slot-major, whose first SHARED slots at step 0 repeat over B."""
    rows = SLOTS + 1
    z = rng.standard_normal((STEPS, rows * BATCH, WIDTH))
    shared = rng.standard_normal((SHARED, 1, WIDTH))
    z[0, : SHARED * BATCH] = np.broadcast_to(shared, (SHARED, BATCH, WIDTH)).reshape(-1, WIDTH)
    return z


def run_block(z, shared_slots, d_out, constant_slots=0, kept_slots=None):
    """Run the block over all steps forward and backward; return outputs, dz and grads."""
    rng = np.random.default_rng(1)
    block = init_attention_block(rng, WIDTH, HEADS, KEY_SIZE, np.float64)
    for name in block:
        block[name] = block[name] + 0.1 * rng.standard_normal(block[name].shape)
    mlp_layers = [init_linear(rng, WIDTH, WIDTH, np.float64) for _ in range(2)]
    weights = prepare_block(
        block, mlp_layers, HEADS, KEY_SIZE, (SLOTS + 1, BATCH), kept_slots=kept_slots
    )
    tape = allocate_block_tape(z, weights)._replace(
        shared_slots=shared_slots, constant_slots=constant_slots
    )
    for t in range(STEPS):
        block_step_forward(tape, t, weights)

    grad_tape = allocate_grad_tape(tape)
    write_relu_masks(tape, grad_tape)
    grad_tape.d_out[...] = d_out[:, : grad_tape.d_out.shape[1]]
    dz = np.empty_like(z)
    for t in reversed(range(STEPS)):
        block_step_backward(tape, grad_tape, t, weights, dz[t])
    grads, mlp_grads = block_param_grads(tape, grad_tape, weights)
    return tape.out.copy(), dz, grads, mlp_grads


def test_shared_rows_match_unshared_tape():
    rng = np.random.default_rng(0)
    z = block_inputs(rng)
    d_out = rng.standard_normal(z.shape)
    out, dz, grads, mlp_grads = run_block(z, 0, d_out)
    shared_out, shared_dz, shared_grads, shared_mlp_grads = run_block(z, SHARED, d_out)

    np.testing.assert_allclose(shared_out, out, rtol=1e-12, atol=1e-12)
    assert shared_grads.keys() == grads.keys()
    for name, value in grads.items():
        np.testing.assert_allclose(shared_grads[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    for layer, shared_layer in zip(mlp_grads, shared_mlp_grads, strict=True):
        for name, value in layer.items():
            np.testing.assert_allclose(shared_layer[name], value, rtol=1e-10, atol=1e-12)

    shared_rows = SHARED * BATCH
    np.testing.assert_array_equal(shared_dz[0, :shared_rows], 0.0)
    np.testing.assert_allclose(shared_dz[0, shared_rows:], dz[0, shared_rows:], rtol=1e-10)
    np.testing.assert_allclose(shared_dz[1:], dz[1:], rtol=1e-10)
    assert np.abs(dz[0, :shared_rows]).max() > 1e-3  # the unshared tape does pass a gradient


@pytest.mark.parametrize(
    ("shared_slots", "kept_slots"), [(0, None), (0, SLOTS), (1, SLOTS), (SHARED, None)]
)
def test_constant_rows_get_zero_gradient(shared_slots, kept_slots):
    """Constant rows get a zero dz alone, with kept slots as in the RMC's last block, or shared."""
    rng = np.random.default_rng(2)
    z = block_inputs(rng)  # its first SHARED slots at step 0 repeat over B, as shared rows must
    d_out = rng.standard_normal(z.shape)
    out, dz, grads, _ = run_block(z, shared_slots, d_out, kept_slots=kept_slots)
    constant_out, constant_dz, constant_grads, _ = run_block(
        z, shared_slots, d_out, constant_slots=SHARED, kept_slots=kept_slots
    )

    np.testing.assert_array_equal(constant_out, out)
    for name, value in grads.items():
        np.testing.assert_array_equal(constant_grads[name], value, err_msg=name)
    constant_rows = SHARED * BATCH
    np.testing.assert_array_equal(constant_dz[0, :constant_rows], 0.0)
    np.testing.assert_allclose(constant_dz[0, constant_rows:], dz[0, constant_rows:], rtol=1e-12)
    np.testing.assert_array_equal(constant_dz[1:], dz[1:])


def test_block_param_names_complete():
    """The RMC collects each block's parameters by these names, so they must be all of them."""
    block = init_attention_block(np.random.default_rng(3), WIDTH, HEADS, KEY_SIZE, np.float64)
    assert tuple(block) == BLOCK_PARAM_NAMES
