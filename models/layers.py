"""Differentiable building blocks as mirrored forward/backward pairs.

Every layer has ``*_forward(inputs, params...) -> (out, cache)`` and
``*_backward(d_out, cache) -> (d_inputs, grads)``, where ``grads`` is a dict
keyed by the layer's local parameter names (``"W"``, ``"b"``, ``"gain"``,
``"bias"``). Models prefix those names to build their flat parameter dict.

Layers act on the last axis and accept any number of leading axes, written
``...`` below: ``(..., D_in)`` for an input of width ``D_in``.
"""

import functools
from typing import NamedTuple

import numpy as np

LAYER_NORM_EPS = 1e-5  # the default of Sonnet 1 LayerNorm

# np.dot without NumPy's __array_function__ dispatch, which runs a Python
# function before every call of np.dot: 0.5 against 1.0 microseconds for
# (128, 32) @ (32, 1) on the benchmark machine. A training step of the
# ``tracking`` RMC in bench/compare.py calls it about 240 times.
# ``_implementation`` is NumPy's documented attribute for the function behind
# the dispatch, and np.dot itself is the fallback where a NumPy version lacks it.
dot = getattr(np.dot, "_implementation", np.dot)


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
    grads = {"W": x_rows.T @ d_rows, "b": sum_rows(d_rows)}  # (D_in, rows) @ (rows, D_out)
    return dx, grads


# --- layer norm ---------------------------------------------------------------


class LayerNormCache(NamedTuple):
    x_hat: np.ndarray  # (..., D) normalised input
    inv_std: np.ndarray  # (..., 1)
    gain: np.ndarray  # (D,)


@functools.lru_cache(maxsize=256)
def constant_array(shape, value, dtype):
    """Return a read-only array of ``shape`` filled with ``value``, kept for reuse.

    As an operand of the other operand's shape it is faster than a broadcast
    scalar: NumPy's binary loops are several times slower for some functions,
    such as ``np.maximum``, when one operand is a broadcast scalar.
    """
    array = np.full(shape, value, dtype=dtype)
    array.flags.writeable = False
    return array


def scalar(value, dtype):
    """Return ``value`` as a read-only 0-d array of ``dtype``.

    As an operand it skips the conversion of a Python float that NumPy makes
    in every call, about 0.3 microseconds on the benchmark machine.
    """
    return constant_array((), value, dtype)


def row_mean(x):
    """Mean of x (..., D) over its last axis, of shape (..., 1).

    One BLAS matrix product with a column of 1 / D: several times faster than
    ``x.mean(axis=-1)`` on the short rows of these models, where NumPy's
    reduction loop overhead dominates.
    """
    width = x.shape[-1]
    column = constant_array((width, 1), 1.0 / width, x.dtype)  # (D, 1)
    if x.ndim == 2:
        return dot(x, column)  # (n, D) @ (D, 1), which dot takes faster than matmul
    return dot(x.reshape(-1, width), column).reshape(*x.shape[:-1], 1)


def sum_rows(x):
    """Sum of x (..., D) over every axis but the last, of shape (D,).

    A matrix-vector product with a vector of ones, two to four times faster
    than ``x.sum(axis=0)`` on the tall arrays of whole-sequence gradients.
    """
    rows = x.reshape(-1, x.shape[-1])  # (n, D)
    return dot(constant_array(rows.shape[:1], 1.0, x.dtype), rows)  # (n,) @ (n, D)


def sum_middle(x):
    """Sum of x (S, N, M) over its middle axis, of shape (S, M).

    One batched product (1, N) @ (N, M) per leading index, which is faster
    than ``x.sum(axis=1)`` for the short middle axes of the models' slot sums.
    """
    ones = constant_array((1, x.shape[1]), 1.0, x.dtype)  # (1, N)
    return np.matmul(ones, x)[:, 0]  # (S, 1, M) -> (S, M)


# On the benchmark machine, with the OpenBLAS 0.3.31 of NumPy's wheel, float32
# products (D, K) @ (K, M) with D M K up to 1e6 ran at about 105 GFLOP/s, and
# from D M K = 2**20 on at 72 to 88, for D, M of 32 and 64 (``timeit``). The
# limit between the two is measured, not read from OpenBLAS.
SMALL_PRODUCT = 10**6


def step_products(a, b):
    """Return the sum over steps of a[t]^T b[t], (D, M), for a (S, n, D) and b (S, n, M).

    The weight gradients of the recurrent cores sum such products over the
    steps of a sequence. It takes one product per step and sums them when a
    or b is a strided view. It does the same when each step's product is
    small (D M n at most ``SMALL_PRODUCT``) and the S products (S, D, M) take
    no more memory than a and b. Otherwise, or with no steps, it takes one
    product over all S n rows. On the ``tracking`` RMC of bench/compare.py, the qkv weight's
    gradient, (32, 11 x 160) @ (11 x 160, 96), took 104 microseconds as a
    product per step against 130 as one product (``timeit``).
    """
    steps, rows, width = a.shape
    out_width = b.shape[-1]
    whole = a.flags.c_contiguous and b.flags.c_contiguous  # all rows as one matrix, no copy
    small = width * out_width * rows <= SMALL_PRODUCT
    compact = width * out_width <= rows * (width + out_width)  # (S, D, M) within a's and b's size
    if steps == 0 or (whole and not (small and compact)):
        return a.reshape(-1, width).T @ b.reshape(-1, out_width)  # (D, S n) @ (S n, M)
    products = np.matmul(a.transpose(0, 2, 1), b)  # (S, D, n) @ (S, n, M)
    ones = constant_array((steps,), 1.0, products.dtype)
    return dot(ones, products.reshape(steps, -1)).reshape(width, -1)  # (S,) @ (S, D M)


SQUARES_CHUNK = 2**16  # entries per dot product of sum_of_squares


def sum_of_squares(array):
    """Return the sum of the squares of ``array``'s entries as a Python float.

    One BLAS dot product per chunk of at most ``SQUARES_CHUNK`` entries in the
    array's dtype, the chunks added in float64: no product accumulates more
    than that many entries, and no float64 copy of the array is made.
    """
    flat = array.reshape(-1)
    return sum(
        float(dot(flat[start : start + SQUARES_CHUNK], flat[start : start + SQUARES_CHUNK]))
        for start in range(0, flat.size, SQUARES_CHUNK)
    )


def repeated_rows_dot(rows, weight, slots, out):
    """Write rows @ weight into out (N B, M) for slot-major rows (N B, D) repeated over B.

    Every slot's B rows are the same row, so each slot's product is taken once,
    (N, D) @ (D, M), and copied to its B rows.
    """
    batch = rows.shape[0] // slots
    once = dot(rows.reshape(slots, batch, -1)[:, 0], weight)  # [N B, D] -> [N, B, D] -> (N, D)
    out.reshape(slots, batch, -1)[...] = once[:, None]  # (N, M) -> [N, 1, M], over [N, B, M]


def repeated_rows_grad(rows, d_out, slots):
    """Return rows^T d_out (D, M) for slot-major rows (N B, D) repeated over B.

    Each slot's row is taken once, against its gradient d_out (N B, M) summed over B.
    """
    batch = rows.shape[0] // slots
    once = rows.reshape(slots, batch, -1)[:, 0]  # [N B, D] -> [N, B, D] -> (N, D)
    return once.T @ sum_middle(d_out.reshape(slots, batch, -1))  # [N B, M] -> [N, B, M]


_NORM_CONSTANTS = {}  # (D, dtype) -> the pair that norm_constants returns


def norm_constants(width, dtype):
    """Return the (D, 1) column of 1 / D that takes row means, and the epsilon, as arrays.

    The layer norms run on the rows of every step, and a dictionary lookup
    costs them less than ``row_mean`` and ``scalar`` with their own caches.
    A caller that runs many layer norms of one width looks the pair up once
    and passes it as their ``constants``. Both arrays are read-only.
    """
    try:
        return _NORM_CONSTANTS[width, dtype]
    except KeyError:
        pair = (constant_array((width, 1), 1.0 / width, dtype), scalar(LAYER_NORM_EPS, dtype))
        _NORM_CONSTANTS[width, dtype] = pair
        return pair


def layer_norm_into(x, gain, bias, out, x_hat, inv_std, centred=False, constants=None):
    """Layer norm of x (..., D) written into preallocated arrays.

    ``gain`` and ``bias`` are (D,) or already tiled to the shape of x, which
    NumPy applies faster (see ``models.attention.BlockWeights``). Writes the
    output to ``out`` and the normalised input to ``x_hat``, both
    (..., D), and the inverse standard deviation to ``inv_std``: what
    ``layer_norm_backward_into`` needs. None of them may share memory with x.
    ``inv_std`` is (..., 1), or (..., D) to hold each row's value repeated
    over the row. NumPy multiplies two arrays of one shape faster than it
    broadcasts a column over the rows, so when the backward pass reuses it,
    the repeated form pays for its copy (see ``models.attention.BlockTape``).
    With ``centred=True`` the caller guarantees that every row of x
    already has mean zero, as the output of a linear map whose weight and bias
    have zero row means does, and the mean is not subtracted again.
    ``constants`` is the pair of ``norm_constants`` for D, looked up when None.
    """
    column, eps = constants or norm_constants(x.shape[-1], x.dtype)
    centred_x = x if centred else np.subtract(x, dot(x, column), out=x_hat)
    np.multiply(centred_x, centred_x, out=out)  # squares, in out's storage until the end
    column_std = inv_std if inv_std.shape[-1] == 1 else None  # None: a new (..., 1) array
    column_std = np.add(dot(out, column), eps, out=column_std)  # variance + eps
    np.sqrt(column_std, out=column_std)
    np.reciprocal(column_std, out=column_std)
    if column_std is not inv_std:
        inv_std[...] = column_std  # repeated over the row, (..., D)
    np.multiply(centred_x, inv_std, out=x_hat)
    np.multiply(x_hat, gain, out=out)
    out += bias


def layer_norm_backward_into(d_out, x_hat, inv_std, gain, out, centre=True, constants=None):
    """Write the gradient with respect to the input of a layer norm into ``out`` (..., D).

    ``gain`` is (D,) or tiled to the shape of ``d_out``, and ``inv_std`` is
    (..., 1) or repeated over the row, as ``layer_norm_into`` wrote it. Only the input
    gradient: the gain and bias gradients are sums over rows of
    ``d_out * x_hat`` and ``d_out``, left to the caller so that it can take
    them over many steps at once. With ``centre=False`` the row mean of the
    gradient is not removed. The result is then the gradient only after a
    projection onto zero-mean rows, which a following product ``out @ W.T``
    with a weight W of zero row means applies for free. ``constants`` as for
    ``layer_norm_into``.
    """
    # Through the normalisation: remove the components along x_hat and along the mean.
    column, _ = constants or norm_constants(out.shape[-1], out.dtype)
    np.multiply(d_out, gain, out=out)  # d_x_hat
    mean_d_x_hat = dot(out * x_hat, column)
    if centre:
        out -= dot(out, column)
    out -= x_hat * mean_d_x_hat
    out *= inv_std


def layer_norm_forward(x, gain, bias):
    """Normalise each row of x over its last axis, then scale by gain and shift by bias."""
    out, x_hat = np.empty_like(x), np.empty_like(x)
    inv_std = np.empty((*x.shape[:-1], 1), dtype=x.dtype)
    layer_norm_into(x, gain, bias, out, x_hat, inv_std)
    return out, LayerNormCache(x_hat, inv_std, gain)


def layer_norm_backward(d_out, cache):
    grads = {"gain": sum_rows(d_out * cache.x_hat), "bias": sum_rows(d_out)}
    dx = np.empty_like(d_out)
    layer_norm_backward_into(d_out, cache.x_hat, cache.inv_std, cache.gain, dx)
    return dx, grads


# --- activations --------------------------------------------------------------
# The cache of each activation is what its derivative needs: the mask for ReLU,
# the output for sigmoid and tanh.


def relu_forward(x):
    mask = x > 0
    return x * mask, mask


def relu_backward(d_out, mask):
    return d_out * mask


def sigmoid_of_halved(half, one=None, one_half=None):
    """Overwrite ``half`` = x / 2 with sigmoid(x) = 0.5 * (1 + tanh(x / 2)).

    The tanh form equals 1 / (1 + exp(-x)), and tanh cannot overflow.
    ``one`` and ``one_half`` are the ``scalar`` 1.0 and 0.5 in the dtype of
    ``half``, looked up when None.
    """
    np.tanh(half, out=half)
    half += scalar(1.0, half.dtype) if one is None else one
    half *= scalar(0.5, half.dtype) if one_half is None else one_half


def sigmoid_in_place(x):
    """Overwrite x with sigmoid(x); return x."""
    x *= 0.5
    sigmoid_of_halved(x)
    return x


def sigmoid_forward(x):
    out = np.multiply(x, 0.5)
    sigmoid_of_halved(out)
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
