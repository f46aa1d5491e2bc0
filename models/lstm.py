"""LSTM baseline with backpropagation through time.

Shapes: B batch, T steps, D input size, U hidden units (``hidden_size``).

Per step, with ``[x_t, h_{t-1}]`` of shape (B, D + U) and one fused weight
``lstm.W`` of shape (D + U, 4U):

    a = [x_t, h_{t-1}] @ W + b                   split as [i | f | o | g]
    i = sigmoid(a_i)   f = sigmoid(a_f)   o = sigmoid(a_o)   g = tanh(a_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

``h_0 = c_0 = 0``. The forget-gate slice of ``lstm.b`` starts at 1, the rest
at 0. The per-step features passed to the readout are ``h_t``.

Implementation: the input term ``x_t @ W[:D] + b`` of every step is one
matmul before the loop, so a step multiplies only ``h_{t-1} @ W[D:]``. The
states and gates of all steps are written in place to an ``LSTMTape`` with a
leading time axis, gate-major (4, B, U) per step so that each gate is one
contiguous block. The backward pass through time computes only the gradients
at the gate pre-activations, and the weight gradients are then one matmul
over all steps at once.

The sigmoid is computed as ``0.5 * (1 + tanh(a / 2))``. Halving the i, f and
o columns of W and b before the products is exact in binary floating point,
so one tanh over all four gates serves the three sigmoids and the candidate.
"""

import dataclasses
from typing import NamedTuple

import numpy as np

from models.layers import init_linear, scalar, step_products, sum_rows
from models.readout import ModelConfig, RecurrentModel


@dataclasses.dataclass(frozen=True)
class LSTMConfig(ModelConfig):
    hidden_size: int = 32


class LSTMTape(NamedTuple):
    """States and gates of an LSTM over T steps, time-major, written by ``lstm_forward``."""

    x: np.ndarray  # (T, B, D) inputs
    h: np.ndarray  # (T + 1, B, U) hidden states, h[0] the initial one
    c: np.ndarray  # (T + 1, B, U) cell states, c[0] the initial one
    gates: np.ndarray  # (T, 4, B, U) activations i, f, o, g
    tanh_c: np.ndarray  # (T, B, U) tanh of c[1:]


LSTMStepCache = LSTMTape  # the cache of ``lstm_step_forward``: a tape of one step


def _gate_major(weight, units):
    """Return the (U_in, 4U) weight as (4, U_in, U), one (U_in, U) matrix per gate."""
    return weight.reshape(weight.shape[0], 4, units).transpose(1, 0, 2).copy()


def lstm_forward(x, weight, bias, h0=None, c0=None, empty=np.empty):
    """Run the LSTM over x of shape (B, T, D); return the filled ``LSTMTape``.

    ``h0`` and ``c0`` (B, U) default to zeros. ``empty(shape, dtype)`` allocates
    the tape's arrays, ``np.empty`` or ``PoolLease.empty``.
    """
    batch, steps, input_size = x.shape
    units = weight.shape[1] // 4
    dtype = weight.dtype
    tape = LSTMTape(
        x=np.ascontiguousarray(x.transpose(1, 0, 2)),  # [B, T, D] -> [T, B, D]
        h=empty((steps + 1, batch, units), dtype),
        c=empty((steps + 1, batch, units), dtype),
        gates=empty((steps, 4, batch, units), dtype),
        tanh_c=empty((steps, batch, units), dtype),
    )
    tape.h[0] = 0.0 if h0 is None else h0
    tape.c[0] = 0.0 if c0 is None else c0

    # Halve the columns of the three sigmoid gates: exact, see the module docstring.
    column_scale = np.repeat(np.array([0.5, 0.5, 0.5, 1.0], dtype=dtype), units)
    weight, bias = weight * column_scale, bias * column_scale

    # The input term of every step at once: (T B, D) @ (D, 4U) -> [T, B, 4, U] -> [T, 4, B, U]
    x_gates = tape.x.reshape(-1, input_size) @ weight[:input_size]
    x_gates += bias
    x_gates = x_gates.reshape(steps, batch, 4, units).transpose(0, 2, 1, 3).copy()
    weight_h = _gate_major(weight[input_size:], units)  # (4, U, U)

    one, half = scalar(1.0, dtype), scalar(0.5, dtype)
    for t in range(steps):
        a = tape.gates[t]  # (4, B, U)
        np.matmul(tape.h[t], weight_h, out=a)  # (B, U) @ (4, U, U), one product per gate
        a += x_gates[t]
        np.tanh(a, out=a)
        sigmoids = a[:3]  # [i, f, o] = 0.5 * (1 + tanh(a / 2))
        sigmoids += one
        sigmoids *= half
        i, f, o, g = a

        c = np.multiply(f, tape.c[t], out=tape.c[t + 1])
        c += i * g
        tanh_c = np.tanh(c, out=tape.tanh_c[t])
        np.multiply(o, tanh_c, out=tape.h[t + 1])
    return tape


def lstm_backward(d_h, tape, weight, dc_last=None, empty=np.empty, input_grad=True):
    """Backpropagate through time from d_h (T, B, U), the gradients at h_1 ... h_T.

    ``dc_last`` (B, U) is a gradient at c_T from outside, zero by default.
    dx is None when ``input_grad`` is False.

    Returns:
        (dx (B, T, D), d_weight (D + U, 4U), d_bias (4U,), dh_0 (B, U), dc_0 (B, U)).
    """
    steps, batch, units = d_h.shape
    input_size = tape.x.shape[-1]
    # weight_h_t[k] is gate k's (U, U) block of W[D:], transposed: [4, U, U] -> [4, U, U]^T
    weight_h_t = np.ascontiguousarray(_gate_major(weight[input_size:], units).transpose(0, 2, 1))
    d_gates = empty(tape.gates.shape, tape.gates.dtype)  # (T, 4, B, U) at the pre-activations
    derivative = np.empty_like(tape.gates[0])  # (4, B, U)

    dh = np.zeros((batch, units), dtype=d_h.dtype)
    dc = np.zeros((batch, units), dtype=d_h.dtype) if dc_last is None else dc_last.copy()
    one = scalar(1.0, d_gates.dtype)
    for t in reversed(range(steps)):
        dh += d_h[t]
        a, da, tanh_c = tape.gates[t], d_gates[t], tape.tanh_c[t]
        i, f, o, g = a

        # h = o * tanh(c)
        np.multiply(dh, tanh_c, out=da[2])  # do
        d_tanh = tanh_c * tanh_c
        np.subtract(one, d_tanh, out=d_tanh)
        d_tanh *= o
        d_tanh *= dh
        dc += d_tanh

        # c = f * c_prev + i * g
        np.multiply(dc, g, out=da[0])  # di
        np.multiply(dc, tape.c[t], out=da[1])  # df
        np.multiply(dc, i, out=da[3])  # dg
        dc *= f  # dc_prev

        # Back through the activations: s (1 - s) for i, f, o and 1 - g^2 for g.
        np.multiply(a, a, out=derivative)
        np.subtract(a[:3], derivative[:3], out=derivative[:3])
        np.subtract(one, derivative[3], out=derivative[3])
        da *= derivative
        dh = np.matmul(da, weight_h_t).sum(axis=0)  # (4, B, U) @ (4, U, U), summed over gates

    # Weight gradients and dx over all steps: [T, 4, B, U] -> [T, B, 4, U] -> (T B, 4U) rows.
    d_rows = d_gates.transpose(0, 2, 1, 3).reshape(-1, 4 * units)
    d_steps = d_rows.reshape(steps, batch, -1)  # (T, B, 4U)
    d_weight = np.concatenate(
        [step_products(tape.x, d_steps), step_products(tape.h[:steps], d_steps)], axis=0
    )  # (D, 4U) stacked on (U, 4U), each summed over the steps
    dx = None
    if input_grad:
        # (T B, 4U) @ (4U, D) -> [T, B, D] -> [B, T, D]
        dx = (d_rows @ weight[:input_size].T).reshape(steps, batch, input_size).transpose(1, 0, 2)
    return dx, d_weight, sum_rows(d_rows), dh, dc


def lstm_step_forward(x_t, h_prev, c_prev, weight, bias):
    """One LSTM step for x_t (B, D), h_prev and c_prev (B, U); returns (h, c, cache)."""
    tape = lstm_forward(x_t[:, None], weight, bias, h_prev, c_prev)  # [B, D] -> [B, 1, D]
    return tape.h[1], tape.c[1], tape


def lstm_step_backward(dh, dc, cache, weight):
    """Backward of one step given dh and dc (B, U) from later steps and the readout.

    Returns (d_xh, dc_prev, d_weight, d_bias), where d_xh of shape (B, D + U) contains
    dx_t followed by dh_prev.
    """
    dx, d_weight, d_bias, dh_prev, dc_prev = lstm_backward(dh[None], cache, weight, dc_last=dc)
    return np.concatenate([dx[:, 0], dh_prev], axis=1), dc_prev, d_weight, d_bias


class LSTM(RecurrentModel):
    """LSTM core with a readout MLP on ``h_t``; parameters ``lstm.W``, ``lstm.b``, ``readout.*``.

    Trace arrays, each of shape (B, T, U): ``input_gate``, ``forget_gate``,
    ``output_gate``, ``candidate`` (g), ``cell`` (c_t) and ``hidden`` (h_t).
    """

    kind = "lstm"

    @property
    def _feature_size(self):
        return self.hyper.hidden_size

    def _init_core_params(self, rng):
        units = self.hyper.hidden_size
        weight, bias = init_linear(rng, self.hyper.input_size + units, 4 * units, self.dtype)
        bias[units : 2 * units] = 1.0  # forget gate
        return {"lstm.W": weight, "lstm.b": bias}

    def _core_forward(self, x, lease):
        tape = lstm_forward(x, self.params["lstm.W"], self.params["lstm.b"], empty=lease.empty)
        if not self.hyper.per_step_targets:
            return tape.h[-1].copy(), tape  # (B, U), off the pool
        return tape.h[1:].transpose(1, 0, 2).copy(), tape  # [T, B, U] -> [B, T, U]

    def _core_backward(self, d_features, tape, lease, input_grad):
        if self.hyper.per_step_targets:
            d_h = d_features.transpose(1, 0, 2)  # [B, T, U] -> [T, B, U]
        else:
            d_h = np.zeros(tape.h[1:].shape, dtype=d_features.dtype)  # (T, B, U)
            d_h[-1] = d_features
        dx, d_weight, d_bias, _, _ = lstm_backward(
            d_h, tape, self.params["lstm.W"], empty=lease.empty, input_grad=input_grad
        )
        return dx, {"lstm.W": d_weight, "lstm.b": d_bias}

    def _trace(self, tape):
        trace = {
            name: tape.gates[:, k].transpose(1, 0, 2).copy()  # [T, B, U] -> [B, T, U]
            for k, name in enumerate(["input_gate", "forget_gate", "output_gate", "candidate"])
        }
        trace["cell"] = tape.c[1:].transpose(1, 0, 2).copy()
        trace["hidden"] = tape.h[1:].transpose(1, 0, 2).copy()
        return trace
