"""The attention block of the Relational Memory Core.

Shapes: B batch, R rows attended over (memory slots plus the input row,
N + 1), H heads, K key size per head, V value size per head (``head_size``),
F = H * V the row width.

One block maps rows Z of shape (B, R, F) to rows of the same shape:

    qkv = layer_norm(Z @ W_qkv + b_qkv)            over the whole H * (2K + V) row
    per head h, with qkv columns grouped by head, each group [q | k | v]:
        A_h = softmax(q_h k_h^T / sqrt(K))         over the R keys, (B, R, R)
        out_h = A_h v_h                            (B, R, V)
    attended = [out_1 | ... | out_H]               (B, R, F), no output projection
    Z1 = layer_norm(Z + attended)
    Z2 = layer_norm(Z1 + mlp(Z1))                  ReLU between MLP layers, none after the last

Block parameters use local names: ``qkv.W`` (F, H(2K+V)), ``qkv.b``,
``qkv_norm.gain``/``.bias`` (H(2K+V),), ``attention_norm.*`` and
``mlp_norm.*`` (F,). The row-wise MLP, a list of (W (F, F), b (F,)) layers,
is passed in separately because the RMC shares it between its blocks. Sonnet 1
``RelationalMemory._attend_over_memory`` does the same: it builds the MLP once
before the loop over blocks, and a new qkv map and new layer norms per block.
"""

from typing import NamedTuple

import numpy as np

from models.layers import (
    LayerNormCache,
    LinearCache,
    MLPCache,
    init_layer_norm,
    init_linear,
    layer_norm_backward,
    layer_norm_forward,
    linear_backward,
    linear_forward,
    mlp_backward,
    mlp_forward,
    softmax,
    softmax_backward,
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


class MultiHeadCache(NamedTuple):
    qkv_linear: LinearCache
    qkv_norm: LayerNormCache
    q: np.ndarray  # (B, H, R, K), already scaled by K ** -0.5
    k: np.ndarray  # (B, H, R, K)
    v: np.ndarray  # (B, H, R, V)
    weights: np.ndarray  # (B, H, R, R) softmax over the last axis (keys)


class AttentionBlockCache(NamedTuple):
    heads: MultiHeadCache
    attention_norm: LayerNormCache
    mlp: MLPCache
    mlp_norm: LayerNormCache


def multihead_attention_forward(z, block, num_heads, key_size):
    """Attend over the rows of z (B, R, F); return attended rows (B, R, F) and the cache."""
    batch, rows, mem_size = z.shape
    head_size = mem_size // num_heads

    qkv, qkv_linear = linear_forward(z, block["qkv.W"], block["qkv.b"])  # (B, R, H(2K+V))
    qkv, qkv_norm = layer_norm_forward(qkv, block["qkv_norm.gain"], block["qkv_norm.bias"])

    # [B, R, H(2K+V)] -> [B, R, H, 2K+V] -> [B, H, R, 2K+V]
    qkv = qkv.reshape(batch, rows, num_heads, 2 * key_size + head_size).transpose(0, 2, 1, 3)
    q = qkv[..., :key_size] * key_size**-0.5
    k = qkv[..., key_size : 2 * key_size]
    v = qkv[..., 2 * key_size :]

    weights = softmax(q @ k.transpose(0, 1, 3, 2))  # (B, H, R, K) @ (B, H, K, R)
    attended = weights @ v  # (B, H, R, R) @ (B, H, R, V)
    # [B, H, R, V] -> [B, R, H, V] -> [B, R, F]
    attended = attended.transpose(0, 2, 1, 3).reshape(batch, rows, mem_size)
    return attended, MultiHeadCache(qkv_linear, qkv_norm, q, k, v, weights)


def multihead_attention_backward(d_attended, cache, key_size):
    """Return d_z (B, R, F) and the grads of ``qkv.*`` and ``qkv_norm.*``."""
    batch, rows, mem_size = d_attended.shape
    num_heads = cache.q.shape[1]
    head_size = mem_size // num_heads

    # [B, R, F] -> [B, R, H, V] -> [B, H, R, V]
    d_attended = d_attended.reshape(batch, rows, num_heads, head_size).transpose(0, 2, 1, 3)
    d_weights = d_attended @ cache.v.transpose(0, 1, 3, 2)  # (B, H, R, V) @ (B, H, V, R)
    dv = cache.weights.transpose(0, 1, 3, 2) @ d_attended  # (B, H, R, R) @ (B, H, R, V)
    d_logits = softmax_backward(d_weights, cache.weights)  # (B, H, R, R)
    dq = (d_logits @ cache.k) * key_size**-0.5  # (B, H, R, R) @ (B, H, R, K)
    dk = d_logits.transpose(0, 1, 3, 2) @ cache.q  # (B, H, R, R) @ (B, H, R, K)

    # [B, H, R, 2K+V] -> [B, R, H, 2K+V] -> [B, R, H(2K+V)]
    d_qkv = np.concatenate([dq, dk, dv], axis=-1).transpose(0, 2, 1, 3).reshape(batch, rows, -1)
    d_qkv, norm_grads = layer_norm_backward(d_qkv, cache.qkv_norm)
    dz, linear_grads = linear_backward(d_qkv, cache.qkv_linear)
    grads = {f"qkv.{name}": value for name, value in linear_grads.items()}
    grads.update({f"qkv_norm.{name}": value for name, value in norm_grads.items()})
    return dz, grads


def attention_block_forward(z, block, mlp_layers, num_heads, key_size):
    """Apply one block to rows z of shape (B, R, F); return (out (B, R, F), cache).

    ``mlp_layers`` is the list of (weight, bias) pairs of the row-wise MLP.
    """
    attended, heads = multihead_attention_forward(z, block, num_heads, key_size)

    # Residual and layer norm around the attention.
    z1, attention_norm = layer_norm_forward(
        z + attended, block["attention_norm.gain"], block["attention_norm.bias"]
    )

    # Residual and layer norm around the row-wise MLP.
    mlp_out, mlp = mlp_forward(z1, mlp_layers)
    out, mlp_norm = layer_norm_forward(z1 + mlp_out, block["mlp_norm.gain"], block["mlp_norm.bias"])
    return out, AttentionBlockCache(heads, attention_norm, mlp, mlp_norm)


def attention_block_backward(d_out, cache):
    """Return d_z (B, R, F), the block's grads by local name, and one grads dict per MLP layer."""
    key_size = cache.heads.q.shape[-1]
    grads = {}

    # out = layer_norm(z1 + mlp(z1))
    d_sum, local = layer_norm_backward(d_out, cache.mlp_norm)
    grads.update({f"mlp_norm.{name}": value for name, value in local.items()})
    d_z1, mlp_grads = mlp_backward(d_sum, cache.mlp)
    d_z1 = d_z1 + d_sum

    # z1 = layer_norm(z + attended)
    d_sum, local = layer_norm_backward(d_z1, cache.attention_norm)
    grads.update({f"attention_norm.{name}": value for name, value in local.items()})
    dz, attention_grads = multihead_attention_backward(d_sum, cache.heads, key_size)
    grads.update(attention_grads)
    return dz + d_sum, grads, mlp_grads
