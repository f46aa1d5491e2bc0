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

Implementation. The RMC applies a block at every step of a sequence, so the
activations a block saves for its backward pass live on a ``BlockTape``:
arrays with a leading step axis S, allocated once per sequence and written in
place step by step. The backward pass through time computes only gradients
with respect to activations, into a ``BlockGradTape`` of the same layout, and
``block_param_grads`` then takes every parameter gradient of the block with
one matmul or one sum over all S steps at once. ``attention_block_forward``
and ``attention_block_backward`` are the same computation for one call (S = 1).

Two layout choices make the small per-step arrays cheap in NumPy. Attention
weights are stored keys first, (S_keys = R, B, H, R_queries), so that the
softmax over the keys runs along axis 0 as a few whole-array operations
instead of reductions over rows of length R. The key scale ``K ** -0.5`` is
folded into the gain and bias of the qkv layer norm's q columns, so the tape
holds q already scaled.
"""

from typing import NamedTuple

import numpy as np

from models.layers import (
    init_layer_norm,
    init_linear,
    layer_norm_backward_into,
    layer_norm_into,
    sum_rows,
)


def init_attention_block(rng, mem_size, num_heads, key_size, dtype):
    """Return the parameters of one block except the shared MLP, keyed by local name."""
    head_size = mem_size // num_heads
    qkv_width = num_heads * (2 * key_size + head_size)
    block = {}
    block["qkv.W"], block["qkv.b"] = init_linear(rng, mem_size, qkv_width, dtype)
    block["qkv_norm.gain"], block["qkv_norm.bias"] = init_layer_norm(qkv_width, dtype)
    block["attention_norm.gain"], block["attention_norm.bias"] = init_layer_norm(mem_size, dtype)
    block["mlp_norm.gain"], block["mlp_norm.bias"] = init_layer_norm(mem_size, dtype)
    return block


class BlockWeights(NamedTuple):
    """One block's parameters as the step functions use them, built by ``prepare_block``."""

    num_heads: int
    key_size: int
    params: dict  # the block's parameters by local name
    qkv_weight: np.ndarray  # (F, Q) qkv.W minus its row means, so each output row has mean 0
    qkv_bias: np.ndarray  # (Q,) qkv.b minus its mean
    qkv_weight_t: np.ndarray  # (Q, F) the transpose of qkv_weight, contiguous for the backward
    qkv_norm_gain: np.ndarray  # (Q,) qkv_norm.gain with the q columns scaled by K ** -0.5
    qkv_norm_bias: np.ndarray  # (Q,) qkv_norm.bias, scaled the same way
    mlp_layers: list  # (W (F, F), b (F,)) pairs of the shared MLP
    mlp_weights_t: list  # the transposes of the MLP weights, contiguous


def prepare_block(block, mlp_layers, num_heads, key_size):
    """Return the ``BlockWeights`` of a block's parameters and the shared MLP.

    The qkv layer norm subtracts the row mean of ``z @ W + b``, which is
    ``z @ mean_cols(W) + mean(b)``; taking those means out of W and b once per
    sequence gives outputs of zero mean directly, so no step subtracts them.
    """
    weight, bias = block["qkv.W"], block["qkv.b"]
    qkv_weight = weight - weight.mean(axis=1, keepdims=True)  # (F, Q)
    qkv_width = weight.shape[1]
    group = qkv_width // num_heads  # 2K + V columns per head, in the order [q | k | v]
    column_scale = np.ones((num_heads, group), dtype=weight.dtype)
    column_scale[:, :key_size] = key_size**-0.5
    column_scale = column_scale.reshape(qkv_width)
    return BlockWeights(
        num_heads=num_heads,
        key_size=key_size,
        params=block,
        qkv_weight=qkv_weight,
        qkv_bias=bias - bias.mean(),
        qkv_weight_t=np.ascontiguousarray(qkv_weight.T),
        qkv_norm_gain=block["qkv_norm.gain"] * column_scale,
        qkv_norm_bias=block["qkv_norm.bias"] * column_scale,
        mlp_layers=list(mlp_layers),
        mlp_weights_t=[np.ascontiguousarray(w.T) for w, _ in mlp_layers],
    )


class BlockTape(NamedTuple):
    """Activations of one block over S steps, written by ``block_step_forward``."""

    z: np.ndarray  # (S, B, R, F) block input, owned by the caller
    qkv_hat: np.ndarray  # (S, B, R, Q) normalised qkv
    qkv_inv_std: np.ndarray  # (S, B, R, 1)
    qkv: np.ndarray  # (S, B, R, Q) layer-normed qkv, q columns scaled by K ** -0.5
    weights: np.ndarray  # (S, R, B, H, R) keys first: [t, s, b, h, r] is query r on key s
    z1_hat: np.ndarray  # (S, B, R, F) attention norm: normalised input
    z1_inv_std: np.ndarray  # (S, B, R, 1)
    z1: np.ndarray  # (S, B, R, F) attention norm output, the MLP input
    hidden: tuple  # one (S, B, R, F) per MLP layer but the last: its output after ReLU
    out_hat: np.ndarray  # (S, B, R, F) MLP norm: normalised input
    out_inv_std: np.ndarray  # (S, B, R, 1)
    out: np.ndarray  # (S, B, R, F) block output


class BlockGradTape(NamedTuple):
    """Gradients at the inner nodes of one block over S steps, for ``block_param_grads``."""

    d_out: np.ndarray  # (S, B, R, F) at the block output, written by the caller
    d_mlp: tuple  # one (S, B, R, F) per MLP layer: at its output before ReLU
    d_z1: np.ndarray  # (S, B, R, F) at the attention norm output
    d_qkv: np.ndarray  # (S, B, R, Q) at the qkv norm output, q unscaled
    d_qkv_pre: np.ndarray  # (S, B, R, Q) at the qkv map output


def allocate_block_tape(z, weights, empty=np.empty):
    """Return an empty tape for the block input z of shape (S, B, R, F).

    ``empty(shape, dtype)`` allocates each array, ``np.empty`` or ``PoolLease.empty``.
    """
    steps, batch, rows, width = z.shape
    qkv_width = weights.params["qkv.W"].shape[1]

    def rows_of(size):
        return empty((steps, batch, rows, size), z.dtype)

    return BlockTape(
        z=z,
        qkv_hat=rows_of(qkv_width),
        qkv_inv_std=rows_of(1),
        qkv=rows_of(qkv_width),
        weights=empty((steps, rows, batch, weights.num_heads, rows), z.dtype),
        z1_hat=rows_of(width),
        z1_inv_std=rows_of(1),
        z1=rows_of(width),
        hidden=tuple(rows_of(width) for _ in weights.mlp_layers[:-1]),
        out_hat=rows_of(width),
        out_inv_std=rows_of(1),
        out=rows_of(width),
    )


def allocate_grad_tape(tape, empty=np.empty):
    """Return an empty gradient tape matching ``tape``; ``empty`` as for ``allocate_block_tape``."""

    def like(array):
        return empty(array.shape, array.dtype)

    return BlockGradTape(
        d_out=like(tape.out),
        d_mlp=tuple(like(tape.out) for _ in range(len(tape.hidden) + 1)),
        d_z1=like(tape.z1),
        d_qkv=like(tape.qkv),
        d_qkv_pre=like(tape.qkv),
    )


def _rows(array):
    """Return an array (..., D) as rows (n, D)."""
    return array.reshape(-1, array.shape[-1])


def _split_heads(qkv, num_heads, key_size):
    """Return q, k, v views of qkv rows (B, R, Q), each (B, H, R, K or V)."""
    batch, rows, _ = qkv.shape
    # [B, R, H(2K+V)] -> [B, R, H, 2K+V] -> [B, H, R, 2K+V]
    heads = qkv.reshape(batch, rows, num_heads, -1).transpose(0, 2, 1, 3)
    return heads[..., :key_size], heads[..., key_size : 2 * key_size], heads[..., 2 * key_size :]


# --- one step -----------------------------------------------------------------


def _attention_step_forward(tape, t, weights):
    """Attend over the rows of step t; return attended rows (B, R, F)."""
    z = tape.z[t]  # (B, R, F)
    batch, rows, width = z.shape
    heads, key_size = weights.num_heads, weights.key_size

    # qkv map and layer norm over the whole qkv row; the centred weights give zero-mean rows.
    qkv_pre = z.reshape(-1, width) @ weights.qkv_weight  # (B R, F) @ (F, Q)
    qkv_pre += weights.qkv_bias
    layer_norm_into(
        qkv_pre.reshape(batch, rows, -1),
        weights.qkv_norm_gain,
        weights.qkv_norm_bias,
        out=tape.qkv[t],
        x_hat=tape.qkv_hat[t],
        inv_std=tape.qkv_inv_std[t],
        centred=True,
    )
    q, k, v = _split_heads(tape.qkv[t], heads, key_size)

    # Softmax over the keys, keys first: logits[s, b, h, r] = k_s . q_r (q already scaled).
    logits = tape.weights[t]  # (S, B, H, R)
    np.matmul(k, q.transpose(0, 1, 3, 2), out=logits.transpose(1, 2, 0, 3))  # (B,H,S,K)@(B,H,K,R)
    logits -= logits.max(axis=0)  # shift by the largest logit for stability
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0)

    attended = logits.transpose(1, 2, 3, 0) @ v  # (B, H, R, S) @ (B, H, S, V)
    # [B, H, R, V] -> [B, R, H, V] -> [B, R, F]
    return attended.transpose(0, 2, 1, 3).reshape(batch, rows, width)


def block_step_forward(tape, t, weights):
    """Apply the block to the rows ``tape.z[t]`` (B, R, F); the output is ``tape.out[t]``."""
    z = tape.z[t]
    batch, rows, width = z.shape
    params = weights.params
    attended = _attention_step_forward(tape, t, weights)

    # Residual and layer norm around the attention.
    attended += z
    layer_norm_into(
        attended,
        params["attention_norm.gain"],
        params["attention_norm.bias"],
        out=tape.z1[t],
        x_hat=tape.z1_hat[t],
        inv_std=tape.z1_inv_std[t],
    )

    # The row-wise MLP; hidden layers write their ReLU output to the tape.
    hidden = tape.z1[t].reshape(-1, width)  # (B R, F)
    for (weight, bias), saved in zip(weights.mlp_layers[:-1], tape.hidden, strict=True):
        out = saved[t].reshape(-1, width)
        np.matmul(hidden, weight, out=out)  # (B R, F) @ (F, F)
        out += bias
        np.maximum(out, 0.0, out=out)
        hidden = out
    weight, bias = weights.mlp_layers[-1]
    mlp_out = hidden @ weight  # (B R, F) @ (F, F)
    mlp_out += bias

    # Residual and layer norm around the MLP.
    mlp_out = mlp_out.reshape(batch, rows, width)
    mlp_out += tape.z1[t]
    layer_norm_into(
        mlp_out,
        params["mlp_norm.gain"],
        params["mlp_norm.bias"],
        out=tape.out[t],
        x_hat=tape.out_hat[t],
        inv_std=tape.out_inv_std[t],
    )


def _attention_step_backward(tape, grad_tape, t, weights, d_attended):
    """Backward of the attention of step t from d_attended (B, R, F); fills d_qkv[t]."""
    batch, rows, width = d_attended.shape
    heads, key_size = weights.num_heads, weights.key_size
    q, k, v = _split_heads(tape.qkv[t], heads, key_size)
    dq, dk, dv = _split_heads(grad_tape.d_qkv[t], heads, key_size)
    probs = tape.weights[t]  # (S, B, H, R)

    # [B, R, F] -> [B, R, H, V] -> [B, H, R, V]
    d_attended = d_attended.reshape(batch, rows, heads, -1).transpose(0, 2, 1, 3)
    d_logits = np.empty_like(probs)  # (S, B, H, R): first d_weights, then the logits' gradient
    # d_weights[s, b, h, r] = v_s . d_attended_r: (B, H, S, V) @ (B, H, V, R)
    np.matmul(v, d_attended.transpose(0, 1, 3, 2), out=d_logits.transpose(1, 2, 0, 3))
    np.matmul(probs.transpose(1, 2, 0, 3), d_attended, out=dv)  # (B, H, S, R) @ (B, H, R, V)

    # Softmax backward over the keys (axis 0).
    d_logits -= (d_logits * probs).sum(axis=0)
    d_logits *= probs

    # logits = k . q_scaled, with q_scaled = q * K ** -0.5
    np.matmul(d_logits.transpose(1, 2, 0, 3), q, out=dk)  # (B, H, S, R) @ (B, H, R, K)
    d_logits *= key_size**-0.5
    np.matmul(d_logits.transpose(1, 2, 3, 0), k, out=dq)  # (B, H, R, S) @ (B, H, S, K)


def _qkv_step_backward(tape, grad_tape, t, weights, dz):
    """Backward of qkv = layer_norm(z @ W_qkv + b_qkv) from ``d_qkv[t]``; writes dz (B, R, F).

    ``d_qkv_pre[t]`` receives the norm's input gradient before the removal of
    its row means (``centre=False``): the product with the centred weight
    removes them on the way to dz, and ``_qkv_param_grads`` once per sequence.
    """
    layer_norm_backward_into(
        grad_tape.d_qkv[t],
        tape.qkv_hat[t],
        tape.qkv_inv_std[t],
        weights.params["qkv_norm.gain"],  # unscaled: d_qkv is the gradient of the unscaled q
        out=grad_tape.d_qkv_pre[t],
        centre=False,
    )
    width = dz.shape[-1]
    d_qkv_pre = _rows(grad_tape.d_qkv_pre[t])  # (B R, Q)
    np.matmul(d_qkv_pre, weights.qkv_weight_t, out=dz.reshape(-1, width))  # @ (Q, F)


def block_step_backward(tape, grad_tape, t, weights, dz):
    """Backward of step t from ``grad_tape.d_out[t]``; writes the input gradient to dz (B, R, F).

    Fills step t of the gradient tape. ``dz`` must not be one of the tape's arrays.
    """
    params = weights.params
    d_out = grad_tape.d_out[t]
    batch, rows, width = d_out.shape

    # out = layer_norm(z1 + mlp(z1)): the norm's input gradient is that of the last MLP layer.
    d_sum = grad_tape.d_mlp[-1][t]
    layer_norm_backward_into(
        d_out, tape.out_hat[t], tape.out_inv_std[t], params["mlp_norm.gain"], out=d_sum
    )

    # The MLP, last layer first; ReLU passes the gradient where its output is positive.
    d = d_sum.reshape(-1, width)  # (B R, F)
    for j in reversed(range(1, len(weights.mlp_layers))):
        d_hidden = grad_tape.d_mlp[j - 1][t].reshape(-1, width)
        np.matmul(d, weights.mlp_weights_t[j], out=d_hidden)  # (B R, F) @ (F, F)
        d_hidden *= tape.hidden[j - 1][t].reshape(-1, width) > 0
        d = d_hidden
    d_z1 = grad_tape.d_z1[t]
    np.matmul(d, weights.mlp_weights_t[0], out=d_z1.reshape(-1, width))
    d_z1 += d_sum  # residual

    # z1 = layer_norm(z + attended)
    d_attended = np.empty_like(d_z1)
    layer_norm_backward_into(
        d_z1, tape.z1_hat[t], tape.z1_inv_std[t], params["attention_norm.gain"], out=d_attended
    )
    _attention_step_backward(tape, grad_tape, t, weights, d_attended)

    _qkv_step_backward(tape, grad_tape, t, weights, dz)
    dz += d_attended  # residual


# --- parameter gradients over all steps ---------------------------------------


def _norm_grads(prefix, d_out, x_hat):
    """Return the gain and bias gradients of a layer norm over every row of every step.

    Overwrites ``d_out`` with ``d_out * x_hat``.
    """
    bias = sum_rows(d_out)
    return {f"{prefix}.gain": sum_rows(np.multiply(d_out, x_hat, out=d_out)), f"{prefix}.bias": bias}


def _qkv_param_grads(tape, grad_tape):
    """Return the grads of ``qkv.*`` and ``qkv_norm.*`` summed over all steps."""
    d_qkv_pre = _rows(grad_tape.d_qkv_pre)  # (S B R, Q), row means not yet removed
    weight = _rows(tape.z).T @ d_qkv_pre  # (F, S B R) @ (S B R, Q)
    bias = sum_rows(d_qkv_pre)
    grads = {
        "qkv.W": weight - weight.mean(axis=1, keepdims=True),
        "qkv.b": bias - bias.mean(),
    }
    grads.update(_norm_grads("qkv_norm", grad_tape.d_qkv, tape.qkv_hat))
    return grads


def block_param_grads(tape, grad_tape):
    """Return the block's grads by local name and one ``{"W", "b"}`` dict per MLP layer.

    Each is summed over all S steps of the tapes. Overwrites the gradient tape.
    """
    grads = _qkv_param_grads(tape, grad_tape)
    grads.update(_norm_grads("attention_norm", grad_tape.d_z1, tape.z1_hat))
    grads.update(_norm_grads("mlp_norm", grad_tape.d_out, tape.out_hat))

    mlp_grads = []
    for layer_input, d_layer in zip((tape.z1, *tape.hidden), grad_tape.d_mlp, strict=True):
        d_rows = _rows(d_layer)  # (S B R, F)
        mlp_grads.append({"W": _rows(layer_input).T @ d_rows, "b": sum_rows(d_rows)})
    return grads, mlp_grads


# --- one call -----------------------------------------------------------------


class AttentionBlockCache(NamedTuple):
    tape: BlockTape  # of one step
    weights: BlockWeights


MultiHeadCache = AttentionBlockCache


def multihead_attention_forward(z, block, num_heads, key_size):
    """Attend over the rows of z (B, R, F); return attended rows (B, R, F) and the cache.

    The qkv map, its layer norm and the heads, without the residual, the norms
    after it or the MLP.
    """
    weights = prepare_block(block, [], num_heads, key_size)
    tape = allocate_block_tape(z[None], weights)  # one step: [B, R, F] -> [1, B, R, F]
    return _attention_step_forward(tape, 0, weights), MultiHeadCache(tape, weights)


def multihead_attention_backward(d_attended, cache, key_size):
    """Return d_z (B, R, F) and the grads of ``qkv.*`` and ``qkv_norm.*``.

    ``key_size`` must be the one given to the forward call, which the cache also holds.
    """
    if key_size != cache.weights.key_size:
        raise ValueError(
            f"key_size must match the forward call's {cache.weights.key_size}, got {key_size}"
        )
    grad_tape = allocate_grad_tape(cache.tape)
    _attention_step_backward(cache.tape, grad_tape, 0, cache.weights, d_attended)
    dz = np.empty_like(d_attended)
    _qkv_step_backward(cache.tape, grad_tape, 0, cache.weights, dz)
    return dz, _qkv_param_grads(cache.tape, grad_tape)


def attention_block_forward(z, block, mlp_layers, num_heads, key_size):
    """Apply one block to rows z of shape (B, R, F); return (out (B, R, F), cache).

    ``mlp_layers`` is the list of (weight, bias) pairs of the row-wise MLP.
    """
    weights = prepare_block(block, mlp_layers, num_heads, key_size)
    tape = allocate_block_tape(z[None], weights)  # one step: [B, R, F] -> [1, B, R, F]
    block_step_forward(tape, 0, weights)
    return tape.out[0], AttentionBlockCache(tape, weights)


def attention_block_backward(d_out, cache):
    """Return d_z (B, R, F), the block's grads by local name, and one grads dict per MLP layer."""
    grad_tape = allocate_grad_tape(cache.tape)
    grad_tape.d_out[0] = d_out
    dz = np.empty_like(d_out)
    block_step_backward(cache.tape, grad_tape, 0, cache.weights, dz)
    grads, mlp_grads = block_param_grads(cache.tape, grad_tape)
    return dz, grads, mlp_grads
