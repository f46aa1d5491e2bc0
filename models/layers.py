"""Differentiable building blocks as mirrored forward/backward pairs.

Every layer has ``*_forward(inputs, params...) -> (out, cache)`` and
``*_backward(d_out, cache) -> (d_inputs, grads)``, where ``grads`` is a dict
keyed by the layer's local parameter names (``"W"``, ``"b"``, ``"gain"``,
``"bias"``). Models prefix those names to build their flat parameter dict.

Layers act on the last axis and accept any number of leading axes, written
``...`` below: ``(..., D_in)`` for an input of width ``D_in``.
"""

from typing import NamedTuple

import numpy as np

LAYER_NORM_EPS = 1e-5  # the default of Sonnet 1 LayerNorm


def init_linear(rng, fan_in, fan_out, dtype):
    """Draw a weight of shape (fan_in, fan_out) from N(0, 1/fan_in) and a zero bias."""
    weight = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
    return weight.astype(dtype), np.zeros(fan_out, dtype=dtype)


def init_layer_norm(width, dtype):
    """Return a layer norm gain of ones and bias of zeros, each of shape (width,)."""
    return np.ones(width, dtype=dtype), np.zeros(width, dtype=dtype)


# --- linear -------------------------------------------------------------------


class LinearCache(NamedTuple):
    x: np.ndarray  # (..., D_in)
    weight: np.ndarray  # (D_in, D_out)


def linear_forward(x, weight, bias):
    """Compute ``x @ weight + bias`` for x of shape (..., D_in)."""
    d_in, d_out = weight.shape
    out = x.reshape(-1, d_in) @ weight + bias  # (rows, D_in) @ (D_in, D_out)
    return out.reshape(*x.shape[:-1], d_out), LinearCache(x, weight)


def linear_backward(d_out, cache):
    d_in, d_out_width = cache.weight.shape
    d_rows = d_out.reshape(-1, d_out_width)  # (rows, D_out)
    x_rows = cache.x.reshape(-1, d_in)  # (rows, D_in)
    dx = (d_rows @ cache.weight.T).reshape(cache.x.shape)  # (rows, D_out) @ (D_out, D_in)
    grads = {"W": x_rows.T @ d_rows, "b": d_rows.sum(axis=0)}  # (D_in, rows) @ (rows, D_out)
    return dx, grads


# --- layer norm ---------------------------------------------------------------


class LayerNormCache(NamedTuple):
    x_hat: np.ndarray  # (..., D) normalised input
    inv_std: np.ndarray  # (..., 1)
    gain: np.ndarray  # (D,)


def layer_norm_forward(x, gain, bias):
    """Normalise each row of x over its last axis, then scale by gain and shift by bias."""
    # sum * (1 / width) instead of mean: the same value without np.mean's Python overhead.
    inv_width = 1.0 / x.shape[-1]
    centred = x - x.sum(axis=-1, keepdims=True) * inv_width
    variance = (centred * centred).sum(axis=-1, keepdims=True) * inv_width
    inv_std = 1.0 / np.sqrt(variance + LAYER_NORM_EPS)
    x_hat = centred * inv_std
    return x_hat * gain + bias, LayerNormCache(x_hat, inv_std, gain)


def layer_norm_backward(d_out, cache):
    width = d_out.shape[-1]
    grads = {
        "gain": (d_out * cache.x_hat).reshape(-1, width).sum(axis=0),
        "bias": d_out.reshape(-1, width).sum(axis=0),
    }

    # Through the normalisation: remove the components along the mean and along x_hat.
    d_x_hat = d_out * cache.gain
    mean_d = d_x_hat.sum(axis=-1, keepdims=True) * (1.0 / width)
    mean_d_x_hat = (d_x_hat * cache.x_hat).sum(axis=-1, keepdims=True) * (1.0 / width)
    dx = cache.inv_std * (d_x_hat - mean_d - cache.x_hat * mean_d_x_hat)
    return dx, grads


# --- activations --------------------------------------------------------------
# The cache of each activation is what its derivative needs: the mask for ReLU,
# the output for sigmoid and tanh.


def relu_forward(x):
    mask = x > 0
    return x * mask, mask


def relu_backward(d_out, mask):
    return d_out * mask


def sigmoid_forward(x):
    # 0.5 * (1 + tanh(x / 2)) equals 1 / (1 + exp(-x)) and never overflows.
    out = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out, out


def sigmoid_backward(d_out, out):
    return d_out * out * (1.0 - out)


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward(d_out, out):
    return d_out * (1.0 - out * out)


def softmax(logits):
    """Softmax over the last axis, shifted by the row maximum for stability."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def softmax_backward(d_out, probs):
    """Gradient with respect to the logits, given the softmax output ``probs``."""
    return probs * (d_out - (d_out * probs).sum(axis=-1, keepdims=True))


# --- MLP ----------------------------------------------------------------------


class MLPCache(NamedTuple):
    linear: list[LinearCache]  # one per layer
    relu_masks: list[np.ndarray]  # one per layer except the last


def mlp_forward(x, layers):
    """Apply linear layers with ReLU between them and none after the last.

    Args:
        x: input of shape (..., D_in).
        layers: list of (weight, bias) pairs, the first weight of shape (D_in, D_1).
    """
    linear_caches, relu_masks = [], []
    out = x
    for index, (weight, bias) in enumerate(layers):
        out, cache = linear_forward(out, weight, bias)
        linear_caches.append(cache)
        if index < len(layers) - 1:
            out, mask = relu_forward(out)
            relu_masks.append(mask)
    return out, MLPCache(linear_caches, relu_masks)


def mlp_backward(d_out, cache):
    """Return dx and a list with one ``{"W", "b"}`` grads dict per layer, in layer order."""
    grads = [None] * len(cache.linear)
    d = d_out
    for index in reversed(range(len(cache.linear))):
        if index < len(cache.linear) - 1:
            d = relu_backward(d, cache.relu_masks[index])
        d, grads[index] = linear_backward(d, cache.linear[index])
    return d, grads
