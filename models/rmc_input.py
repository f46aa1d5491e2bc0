"""The input path of the Relational Memory Core, for all steps of a sequence at once.

Shapes: B batch, T steps, D input size, F memory width, 2G the width of the
gates' pre-activations [input | forget].

The input enters the core through two maps that do not depend on the memory:

    u = x @ W_in + b_in                 (B, T, F), the input row of every step
    gate_x = u @ W_gx + b_gx            (B, T, 2G), the gates' input term

When D < F, the second product is cheaper taken through the input. With x
extended by a column of ones, x1 = [x | 1] (B T, D + 1), and the input
projection stacked as A = [W_in; b_in] (D + 1, F), u = x1 @ A and

    u @ W_gx == x1 @ (A @ W_gx)         (B T, D + 1) @ (D + 1, 2G)

instead of (B T, F) @ (F, 2G). The backward takes the same route: the
gates' gradient reaches x, W_in and b_in through x1^T d_gate_x, of shape
(D + 1, 2G). ``input_term`` and the ``deferred`` argument of
``input_path_backward`` do the same for any other map of u, which models.rmc
uses for the first block's qkv map of the input rows. On the ``nth-farthest``
configuration of bench/compare.py (D = 40, F = 256, 2G = 512, Q = 768), the
two bring a training step from 6.89 to 6.13 GFLOP (bench/flops.py). When
D >= F, the maps are taken in the order written above.

Gradients arrive time-major: d_u (T, B, F) from the blocks and d_gate_x
(T, B, 2G) from the gates, so the rows below are time-major too, (T B, ...).
"""

from typing import NamedTuple

import numpy as np

from models.layers import sum_rows


class InputRows(NamedTuple):
    """The input of one pass as the maps of this module take it, built by ``input_rows``."""

    rows: np.ndarray  # x1 (T B, D + 1): x time-major, with a column of ones
    stacked: np.ndarray  # A = [W_in; b_in] (D + 1, F)
    shape: tuple  # (B, T, D), the shape of x


def input_rows(x, params):
    """Return the ``InputRows`` of x (B, T, D) and the input projection of ``params``."""
    stacked = np.vstack([params["input_proj.W"], params["input_proj.b"]])
    return InputRows(_extended_rows(x), stacked, x.shape)


def input_projection(inputs):
    """Return the input rows u = x1 @ A of every step, time-major (T, B, F)."""
    batch, steps, _ = inputs.shape
    return (inputs.rows @ inputs.stacked).reshape(steps, batch, -1)  # (T B, F) -> (T, B, F)


def through_input(params):
    """Return True when maps of u are cheaper taken from x, that is when D < F."""
    input_size, mem_size = params["input_proj.W"].shape
    return input_size < mem_size


def _extended_rows(x):
    """Return x (B, T, D) as time-major rows with a column of ones, x1 (T B, D + 1)."""
    batch, steps, input_size = x.shape
    rows = np.empty((steps * batch, input_size + 1), dtype=x.dtype)
    # [B, T, D] -> [T, B, D] -> (T B, D)
    rows[:, :input_size] = x.transpose(1, 0, 2).reshape(-1, input_size)
    rows[:, input_size] = 1.0
    return rows


def input_term(inputs, weight):
    """Return ``u @ weight`` for a weight (F, n), through the input, time-major (T, B, n).

    Only when ``through_input``: computed as ``x1 @ (A @ weight)``.
    """
    batch, steps, _ = inputs.shape
    out = inputs.rows @ (inputs.stacked @ weight)  # (T B, D + 1) @ (D + 1, n)
    return out.reshape(steps, batch, -1)  # (T B, n) -> (T, B, n)


def gate_input_term(inputs, u, params, extra_bias, scale):
    """Return ``scale * (u @ W_gx + b_gx + extra_bias)``, time-major (T, B, 2G).

    ``u`` is the input rows, time-major (T, B, F). ``scale`` is folded into
    the small weight and bias, so it costs no pass over the result.
    """
    weight = params["gate_input.W"] * scale  # (F, 2G)
    bias = (params["gate_input.b"] + extra_bias) * scale
    if through_input(params):
        gate_x = inputs.rows @ (inputs.stacked @ weight)  # (T B, D + 1) @ (D + 1, 2G)
    else:
        gate_x = u.reshape(-1, weight.shape[0]) @ weight  # [T, B, F] -> (T B, F) @ (F, 2G)
    gate_x += bias
    return gate_x.reshape(u.shape[0], u.shape[1], -1)  # (T B, 2G) -> (T, B, 2G)


def input_path_backward(inputs, u, d_u, d_gate_x, params, deferred=None, input_grad=True):
    """Return dx (B, T, D), the grads of ``input_proj.*`` and ``gate_input.*``, and a third value.

    ``u`` is the input rows, time-major (T, B, F), ``d_u`` (T, B, F) the
    gradient at them from the blocks, and ``d_gate_x`` (T, B, 2G) that at the
    gates' input term, or None without gates. ``deferred``, only when
    ``through_input``, is a pair (d_out (T, B, n), weight (F, n)) for a map
    ``input_term(inputs, weight)``: its share ``d_out @ weight.T`` of the
    gradient at u, which d_u leaves out, is taken here through the input. The
    third value is then that map's weight gradient ``u^T d_out`` (F, n), else
    None. dx is None when ``input_grad`` is False.
    """
    batch, steps, input_size = inputs.shape
    w_in = inputs.stacked[:input_size]  # W_in as the forward pass used it, (D, F)
    rows = inputs.rows  # x1 (T B, D + 1)
    d_u = d_u.reshape(-1, w_in.shape[1])  # (T B, F), a copy when d_u is a strided view
    grads = {}
    gates_through_input = d_gate_x is not None and through_input(params)
    if d_gate_x is not None:
        d_gates = d_gate_x.reshape(-1, d_gate_x.shape[-1])  # (T B, 2G)
        grads["gate_input.b"] = sum_rows(d_gates)
        if not gates_through_input:
            grads["gate_input.W"] = u.reshape(-1, w_in.shape[1]).T @ d_gates  # (F, T B) @ ...
            d_u = d_u + d_gates @ params["gate_input.W"].T  # (T B, 2G) @ (2G, F)

    d_stacked = rows.T @ d_u  # (D + 1, T B) @ (T B, F): the grads of A = [W_in; b_in]
    dx = d_u @ w_in.T if input_grad else None  # (T B, F) @ (F, D)
    if gates_through_input:
        gate_weight = params["gate_input.W"]
        grads["gate_input.W"] = _map_backward(inputs, d_gates, gate_weight, dx, d_stacked)
    deferred_weight_grad = None
    if deferred is not None:
        deferred_weight_grad = _map_backward(inputs, *deferred, dx, d_stacked)

    grads["input_proj.W"] = d_stacked[:input_size]
    grads["input_proj.b"] = d_stacked[input_size]
    if dx is not None:
        dx = dx.reshape(steps, batch, -1).transpose(1, 0, 2)  # (T B, D) -> [T, B, D] -> [B, T, D]
    return dx, grads, deferred_weight_grad


def _map_backward(inputs, d_out, weight, dx, d_stacked):
    """Backpropagate a map ``u @ weight`` taken through the input; return ``u^T d_out`` (F, n).

    ``inputs`` are the pass's ``InputRows``. ``d_out``, the map's gradient, is (T B, n), or
    (T, B, n) when each step is a slice of a larger array. In that case the
    products run per step, so nothing is copied. The map's share is added to
    d_stacked (D + 1, F) and, unless it is None, to dx (T B, D).
    """
    rows, stacked = inputs.rows, inputs.stacked  # x1 (T B, D + 1) and A (D + 1, F)
    through = None if dx is None else (stacked[:-1] @ weight).T  # W_in @ weight: (n, D)
    if d_out.ndim == 2:
        x1_t_d_out = rows.T @ d_out  # (D + 1, T B) @ (T B, n)
        if dx is not None:
            dx += d_out @ through  # (T B, n) @ (n, D)
    else:
        steps, batch, _ = d_out.shape
        per_step = rows.reshape(steps, batch, -1).transpose(0, 2, 1)  # (T, D + 1, B)
        x1_t_d_out = np.matmul(per_step, d_out).sum(axis=0)  # summed over the T steps
        if dx is not None:
            # (T, B, n) @ (n, D), added to dx: (T B, D) -> (T, B, D)
            dx.reshape(steps, batch, -1)[...] += np.matmul(d_out, through)
    d_stacked += x1_t_d_out @ weight.T  # (D + 1, n) @ (n, F)
    return stacked.T @ x1_t_d_out  # u^T d_out = A^T (x1^T d_out)
