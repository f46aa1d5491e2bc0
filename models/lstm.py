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
"""

import dataclasses
from typing import NamedTuple

import numpy as np

from models.layers import (
    init_linear,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from models.readout import ModelConfig, RecurrentModel, zero_grads


@dataclasses.dataclass(frozen=True)
class LSTMConfig(ModelConfig):
    hidden_size: int = 32


class LSTMStepCache(NamedTuple):
    xh: np.ndarray  # (B, D + U) concatenated input and previous hidden state
    c_prev: np.ndarray  # (B, U)
    i: np.ndarray  # (B, U) input gate
    f: np.ndarray  # (B, U) forget gate
    o: np.ndarray  # (B, U) output gate
    g: np.ndarray  # (B, U) candidate
    c: np.ndarray  # (B, U) cell state
    tanh_c: np.ndarray  # (B, U)
    h: np.ndarray  # (B, U) hidden state


def lstm_step_forward(x_t, h_prev, c_prev, weight, bias):
    """One LSTM step for x_t (B, D), h_prev and c_prev (B, U); returns (h, c, cache)."""
    units = h_prev.shape[1]
    xh = np.concatenate([x_t, h_prev], axis=1)  # (B, D + U)
    a = xh @ weight + bias  # (B, D + U) @ (D + U, 4U)
    i, _ = sigmoid_forward(a[:, :units])
    f, _ = sigmoid_forward(a[:, units : 2 * units])
    o, _ = sigmoid_forward(a[:, 2 * units : 3 * units])
    g, _ = tanh_forward(a[:, 3 * units :])
    c = f * c_prev + i * g
    tanh_c, _ = tanh_forward(c)
    h = o * tanh_c
    return h, c, LSTMStepCache(xh, c_prev, i, f, o, g, c, tanh_c, h)


def lstm_step_backward(dh, dc, cache, weight):
    """Backward of one step given dh and dc (B, U) from later steps and the readout.

    Returns (d_xh, dc_prev, d_weight, d_bias), where d_xh of shape (B, D + U) contains
    dx_t followed by dh_prev.
    """
    # h = o * tanh(c)
    do = dh * cache.tanh_c
    dc = dc + tanh_backward(dh * cache.o, cache.tanh_c)

    # c = f * c_prev + i * g
    df = dc * cache.c_prev
    dc_prev = dc * cache.f
    di = dc * cache.g
    dg = dc * cache.i

    # Gate activations back to the fused pre-activation, in the order [i | f | o | g].
    da = np.concatenate(
        [
            sigmoid_backward(di, cache.i),
            sigmoid_backward(df, cache.f),
            sigmoid_backward(do, cache.o),
            tanh_backward(dg, cache.g),
        ],
        axis=1,
    )  # (B, 4U)
    d_xh = da @ weight.T  # (B, 4U) @ (4U, D + U)
    return d_xh, dc_prev, cache.xh.T @ da, da.sum(axis=0)


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
        batch, steps, _ = x.shape
        units = self.hyper.hidden_size
        weight, bias = self.params["lstm.W"], self.params["lstm.b"]
        h = np.zeros((batch, units), dtype=self.dtype)
        c = np.zeros((batch, units), dtype=self.dtype)
        caches = []
        for t in range(steps):
            h, c, cache = lstm_step_forward(x[:, t], h, c, weight, bias)
            caches.append(cache)
        features = np.stack([cache.h for cache in caches], axis=1)  # (B, T, U)
        return features, caches

    def _core_backward(self, d_features, caches, lease):
        batch, steps, units = d_features.shape
        input_size = self.hyper.input_size
        weight = self.params["lstm.W"]
        grads = zero_grads(self.params)
        dx = np.zeros((batch, steps, input_size), dtype=d_features.dtype)
        dh_next = np.zeros((batch, units), dtype=d_features.dtype)
        dc_next = np.zeros((batch, units), dtype=d_features.dtype)
        for t in reversed(range(steps)):
            d_xh, dc_next, d_weight, d_bias = lstm_step_backward(
                d_features[:, t] + dh_next, dc_next, caches[t], weight
            )
            grads["lstm.W"] += d_weight
            grads["lstm.b"] += d_bias
            dx[:, t] = d_xh[:, :input_size]
            dh_next = d_xh[:, input_size:]
        return dx, grads

    def _trace(self, caches):
        fields = {
            "input_gate": "i",
            "forget_gate": "f",
            "output_gate": "o",
            "candidate": "g",
            "cell": "c",
            "hidden": "h",
        }
        return {
            name: np.stack([getattr(cache, field) for cache in caches], axis=1)  # (B, T, U)
            for name, field in fields.items()
        }
