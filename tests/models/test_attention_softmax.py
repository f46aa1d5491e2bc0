"""The attention's softmax without the shift by the largest logit.

A block skips the shift when a bound computed from its qkv layer norm's
gain and bias keeps every logit within MAX_UNSHIFTED_LOGIT in size. The bound
must hold for any input, and both ways must give the same weights.
"""

import numpy as np
import pytest

from models.attention import (
    MAX_UNSHIFTED_LOGIT,
    _attention_step_forward,
    _logit_bound,
    allocate_block_tape,
    init_attention_block,
    prepare_block,
)

SLOTS, BATCH, HEADS, KEY_SIZE, HEAD_SIZE = 4, 6, 2, 3, 5
WIDTH = HEADS * HEAD_SIZE


def random_block(rng, gain_scale, bias_scale):
    block = init_attention_block(rng, WIDTH, HEADS, KEY_SIZE, np.float64)
    block["qkv.W"] = block["qkv.W"] * 5.0
    block["qkv.b"] = 3.0 * rng.standard_normal(block["qkv.b"].shape)
    block["qkv_norm.gain"] = gain_scale * rng.standard_normal(block["qkv_norm.gain"].shape)
    block["qkv_norm.bias"] = bias_scale * rng.standard_normal(block["qkv_norm.bias"].shape)
    return block


def attend(block, z, shift=None):
    """Run the attention of one step on rows z (R B, F); return the tape."""
    weights = prepare_block(block, [], HEADS, KEY_SIZE, (SLOTS, BATCH))
    if shift is not None:
        weights = weights._replace(shift_logits=shift)
    tape = allocate_block_tape(z[None], weights)
    _attention_step_forward(tape, 0, weights)
    return tape


def logits_of(tape):
    """Return every logit q . k of the tape's step 0, q already scaled: (B, H, R, R)."""
    q, k, _ = tape.heads
    return np.matmul(q[0], k[0].swapaxes(-1, -2))


@pytest.mark.parametrize("seed", range(6))
def test_logit_bound_holds_for_any_input(seed):
    rng = np.random.default_rng(seed)
    block = random_block(rng, gain_scale=2.0, bias_scale=1.5)
    bound = _logit_bound(block, HEADS, KEY_SIZE)
    largest = 0.0
    for scale in (0.01, 1.0, 100.0):
        z = scale * rng.standard_normal((SLOTS * BATCH, WIDTH))
        largest = max(largest, np.abs(logits_of(attend(block, z))).max())
    assert largest <= bound
    assert largest > 0.02 * bound  # the bound is not vacuous for these blocks


def test_logit_bound_is_attained():
    """A query row all q and a key row all k, in the same direction, meet the bound."""
    rng = np.random.default_rng(9)
    block = init_attention_block(rng, WIDTH, 1, KEY_SIZE, np.float64)  # one head
    direction = 10.0 * rng.standard_normal(KEY_SIZE)  # large against the norm's epsilon
    direction -= direction.mean()  # a zero-mean row, so the layer norm leaves it centred
    weight = np.zeros((WIDTH, 2 * KEY_SIZE + WIDTH))  # columns [q | k | v] of the one head
    weight[0, :KEY_SIZE] = direction  # input e0 maps to q only
    weight[1, KEY_SIZE : 2 * KEY_SIZE] = direction  # input e1 maps to k only
    block["qkv.W"] = weight
    z = rng.standard_normal((SLOTS * BATCH, WIDTH))
    z[:BATCH] = np.eye(WIDTH)[0]  # slot 0 of every sequence is e0
    z[BATCH : 2 * BATCH] = np.eye(WIDTH)[1]  # slot 1 is e1
    weights = prepare_block(block, [], 1, KEY_SIZE, (SLOTS, BATCH))
    tape = allocate_block_tape(z[None], weights)
    _attention_step_forward(tape, 0, weights)

    bound = _logit_bound(block, 1, KEY_SIZE)
    largest = np.abs(logits_of(tape)).max()  # query slot 0 on key slot 1
    assert largest <= bound
    assert largest >= bound * (1 - 1e-4)


def test_unshifted_softmax_matches_shifted():
    rng = np.random.default_rng(7)
    block = random_block(rng, gain_scale=0.5, bias_scale=0.3)
    assert _logit_bound(block, HEADS, KEY_SIZE) <= MAX_UNSHIFTED_LOGIT
    z = rng.standard_normal((SLOTS * BATCH, WIDTH))
    unshifted, shifted = attend(block, z, shift=False), attend(block, z, shift=True)
    assert not prepare_block(block, [], HEADS, KEY_SIZE, (SLOTS, BATCH)).shift_logits
    np.testing.assert_allclose(unshifted.weights, shifted.weights, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(unshifted.attended, shifted.attended, rtol=1e-12, atol=1e-14)


def test_large_gains_keep_shift():
    rng = np.random.default_rng(8)
    block = random_block(rng, gain_scale=30.0, bias_scale=10.0)
    block = {name: value.astype(np.float32) for name, value in block.items()}
    assert _logit_bound(block, HEADS, KEY_SIZE) > MAX_UNSHIFTED_LOGIT
    weights = prepare_block(block, [], HEADS, KEY_SIZE, (SLOTS, BATCH))
    assert weights.shift_logits
    z = rng.standard_normal((SLOTS * BATCH, WIDTH)).astype(np.float32)
    tape = attend(block, z)
    assert np.abs(logits_of(tape)).max() > 88.0  # exp would overflow float32 unshifted
    assert np.isfinite(tape.weights).all()
    np.testing.assert_allclose(tape.weights.sum(axis=1), 1.0, rtol=1e-5)
