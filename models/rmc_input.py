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

import numpy as np

from models.layers import sum_rows


def through_input(params):
    """Return True when the gates' input term is cheaper taken from x, that is when D < F."""
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


def _stacked_projection(params):
    """Return A = [W_in; b_in] of shape (D + 1, F)."""
    return np.vstack([params["input_proj.W"], params["input_proj.b"]])


def input_term(x, params, weight):
    """Return ``u @ weight`` for a weight (F, n), through the input, time-major (T, B, n).

    Only when ``through_input``: computed as ``x1 @ (A @ weight)``.
    """
    batch, steps, _ = x.shape
    out = _extended_rows(x) @ (_stacked_projection(params) @ weight)  # (T B, D + 1) @ ...
    return out.reshape(steps, batch, -1)  # (T B, n) -> (T, B, n)


def gate_input_term(x, u, params, extra_bias, scale):
    """Return ``scale * (u @ W_gx + b_gx + extra_bias)``, time-major (T, B, 2G).

    ``u`` is the input rows, time-major (T, B, F). ``scale`` is folded into
    the small weight and bias, so it costs no pass over the result.
    """
    weight = params["gate_input.W"] * scale  # (F, 2G)
    bias = (params["gate_input.b"] + extra_bias) * scale
    if through_input(params):
        gate_x = _extended_rows(x) @ (_stacked_projection(params) @ weight)  # (T B, D + 1) @ ...
    else:
        gate_x = u.reshape(-1, weight.shape[0]) @ weight  # [T, B, F] -> (T B, F) @ (F, 2G)
    gate_x += bias
    return gate_x.reshape(u.shape[0], u.shape[1], -1)  # (T B, 2G) -> (T, B, 2G)


def input_path_backward(x, u, d_u, d_gate_x, params, deferred=None):
    """Return dx (B, T, D), the grads of ``input_proj.*`` and ``gate_input.*``, and a third value.

    ``u`` is the input rows, time-major (T, B, F), ``d_u`` (T, B, F) the
    gradient at them from the blocks, and ``d_gate_x`` (T, B, 2G) that at the
    gates' input term, or None without gates. ``deferred``, only when
    ``through_input``, is a pair (d_out (T, B, n), weight (F, n)) for a map
    ``input_term(x, params, weight)``: its share ``d_out @ weight.T`` of the
    gradient at u, which d_u leaves out, is taken here through the input. The
    third value is then that map's weight gradient ``u^T d_out`` (F, n), else None.
    """
    batch, steps, input_size = x.shape
    w_in = params["input_proj.W"]
    d_u = d_u.reshape(-1, w_in.shape[1])  # (T B, F), a copy when d_u is a strided view
    grads = {}
    if d_gate_x is None or not through_input(params):
        if d_gate_x is not None:
            d_gates, w_gx = d_gate_x.reshape(-1, d_gate_x.shape[-1]), params["gate_input.W"]
            grads["gate_input.W"] = u.reshape(-1, w_in.shape[1]).T @ d_gates  # (F, T B) @ ...
            grads["gate_input.b"] = sum_rows(d_gates)
            d_u = d_u + d_gates @ w_gx.T  # (T B, 2G) @ (2G, F)
        d_stacked = _extended_rows(x).T @ d_u  # (D + 1, T B) @ (T B, F)
        dx = d_u @ w_in.T  # (T B, F) @ (F, D)
    else:
        d_gates, w_gx = d_gate_x.reshape(-1, d_gate_x.shape[-1]), params["gate_input.W"]
        rows = _extended_rows(x)
        x1_t_d_gates = rows.T @ d_gates  # (D + 1, T B) @ (T B, 2G)
        # u^T d_gates == A^T (x1^T d_gates); the ones column gives the bias gradient.
        grads["gate_input.W"] = _stacked_projection(params).T @ x1_t_d_gates
        grads["gate_input.b"] = x1_t_d_gates[input_size].copy()
        d_stacked = rows.T @ d_u  # (D + 1, T B) @ (T B, F)
        d_stacked += x1_t_d_gates @ w_gx.T  # (D + 1, 2G) @ (2G, F)
        dx = d_u @ w_in.T  # (T B, F) @ (F, D)
        dx += d_gates @ (w_in @ w_gx).T  # (T B, 2G) @ (2G, D)
    deferred_weight_grad = None
    if deferred is not None:
        rows = _extended_rows(x)
        deferred_weight_grad = _add_deferred(deferred, rows, params, dx, d_stacked)
    grads["input_proj.W"] = d_stacked[:input_size]
    grads["input_proj.b"] = d_stacked[input_size]
    # (T B, D) -> [T, B, D] -> [B, T, D]
    return dx.reshape(steps, batch, -1).transpose(1, 0, 2), grads, deferred_weight_grad


def _add_deferred(deferred, rows, params, dx, d_stacked):
    """Add the share of ``deferred`` = (d_out (T, B, n), weight (F, n)) to dx and d_stacked.

    ``rows`` is x1 (T B, D + 1), dx time-major rows (T B, D) and d_stacked
    (D + 1, F). Each step of d_out may be a slice of a larger array, so the
    products run per step and copy nothing. Returns the weight's gradient
    from these rows, ``u^T d_out`` (F, n).
    """
    d_out, weight = deferred
    steps, batch, _ = d_out.shape
    rows = rows.reshape(steps, batch, -1)  # (T B, D + 1) -> (T, B, D + 1)
    # x1^T d_out summed over steps: (T, D + 1, B) @ (T, B, n), then the sum over T
    x1_t_d_out = np.matmul(rows.transpose(0, 2, 1), d_out).sum(axis=0)
    d_stacked += x1_t_d_out @ weight.T  # (D + 1, n) @ (n, F)
    # (T, B, n) @ (n, D), added to dx: (T B, D) -> (T, B, D)
    dx.reshape(steps, batch, -1)[...] += np.matmul(d_out, (params["input_proj.W"] @ weight).T)
    return _stacked_projection(params).T @ x1_t_d_out  # u^T d_out = A^T (x1^T d_out)
