"""The attention block of the Relational Memory Core.

Shapes: S steps of a sequence, B batch, R rows attended over (memory slots
plus the input row, N + 1), H heads, K key size per head, V value size per
head (``head_size``), F = H * V the row width, Q = H * (2K + V) the qkv width.

One block maps rows Z of shape (B, R, F) to rows of the same shape:

    qkv = layer_norm(Z @ W_qkv + b_qkv)            over the whole H * (2K + V) row
    per head h, with qkv columns grouped by head, each group [q | k | v]:
        A_h = softmax(q_h k_h^T / sqrt(K))         over the R keys, (B, R, R)
        out_h = A_h v_h                            (B, R, V)
    attended = [out_1 | ... | out_H]               (B, R, F), no output projection
    Z1 = layer_norm(Z + attended)
    Z2 = layer_norm(Z1 + mlp(Z1))                  ReLU between MLP layers, none after the last

Block parameters use local names: ``qkv.W`` (F, Q), ``qkv.b``,
``qkv_norm.gain``/``.bias`` (Q,), ``attention_norm.*`` and ``mlp_norm.*``
(F,). The row-wise MLP, a list of (W (F, F), b (F,)) layers, is passed in
separately because the RMC shares it between its blocks. Sonnet 1
``RelationalMemory._attend_over_memory`` does the same: it builds the MLP once
before the loop over blocks, and a new qkv map and new layer norms per block.

Implementation. The RMC applies a block at every step of a sequence. The
activations a block saves for its backward pass therefore live on a
``BlockTape``: arrays with a leading step axis S, allocated once per
sequence and written in place step by step. The backward pass through time computes only gradients
with respect to activations, into a ``BlockGradTape`` of the same layout, and
``block_param_grads`` then takes every parameter gradient of the block with
one matmul or one sum over all S steps at once. ``attention_block_forward``
and ``attention_block_backward`` are the same computation for one call (S = 1).

Layout choices that make the small per-step arrays cheap in NumPy:

- A step's rows are one matrix of R * B rows, slot-major: row r * B + b is
  row r of sequence b. Matmuls and layer norms take it without a reshape,
  and the N memory rows of all sequences are its first N * B rows.
- Attention weights are stored keys first, (S_keys = R, B, H, R_queries), so
  the softmax over the keys runs along axis 0 as a few whole-array operations
  instead of reductions over rows of length R.
- The key scale ``K ** -0.5`` is folded into the gain and bias of the qkv
  layer norm's q columns, so the tape holds q already scaled.
- The tape holds each layer norm's inverse standard deviation repeated over
  the row, (S, rows, width), not as a column (S, rows, 1). The forward and
  the backward pass each multiply by it, and NumPy multiplies two arrays of
  one shape about twice as fast as it broadcasts a column over the rows: a
  (128, 32) product took 0.87 microseconds against 1.99 broadcast, and the
  copy that repeats the column 0.99 (``timeit``).
- The tapes make their views (the heads of qkv, the attention weights keys
  first and queries first) and one-step work arrays once per sequence, and
  the steps only index them. Built at every step, they took about 2% of a
  ``tracking`` training step of bench/compare.py.
"""

import functools
from typing import NamedTuple

import numpy as np

from models.layers import (
    constant_array,
    dot,
    init_layer_norm,
    init_linear,
    layer_norm_backward_into,
    layer_norm_into,
    norm_constants,
    repeated_rows_dot,
    repeated_rows_grad,
    row_mean,
    step_products,
    sum_rows,
)

BLOCK_PARAM_NAMES = (
    "qkv.W",
    "qkv.b",
    "qkv_norm.gain",
    "qkv_norm.bias",
    "attention_norm.gain",
    "attention_norm.bias",
    "mlp_norm.gain",
    "mlp_norm.bias",
)


def init_attention_block(rng, mem_size, num_heads, key_size, dtype):
    """Return the parameters of one block except the shared MLP, keyed by local name.

    The names are those of ``BLOCK_PARAM_NAMES``.
    """
    head_size = mem_size // num_heads
    qkv_width = num_heads * (2 * key_size + head_size)
    block = {}
    block["qkv.W"], block["qkv.b"] = init_linear(rng, mem_size, qkv_width, dtype)
    block["qkv_norm.gain"], block["qkv_norm.bias"] = init_layer_norm(qkv_width, dtype)
    block["attention_norm.gain"], block["attention_norm.bias"] = init_layer_norm(mem_size, dtype)
    block["mlp_norm.gain"], block["mlp_norm.bias"] = init_layer_norm(mem_size, dtype)
    return block


class BlockWeights(NamedTuple):
    """One block's parameters as the step functions use them, built by ``prepare_block``.

    Vectors that every step adds or multiplies row by row are stored tiled to
    the full (R B, width) shape of a step's rows. NumPy runs an operation on
    two arrays of the same shape as one vectorised loop, but a broadcast over
    rows as one short loop per row, 1.5 to 2.5 times slower at these sizes.
    """

    num_heads: int
    key_size: int
    row_shape: tuple  # (R, B)
    kept_slots: int  # R', the leading slots whose rows the block computes after the attention
    params: dict  # the block's parameters by local name
    qkv_weight: np.ndarray  # (F, Q) qkv.W minus its row means, so each output row has mean 0
    qkv_weight_t: np.ndarray  # (Q, F) the transpose of qkv_weight, contiguous for the backward
    column_scale: np.ndarray  # (Q,) K ** -0.5 in the q columns, 1 in the k and v columns
    mlp_layers: list  # (W (F, F), b (F,)) pairs of the shared MLP
    mlp_weights_t: list  # the transposes of the MLP weights, contiguous
    hidden_layers: list  # (W, b tiled to (R' B, F)) for the MLP's layers but the last
    last_layer: tuple  # (W, b tiled to (R' B, F)) of the MLP's last layer
    tiled: dict  # name -> (R B, Q) or (R' B, F): the row vectors below, tiled
    qkv_norm_constants: tuple  # norm_constants of width Q, for the qkv layer norm
    row_norm_constants: tuple  # norm_constants of width F, for the other two
    shift_logits: bool  # False when no logit can exceed MAX_UNSHIFTED_LOGIT in size

    # Tiled vectors of shape (R B, Q) are "qkv.b" minus its mean, and "qkv_norm.gain"
    # and "qkv_norm.bias" with the q columns scaled by K ** -0.5. Those of shape
    # (R' B, F), over the kept rows only, are "attention_norm.*" and "mlp_norm.*".


# Without the shift by the largest logit, the softmax's exp stays within float32's
# range while no logit exceeds this in size: exp(60) is about 1e26 and exp(-60) about
# 1e-26, against float32's largest finite value, 3.4e38, and smallest normal, 1.2e-38.
MAX_UNSHIFTED_LOGIT = 60.0


def prepare_block(
    block, mlp_layers, num_heads, key_size, row_shape, empty=np.empty, kept_slots=None
):
    """Return the ``BlockWeights`` of a block and the shared MLP for steps of rows (R, B).

    The qkv layer norm subtracts the row mean of ``z @ W + b``, which is
    ``z @ mean_cols(W) + mean(b)``. Taking those means out of W and b once per
    sequence gives outputs of zero mean directly, so no step subtracts them.
    ``empty(shape, dtype)`` allocates the tiles, ``np.empty`` or ``PoolLease.empty``.
    ``kept_slots`` (R by default) is the number of leading slots whose output
    is used; after the attention, the block computes only their rows. The
    RMC's last block keeps the N memory slots, because the input row's output
    is dropped.
    """
    weight, bias = block["qkv.W"], block["qkv.b"]
    qkv_weight = weight - row_mean(weight)  # (F, Q)
    mem_size, qkv_width = weight.shape
    column_scale = _column_scale(num_heads, qkv_width // num_heads, key_size, weight.dtype)
    kept_slots = row_shape[0] if kept_slots is None else kept_slots

    def tile(vectors, slots):
        """Return each vector of the list, all of one width D, tiled to (slots B, D)."""
        tiled = empty((len(vectors), slots * row_shape[1], vectors[0].shape[0]), weight.dtype)
        # [V D] -> [V, 1, D], broadcast in one copy for all V
        tiled[...] = np.concatenate(vectors).reshape(len(vectors), 1, -1)
        return list(tiled)

    qkv_vectors = {
        "qkv.b": bias - row_mean(bias),
        "qkv_norm.gain": block["qkv_norm.gain"] * column_scale,
        "qkv_norm.bias": block["qkv_norm.bias"] * column_scale,
    }
    row_names = ["attention_norm.gain", "attention_norm.bias", "mlp_norm.gain", "mlp_norm.bias"]
    row_tiles = tile([block[name] for name in row_names] + [b for _, b in mlp_layers], kept_slots)
    tiled = dict(zip(qkv_vectors, tile(list(qkv_vectors.values()), row_shape[0]), strict=True))
    tiled.update(zip(row_names, row_tiles[: len(row_names)], strict=True))
    mlp_biases = row_tiles[len(row_names) :]
    layers = [(w, b) for (w, _), b in zip(mlp_layers, mlp_biases, strict=True)]

    return BlockWeights(
        num_heads=num_heads,
        key_size=key_size,
        row_shape=tuple(row_shape),
        kept_slots=kept_slots,
        params=block,
        qkv_weight=qkv_weight,
        qkv_weight_t=np.ascontiguousarray(qkv_weight.T),
        column_scale=column_scale,
        mlp_layers=list(mlp_layers),
        mlp_weights_t=[np.ascontiguousarray(w.T) for w, _ in mlp_layers],
        hidden_layers=layers[:-1],
        last_layer=layers[-1] if layers else None,
        tiled=tiled,
        qkv_norm_constants=norm_constants(qkv_width, weight.dtype),
        row_norm_constants=norm_constants(mem_size, weight.dtype),
        shift_logits=_logit_bound(block, num_heads, key_size) > MAX_UNSHIFTED_LOGIT,
    )


@functools.lru_cache(maxsize=16)
def _column_scale(num_heads, group, key_size, dtype):
    """Return K ** -0.5 in the q columns and 1 in the k and v columns, (Q,), read-only.

    ``group`` is the 2K + V columns of each head, in the order [q | k | v].
    """
    scale = np.ones((num_heads, group), dtype=dtype)
    scale[:, :key_size] = key_size**-0.5
    scale.flags.writeable = False
    return scale.reshape(-1)


def _logit_bound(block, num_heads, key_size):
    """Return a bound on the size of every logit q . k / sqrt(K) the block can compute.

    The layer norm's normalised row x has a squared norm below Q, the qkv
    width, so a head's normalised q part of one row and k part of another,
    of norms a and b, each have a, b < sqrt(Q). The query and the key may
    come from different rows, so a and b can both come near sqrt(Q). With G
    the largest gain and C the norm of the biases over the q and k columns
    of all heads, |q| <= G a + C and |k| <= G b + C, hence
    |q . k| <= (G sqrt(Q) + C)^2, whatever the input.
    """
    gain, bias = block["qkv_norm.gain"], block["qkv_norm.bias"]
    qkv_width = gain.shape[0]
    qk = slice(0, 2 * key_size)  # the q and k columns of each head's [q | k | v] group
    qk_gain = gain.reshape(num_heads, -1)[:, qk]  # [Q] -> [H, 2K + V] -> (H, 2K)
    largest = float(np.maximum.reduce(np.abs(qk_gain), axis=None))
    qk_bias = bias.reshape(num_heads, -1)[:, qk]
    bias_norm = float(np.vdot(qk_bias, qk_bias)) ** 0.5
    return (largest * qkv_width**0.5 + bias_norm) ** 2 * key_size**-0.5


class BlockTape(NamedTuple):
    """Activations of one block over S steps, written by ``block_step_forward``.

    Each step's rows are one (R B, width) matrix, slot-major.
    """

    z: np.ndarray  # (S, R B, F) block input, owned by the caller
    qkv_hat: np.ndarray  # (S, R B, Q) normalised qkv
    qkv_inv_std: np.ndarray  # (S, R B, Q) each row's value repeated over the row
    qkv: np.ndarray  # (S, R B, Q) layer-normed qkv, q columns scaled by K ** -0.5
    weights: np.ndarray  # (S, R, B, H, R) keys first: [t, s, b, h, r] is query r on key s
    # Below, only the first R' B rows, those of the kept slots (see allocate_block_tape).
    z1_hat: np.ndarray  # (S, R' B, F) attention norm: normalised input
    z1_inv_std: np.ndarray  # (S, R' B, F) repeated likewise
    z1: np.ndarray  # (S, R' B, F) attention norm output, the MLP input
    hidden: tuple  # one (S, R' B, F) per MLP layer but the last: its output after ReLU
    out_hat: np.ndarray  # (S, R' B, F) MLP norm: normalised input
    out_inv_std: np.ndarray  # (S, R' B, F) repeated likewise
    out: np.ndarray  # (S, R' B, F) block output
    # Views, work arrays and constants, made once per sequence so that the steps
    # only index them:
    heads: tuple  # q, k, v: views of qkv, each (S, B, H, R, K or V)
    queries_t: np.ndarray  # (S, B, H, K, R) view of q, each step's q^T
    keys_first: np.ndarray  # (S, B, H, S_keys, R) view of weights
    queries_first: np.ndarray  # (S, B, H, R, S_keys) view of weights
    flat_weights: np.ndarray  # (S, S_keys, B H R) view of weights, for the softmax
    attended: np.ndarray  # (R B, F) work rows of one step: the attention's output
    attended_kept: np.ndarray  # (R' B, F) view of attended's kept rows
    attended_heads: np.ndarray  # (B, H, R, V) view of attended
    key_ones: np.ndarray  # (R, R) ones: sums over the keys are products with it
    key_sums: np.ndarray  # (S_keys, B H R) work array of one step: those sums
    zeros: np.ndarray  # (R' B, F) read-only zeros, the other operand of the ReLU
    # The qkv map's output z @ W_qkv (centred weight, no bias) of the last B' rows
    # of every step, (S, B', Q), when the caller computed it for all steps at once.
    # The steps then take the map of the other rows only, and the backward leaves
    # the product d_qkv_pre @ W_qkv^T out of the dz of these rows, for the caller.
    given_qkv: np.ndarray | None = None
    # The number of leading slots whose rows at step 0 are the same constant for
    # every sequence, as the RMC's initial memory is. Step 0 maps each such
    # slot's row once instead of once per sequence. Its backward gives these
    # rows a zero dz, and the weight gradient takes their share once per slot.
    # The shared rows must lie before the rows of given_qkv.
    shared_slots: int = 0
    # The number of leading slots whose rows at step 0 are constants whose gradient
    # the caller drops, as the RMC's initial memory is. The backward of step 0
    # gives these rows a zero dz without computing it. Shared rows are constants
    # too, so the larger of the two counts applies.
    constant_slots: int = 0


class BlockGradTape(NamedTuple):
    """Gradients at the inner nodes of one block over S steps, for ``block_param_grads``."""

    d_out: np.ndarray  # (S, R' B, F) at the block output, written by the caller
    d_mlp: tuple  # one (S, R' B, F) per MLP layer: at its output before ReLU
    # One (S, R' B, F) per MLP layer but the last: 1.0 where its output is positive,
    # else 0.0. Written by write_relu_masks before the steps' backward.
    relu_masks: tuple
    d_z1: np.ndarray  # (S, R' B, F) at the attention norm output
    d_qkv: np.ndarray  # (S, R B, Q) at the qkv norm output, for q that of the scaled q
    d_qkv_pre: np.ndarray  # (S, R B, Q) at the qkv map output, row means not removed
    # Views and work arrays, made once per sequence so that the steps only index them:
    d_heads: tuple  # dq, dk, dv: views of d_qkv, each (S, B, H, R, K or V)
    d_attended: np.ndarray  # (R B, F) work rows of one step: the gradient at the attention output
    d_attended_kept: np.ndarray  # (R' B, F) view of d_attended's kept rows, the others zero
    d_attended_heads: np.ndarray  # (B, H, R, V) view of d_attended
    d_attended_t: np.ndarray  # (B, H, V, R) view of d_attended, d_attended_heads^T
    d_logits: np.ndarray  # (S_keys, B, H, R) work array of one step
    d_logits_keys_first: np.ndarray  # (B, H, S_keys, R) view of d_logits
    d_logits_queries_first: np.ndarray  # (B, H, R, S_keys) view of d_logits
    flat_d_logits: np.ndarray  # (S_keys, B H R) view of d_logits


def allocate_block_tape(
    z, weights, empty=np.empty, given_qkv=None, shared_slots=0, constant_slots=0
):
    """Return an empty tape for the block input z of shape (S, R B, F).

    ``empty(shape, dtype)`` allocates each array, ``np.empty`` or ``PoolLease.empty``.
    The rows after the attention are those of the weights' kept slots.
    ``given_qkv``, ``shared_slots`` and ``constant_slots`` as in ``BlockTape``.
    """
    steps, rows, width = z.shape
    slots, batch = weights.row_shape
    kept_rows = weights.kept_slots * batch
    qkv_width = weights.qkv_weight.shape[1]

    def rows_of(size, count=kept_rows):
        return empty((steps, count, size), z.dtype)

    qkv = rows_of(qkv_width, rows)
    heads = _split_heads(qkv, weights.row_shape, weights.num_heads, weights.key_size)
    attention = empty((steps, slots, batch, weights.num_heads, slots), z.dtype)
    attended = empty((rows, width), z.dtype)
    return BlockTape(
        z=z,
        qkv_hat=rows_of(qkv_width, rows),
        qkv_inv_std=rows_of(qkv_width, rows),
        qkv=qkv,
        weights=attention,
        z1_hat=rows_of(width),
        z1_inv_std=rows_of(width),
        z1=rows_of(width),
        hidden=tuple(rows_of(width) for _ in weights.mlp_layers[:-1]),
        out_hat=rows_of(width),
        out_inv_std=rows_of(width),
        out=rows_of(width),
        heads=heads,
        queries_t=heads[0].swapaxes(-1, -2),
        # [S, S_keys, B, H, R] -> [S, B, H, S_keys, R] and -> [S, B, H, R, S_keys]
        keys_first=attention.transpose(0, 2, 3, 1, 4),
        queries_first=attention.transpose(0, 2, 3, 4, 1),
        # [S, S_keys, B, H, R] -> [S, S_keys, B H R]
        flat_weights=attention.reshape(steps, slots, -1, copy=False),
        attended=attended,
        attended_kept=attended[:kept_rows],
        attended_heads=_heads_view(attended, weights.row_shape, weights.num_heads),
        key_ones=constant_array((slots, slots), 1.0, z.dtype),
        key_sums=empty((slots, batch * weights.num_heads * slots), z.dtype),
        zeros=constant_array((kept_rows, width), 0.0, z.dtype),
        given_qkv=given_qkv,
        shared_slots=shared_slots,
        constant_slots=constant_slots,
    )


def allocate_grad_tape(tape, empty=np.empty):
    """Return an empty gradient tape matching ``tape``; ``empty`` as for ``allocate_block_tape``.

    Before the steps' backward, ``write_relu_masks`` must fill its masks.
    """

    def like(array):
        return empty(array.shape, array.dtype)

    row_shape, num_heads = tape.weights.shape[1:3], tape.weights.shape[3]  # (S, R, B, H, R)
    d_qkv = like(tape.qkv)
    d_attended = like(tape.attended)
    d_attended[tape.z1.shape[1] :] = 0.0  # rows past the kept ones never get a gradient
    d_attended_heads = _heads_view(d_attended, row_shape, num_heads)
    d_logits = like(tape.weights[0])
    key_size = tape.heads[0].shape[-1]
    return BlockGradTape(
        d_out=like(tape.out),
        d_mlp=tuple(like(tape.out) for _ in range(len(tape.hidden) + 1)),
        relu_masks=tuple(like(hidden) for hidden in tape.hidden),
        d_z1=like(tape.z1),
        d_qkv=d_qkv,
        d_qkv_pre=like(tape.qkv),
        d_heads=_split_heads(d_qkv, row_shape, num_heads, key_size),
        d_attended=d_attended,
        d_attended_kept=d_attended[: tape.z1.shape[1]],
        d_attended_heads=d_attended_heads,
        d_attended_t=d_attended_heads.swapaxes(-1, -2),
        d_logits=d_logits,
        d_logits_keys_first=d_logits.transpose(1, 2, 0, 3),
        d_logits_queries_first=d_logits.transpose(1, 2, 3, 0),
        # [S_keys, B, H, R] -> [S_keys, B H R]
        flat_d_logits=d_logits.reshape(d_logits.shape[0], -1, copy=False),
    )


def write_relu_masks(tape, grad_tape):
    """Write the ReLU masks of the filled ``tape`` into ``grad_tape``, for all steps at once.

    A step's gradient times a float mask took 0.7 microseconds on the (128, 32)
    rows of ``tracking`` in bench/compare.py, against 2.8 times the comparison
    ``hidden > 0`` (``timeit``).
    """
    for hidden, mask in zip(tape.hidden, grad_tape.relu_masks, strict=True):
        mask[...] = np.greater(hidden, 0.0)  # bool to float


def _rows(array):
    """Return an array (..., D) as rows (n, D)."""
    return array.reshape(-1, array.shape[-1])


def _split_heads(qkv, row_shape, num_heads, key_size):
    """Return q, k, v views of qkv rows (S, R B, Q) of rows (R, B), each (S, B, H, R, K or V)."""
    steps = qkv.shape[0]
    # [S, R B, H(2K+V)] -> [S, R, B, H, 2K+V] -> [S, B, H, R, 2K+V]
    heads = qkv.reshape(steps, *row_shape, num_heads, -1, copy=False).transpose(0, 2, 3, 1, 4)
    return heads[..., :key_size], heads[..., key_size : 2 * key_size], heads[..., 2 * key_size :]


def _heads_view(rows, row_shape, num_heads):
    """Return the (B, H, R, V) view of one step's rows (R B, F) of rows (R, B), F = H * V."""
    # [R B, F] -> [R, B, H, V] -> [B, H, R, V]
    return rows.reshape(*row_shape, num_heads, -1, copy=False).transpose(1, 2, 0, 3)


# --- one step -----------------------------------------------------------------


def _sum_keys(array, tape):
    """Return the sums of array (S, B H R) over the keys, axis 0, repeated over the keys.

    The result, of the shape of array, is ``tape.key_sums``, overwritten. A
    product with the (S, S) ones: the operation that takes the sums then runs
    on two arrays of one shape, which NumPy does in one loop, instead of
    broadcasting a (B H R,) row over the keys. On the (5, 160) arrays of
    ``tracking`` in bench/compare.py, the sums and a division take 0.9
    microseconds this way, against 1.5 for a product with a vector of ones and
    a broadcast division, and 2.2 with ``np.add.reduce`` (``timeit``).
    """
    return dot(tape.key_ones, array, out=tape.key_sums)  # (S, S) @ (S, B H R)


def _mapped_rows(tape, t, weights):
    """Return (start, end): the rows of step t whose qkv map the step takes itself.

    The rows before ``start`` are shared rows of step 0, and the rows from ``end`` on
    are the rows of ``tape.given_qkv``.
    """
    rows = tape.z.shape[1]
    start = tape.shared_slots * weights.row_shape[1] if t == 0 else 0
    end = rows if tape.given_qkv is None else rows - tape.given_qkv.shape[1]
    return start, end


def _qkv_map_step(tape, t, weights):
    """Return z[t] @ W_qkv (R B, Q), with the centred weight, for the rows of step t."""
    z = tape.z[t]
    if tape.given_qkv is None and (t or not tape.shared_slots):  # every row, the usual case
        return dot(z, weights.qkv_weight)  # (R B, F) @ (F, Q)
    start, end = _mapped_rows(tape, t, weights)
    qkv_pre = np.empty((z.shape[0], weights.qkv_weight.shape[1]), dtype=z.dtype)
    if start:
        repeated_rows_dot(z[:start], weights.qkv_weight, tape.shared_slots, qkv_pre[:start])
    dot(z[start:end], weights.qkv_weight, out=qkv_pre[start:end])
    if end < z.shape[0]:
        qkv_pre[end:] = tape.given_qkv[t]
    return qkv_pre


def _attention_step_forward(tape, t, weights):
    """Attend over the rows of step t; write the attended rows to ``tape.attended`` (R B, F)."""
    tiled = weights.tiled

    # qkv map and layer norm over the whole qkv row; the centred weights give zero-mean rows.
    qkv_pre = _qkv_map_step(tape, t, weights)
    qkv_pre += tiled["qkv.b"]
    gain, bias = tiled["qkv_norm.gain"], tiled["qkv_norm.bias"]
    qkv, x_hat, inv_std = tape.qkv[t], tape.qkv_hat[t], tape.qkv_inv_std[t]
    layer_norm_into(qkv_pre, gain, bias, qkv, x_hat, inv_std, True, weights.qkv_norm_constants)
    _, k, v = tape.heads
    k, v = k[t], v[t]  # (B, H, R, K or V)

    # Softmax over the keys, keys first: logits[s, b, h, r] = k_s . q_r (q already scaled).
    np.matmul(k, tape.queries_t[t], out=tape.keys_first[t])  # (B, H, S, K) @ (B, H, K, R)
    logits = tape.flat_weights[t]  # (S, B H R)
    if weights.shift_logits:  # shift by the largest logit, so that exp cannot overflow
        logits -= np.maximum.reduce(logits, axis=0)
    np.exp(logits, out=logits)
    logits /= _sum_keys(logits, tape)

    # (B, H, R, S) @ (B, H, S, V), written through the [B, H, R, V] view of [R B, F]
    np.matmul(tape.queries_first[t], v, out=tape.attended_heads)


def block_step_forward(tape, t, weights):
    """Apply the block to the rows ``tape.z[t]`` (R B, F); the output is ``tape.out[t]``.

    After the attention, only the rows of the kept slots, the first R' B, are computed.
    """
    z, z1 = tape.z[t], tape.z1[t]
    tiled, constants = weights.tiled, weights.row_norm_constants
    _attention_step_forward(tape, t, weights)

    # Residual and layer norm around the attention, on the kept rows.
    attended = tape.attended_kept
    attended += z[: z1.shape[0]]
    gain, bias = tiled["attention_norm.gain"], tiled["attention_norm.bias"]
    layer_norm_into(attended, gain, bias, z1, tape.z1_hat[t], tape.z1_inv_std[t], False, constants)

    # The row-wise MLP; hidden layers write their ReLU output to the tape.
    hidden = z1
    for (weight, bias), saved in zip(weights.hidden_layers, tape.hidden, strict=True):
        out = saved[t]
        dot(hidden, weight, out=out)  # (R' B, F) @ (F, F)
        out += bias
        np.maximum(out, tape.zeros, out=out)  # ReLU
        hidden = out
    weight, bias = weights.last_layer
    mlp_out = dot(hidden, weight)  # (R' B, F) @ (F, F)
    mlp_out += bias

    # Residual and layer norm around the MLP.
    mlp_out += z1
    gain, bias = tiled["mlp_norm.gain"], tiled["mlp_norm.bias"]
    out, x_hat, inv_std = tape.out[t], tape.out_hat[t], tape.out_inv_std[t]
    layer_norm_into(mlp_out, gain, bias, out, x_hat, inv_std, False, constants)


def _attention_step_backward(tape, grad_tape, t):
    """Backward of the attention of step t from ``grad_tape.d_attended`` (R B, F).

    Fills ``d_qkv[t]``. Its q columns hold the gradient with respect to the
    scaled q, q * K ** -0.5, which the tape holds: the scale is applied on the
    way back through the qkv layer norm, whose tiled gain carries it, and to
    the gain's and bias's gradients in ``_qkv_param_grads``.
    """
    q, k, v = tape.heads
    q, k, v = q[t], k[t], v[t]  # (B, H, R, K or V)
    dq, dk, dv = grad_tape.d_heads
    dq, dk, dv = dq[t], dk[t], dv[t]

    d_attended = grad_tape.d_attended_heads  # (B, H, R, V)
    # Views of d_logits (S, B, H, R): first d_weights, then the logits' gradient.
    keys_first, queries_first = grad_tape.d_logits_keys_first, grad_tape.d_logits_queries_first
    # d_weights[s, b, h, r] = v_s . d_attended_r: (B, H, S, V) @ (B, H, V, R)
    np.matmul(v, grad_tape.d_attended_t, out=keys_first)
    np.matmul(tape.keys_first[t], d_attended, out=dv)  # (B, H, S, R) @ (B, H, R, V)

    # Softmax backward over the keys (axis 0).
    flat_d_logits, flat_probs = grad_tape.flat_d_logits, tape.flat_weights[t]  # (S, B H R)
    flat_d_logits -= _sum_keys(flat_d_logits * flat_probs, tape)
    flat_d_logits *= flat_probs

    # logits = k . q_scaled
    np.matmul(keys_first, q, out=dk)  # (B, H, S, R) @ (B, H, R, K)
    np.matmul(queries_first, k, out=dq)  # (B, H, R, S) @ (B, H, S, K)


def _qkv_step_backward(tape, grad_tape, t, weights, dz):
    """Backward of qkv = layer_norm(z @ W_qkv + b_qkv) from ``d_qkv[t]``; writes dz (R B, F).

    ``d_qkv_pre[t]`` receives the norm's input gradient before the removal of
    its row means (``centre=False``): the product with the centred weight
    removes them on the way to dz, and ``_qkv_param_grads`` once per sequence.
    The rows of ``tape.given_qkv``, and the shared and constant rows of step 0,
    get a zero dz. Returns the number of leading rows of dz that are shared or
    constant rows of step 0, or 0.
    """
    d_qkv_pre = grad_tape.d_qkv_pre[t]
    layer_norm_backward_into(
        grad_tape.d_qkv[t],
        tape.qkv_hat[t],
        tape.qkv_inv_std[t],
        weights.tiled["qkv_norm.gain"],  # scaled in the q columns, as d_qkv's q columns need
        d_qkv_pre,
        False,
        weights.qkv_norm_constants,
    )
    if t and tape.given_qkv is None:  # every row, the usual case
        dot(d_qkv_pre, weights.qkv_weight_t, out=dz)  # (R B, Q) @ (Q, F)
        return 0
    start, end = _mapped_rows(tape, t, weights)
    if t == 0:
        start = max(start, tape.constant_slots * weights.row_shape[1])
    dz[:start] = 0.0
    # (R B, Q) @ (Q, F), over the rows that the step mapped itself and that are not constant
    dot(d_qkv_pre[start:end], weights.qkv_weight_t, out=dz[start:end])
    dz[end:] = 0.0
    return start


def block_step_backward(tape, grad_tape, t, weights, dz):
    """Backward of step t from ``grad_tape.d_out[t]``; writes the input gradient to dz (R B, F).

    Fills step t of the gradient tape. ``dz`` must not be one of the tape's arrays.
    """
    tiled, constants = weights.tiled, weights.row_norm_constants

    # out = layer_norm(z1 + mlp(z1)): the norm's input gradient is that of the last MLP layer.
    d_sum = grad_tape.d_mlp[-1][t]
    gain = tiled["mlp_norm.gain"]
    x_hat, inv_std = tape.out_hat[t], tape.out_inv_std[t]
    layer_norm_backward_into(grad_tape.d_out[t], x_hat, inv_std, gain, d_sum, True, constants)

    # The MLP, last layer first; ReLU passes the gradient where its output is positive.
    d = d_sum
    for j in reversed(range(1, len(weights.mlp_layers))):
        d_hidden = grad_tape.d_mlp[j - 1][t]
        dot(d, weights.mlp_weights_t[j], out=d_hidden)  # (R' B, F) @ (F, F)
        d_hidden *= grad_tape.relu_masks[j - 1][t]
        d = d_hidden
    d_z1 = grad_tape.d_z1[t]
    dot(d, weights.mlp_weights_t[0], out=d_z1)
    d_z1 += d_sum  # residual

    # z1 = layer_norm(z + attended); rows past the kept ones have no gradient.
    gain, d_attended = tiled["attention_norm.gain"], grad_tape.d_attended_kept
    x_hat, inv_std = tape.z1_hat[t], tape.z1_inv_std[t]
    layer_norm_backward_into(d_z1, x_hat, inv_std, gain, d_attended, True, constants)
    _attention_step_backward(tape, grad_tape, t)
    zero_rows = _qkv_step_backward(tape, grad_tape, t, weights, dz)
    # The residual, over the full d_attended (R B, F), which is zero past the kept
    # rows. The shared and constant rows of step 0 keep their zero dz.
    if zero_rows:
        dz[zero_rows:] += grad_tape.d_attended[zero_rows:]
    else:
        dz += grad_tape.d_attended


# --- parameter gradients over all steps ---------------------------------------


def _norm_grads(prefix, d_out, x_hat):
    """Return the gain and bias gradients of a layer norm over every row of every step.

    Overwrites ``d_out`` with ``d_out * x_hat``.
    """
    bias = sum_rows(d_out)
    gain = sum_rows(np.multiply(d_out, x_hat, out=d_out))
    return {f"{prefix}.gain": gain, f"{prefix}.bias": bias}


def _qkv_weight_grad(tape, grad_tape):
    """Return z^T d_qkv_pre (F, Q) summed over all steps, without the given rows' share.

    The shared rows of step 0 enter once per slot, with their gradient summed over the batch.
    """
    z, d_pre = tape.z, grad_tape.d_qkv_pre  # (S, R B, F) and (S, R B, Q)
    rows = z.shape[1]
    end = rows if tape.given_qkv is None else rows - tape.given_qkv.shape[1]
    first = 1 if tape.shared_slots else 0  # the step the shared rows begin at
    weight = step_products(z[first:, :end], d_pre[first:, :end])  # (F, Q)
    if first:
        start = tape.shared_slots * tape.weights.shape[2]  # N' B; weights is (S, R, B, H, R)
        weight += z[0, start:end].T @ d_pre[0, start:end]  # (F, rows) @ (rows, Q)
        weight += repeated_rows_grad(z[0, :start], d_pre[0, :start], tape.shared_slots)
    return weight


def _qkv_param_grads(tape, grad_tape, column_scale):
    """Return the grads of ``qkv.*`` and ``qkv_norm.*`` summed over all steps.

    With ``tape.given_qkv``, the weight's gradient leaves out the given rows'
    share, ``z^T d_qkv_pre`` over those rows, which their caller adds.
    ``column_scale`` (Q,) turns the q columns of d_qkv, the gradient with
    respect to the scaled q, into that of the layer norm's output.
    """
    d_qkv_pre = _rows(grad_tape.d_qkv_pre)  # (S R B, Q), row means not yet removed
    weight = _qkv_weight_grad(tape, grad_tape)
    bias = sum_rows(d_qkv_pre)
    grads = {
        "qkv.W": weight - row_mean(weight),
        "qkv.b": bias - row_mean(bias),
    }
    norm_grads = _norm_grads("qkv_norm", grad_tape.d_qkv, tape.qkv_hat)
    grads.update({name: value * column_scale for name, value in norm_grads.items()})
    return grads


def block_param_grads(tape, grad_tape, weights):
    """Return the block's grads by local name and one ``{"W", "b"}`` dict per MLP layer.

    Each is summed over all S steps of the tapes. Overwrites the gradient tape.
    """
    grads = _qkv_param_grads(tape, grad_tape, weights.column_scale)
    grads.update(_norm_grads("attention_norm", grad_tape.d_z1, tape.z1_hat))
    grads.update(_norm_grads("mlp_norm", grad_tape.d_out, tape.out_hat))

    mlp_grads = []
    for layer_input, d_layer in zip((tape.z1, *tape.hidden), grad_tape.d_mlp, strict=True):
        mlp_grads.append({"W": step_products(layer_input, d_layer), "b": sum_rows(d_layer)})
    return grads, mlp_grads


# --- one call -----------------------------------------------------------------


class AttentionBlockCache(NamedTuple):
    tape: BlockTape  # of one step
    weights: BlockWeights


MultiHeadCache = AttentionBlockCache


def _to_rows(z):
    """Return rows (B, R, F) as one step's slot-major rows (R B, F), a copy."""
    return np.ascontiguousarray(z.transpose(1, 0, 2)).reshape(-1, z.shape[-1])


def _from_rows(rows, batch):
    """Return a step's slot-major rows (R B, F) as (B, R, F)."""
    return rows.reshape(-1, batch, rows.shape[-1]).transpose(1, 0, 2)


def _one_step_tape(z, block, mlp_layers, num_heads, key_size):
    """Return a tape of one step for rows z (B, R, F), and the block's weights."""
    batch, slots, _ = z.shape
    weights = prepare_block(block, mlp_layers, num_heads, key_size, (slots, batch))
    return allocate_block_tape(_to_rows(z)[None], weights), weights


def multihead_attention_forward(z, block, num_heads, key_size):
    """Attend over the rows of z (B, R, F); return attended rows (B, R, F) and the cache.

    The qkv map, its layer norm and the heads, without the residual, the norms
    after it or the MLP.
    """
    tape, weights = _one_step_tape(z, block, [], num_heads, key_size)
    _attention_step_forward(tape, 0, weights)
    return _from_rows(tape.attended.copy(), z.shape[0]), MultiHeadCache(tape, weights)


def multihead_attention_backward(d_attended, cache, key_size):
    """Return d_z (B, R, F) and the grads of ``qkv.*`` and ``qkv_norm.*``.

    ``key_size`` must be the one given to the forward call, which the cache also holds.
    """
    if key_size != cache.weights.key_size:
        raise ValueError(
            f"key_size must match the forward call's {cache.weights.key_size}, got {key_size}"
        )
    grad_tape = allocate_grad_tape(cache.tape)
    grad_tape.d_attended[...] = _to_rows(d_attended)
    _attention_step_backward(cache.tape, grad_tape, 0)
    dz = np.empty_like(cache.tape.z[0])
    _qkv_step_backward(cache.tape, grad_tape, 0, cache.weights, dz)
    grads = _qkv_param_grads(cache.tape, grad_tape, cache.weights.column_scale)
    return _from_rows(dz, d_attended.shape[0]), grads


def attention_block_forward(z, block, mlp_layers, num_heads, key_size):
    """Apply one block to rows z of shape (B, R, F); return (out (B, R, F), cache).

    ``mlp_layers`` is the list of (weight, bias) pairs of the row-wise MLP.
    """
    tape, weights = _one_step_tape(z, block, mlp_layers, num_heads, key_size)
    block_step_forward(tape, 0, weights)
    return _from_rows(tape.out[0], z.shape[0]), AttentionBlockCache(tape, weights)


def attention_block_backward(d_out, cache):
    """Return d_z (B, R, F), the block's grads by local name, and one grads dict per MLP layer."""
    grad_tape = allocate_grad_tape(cache.tape)
    write_relu_masks(cache.tape, grad_tape)
    grad_tape.d_out[0] = _to_rows(d_out)
    dz = np.empty_like(cache.tape.z[0])
    block_step_backward(cache.tape, grad_tape, 0, cache.weights, dz)
    grads, mlp_grads = block_param_grads(cache.tape, grad_tape, cache.weights)
    return _from_rows(dz, d_out.shape[0]), grads, mlp_grads
