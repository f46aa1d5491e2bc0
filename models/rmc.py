"""Relational Memory Core (Santoro et al., 2018) with backpropagation through time.

The semantics follow the ``RelationalMemory`` module of DeepMind Sonnet 1.

Shapes: B batch, T steps, D input size, N memory slots (``mem_slots``), H
heads, K key size per head, F = H * head_size the memory width, L attention
blocks, G gate width per slot (F for ``gate_style="unit"``, 1 for
``"memory"``).

Per step, with memory M_{t-1} of shape (B, N, F) and input x_t of shape (B, D):

    u = x_t @ W_in + b_in                                  (B, F)
    Z = [M_{t-1}; u]                                       (B, N + 1, F)
    Z = block_L(... block_1(Z))                            see models.attention
    C = Z[:, :N]                                           candidate memory, input row dropped
    a = (u @ W_gx + b_gx)[:, None] + tanh(M_{t-1}) @ W_gm + b_gm   (B, N, 2G) split as [i | f]
    i = sigmoid(a_i + 0)    f = sigmoid(a_f + 1)           constant input and forget biases
    M_t = i * tanh(C) + f * M_{t-1}                        gates broadcast over F when G = 1

With ``gate_style=None`` there are no gates and ``M_t = C``. The initial
memory is the identity matrix padded with zero columns or cut to (N, F),
the same for every sequence and not trained. The per-step features passed to
the readout are M_t flattened to N * F.

Every block has its own qkv map and layer norms, while the row-wise MLP of
the blocks is one set of weights shared by all L blocks, as in Sonnet.

Parameter names:

- ``input_proj.W`` (D, F) and ``input_proj.b`` (F,);
- ``block{l}.*`` for block l, with the local names listed in models.attention;
- ``attention_mlp.{j}.W`` (F, F) and ``attention_mlp.{j}.b`` for MLP layer j;
- ``gate_input.W`` and ``gate_memory.W`` (F, 2G), ``gate_input.b`` and
  ``gate_memory.b`` (2G,), present only when gated;
- ``readout.*`` (see models.readout).
"""

import dataclasses
from typing import NamedTuple

import numpy as np

from models.attention import (
    AttentionBlockCache,
    attention_block_backward,
    attention_block_forward,
    init_attention_block,
)
from models.layers import (
    LinearCache,
    init_linear,
    linear_backward,
    linear_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from models.readout import ModelConfig, RecurrentModel, add_grads, zero_grads

GATE_STYLES = ("unit", "memory", None)
INPUT_GATE_BIAS = 0.0
FORGET_GATE_BIAS = 1.0


@dataclasses.dataclass(frozen=True)
class RMCConfig(ModelConfig):
    mem_slots: int = 4
    head_size: int = 32
    num_heads: int = 1
    key_size: int | None = None  # None means head_size
    num_blocks: int = 1
    attention_mlp_layers: int = 2
    gate_style: str | None = "unit"


def initial_memory(batch, mem_slots, mem_size, dtype):
    """Return the identity memory of shape (B, N, F): eye(N, F), padded or cut, per sequence."""
    return np.broadcast_to(np.eye(mem_slots, mem_size, dtype=dtype), (batch, mem_slots, mem_size))


# --- gates --------------------------------------------------------------------


class GateCache(NamedTuple):
    memory_prev: np.ndarray  # (B, N, F)
    tanh_memory: np.ndarray  # (B, N, F)
    memory_linear: LinearCache
    input_gate: np.ndarray  # (B, N, G)
    forget_gate: np.ndarray  # (B, N, G)
    tanh_candidate: np.ndarray  # (B, N, F)


def gates_forward(candidate, memory_prev, gate_x, weight, bias):
    """Gate the candidate (B, N, F) into the next memory.

    Args:
        candidate: candidate memory C of shape (B, N, F).
        memory_prev: previous memory of shape (B, N, F).
        gate_x: the input's gate pre-activations ``u @ W_gx + b_gx`` of shape (B, 2G).
        weight, bias: ``gate_memory.W`` (F, 2G) and ``gate_memory.b`` (2G,).
    """
    tanh_memory, _ = tanh_forward(memory_prev)
    gate_memory, memory_linear = linear_forward(tanh_memory, weight, bias)  # (B, N, 2G)
    pre = gate_memory + gate_x[:, None, :]  # (B, N, 2G), the input part broadcast over slots
    width = pre.shape[-1] // 2
    input_gate, _ = sigmoid_forward(pre[..., :width] + INPUT_GATE_BIAS)
    forget_gate, _ = sigmoid_forward(pre[..., width:] + FORGET_GATE_BIAS)
    tanh_candidate, _ = tanh_forward(candidate)
    memory = input_gate * tanh_candidate + forget_gate * memory_prev
    cache = GateCache(
        memory_prev, tanh_memory, memory_linear, input_gate, forget_gate, tanh_candidate
    )
    return memory, cache


def gates_backward(d_memory, cache):
    """Return (d_candidate, d_memory_prev, d_gate_x (B, 2G), ``gate_memory`` grads)."""
    # memory = i * tanh(C) + f * M_prev; per-slot gates collect the gradient over F.
    d_input_gate = d_memory * cache.tanh_candidate
    d_forget_gate = d_memory * cache.memory_prev
    if cache.input_gate.shape[-1] != d_memory.shape[-1]:
        d_input_gate = d_input_gate.sum(axis=-1, keepdims=True)
        d_forget_gate = d_forget_gate.sum(axis=-1, keepdims=True)
    d_candidate = tanh_backward(d_memory * cache.input_gate, cache.tanh_candidate)
    d_memory_prev = d_memory * cache.forget_gate

    # Pre-activations in the order [i | f], shared by the input and memory terms.
    d_pre = np.concatenate(
        [
            sigmoid_backward(d_input_gate, cache.input_gate),
            sigmoid_backward(d_forget_gate, cache.forget_gate),
        ],
        axis=-1,
    )  # (B, N, 2G)
    d_gate_x = d_pre.sum(axis=1)  # (B, 2G)
    d_tanh_memory, grads = linear_backward(d_pre, cache.memory_linear)
    d_memory_prev = d_memory_prev + tanh_backward(d_tanh_memory, cache.tanh_memory)
    return d_candidate, d_memory_prev, d_gate_x, grads


# --- the core -----------------------------------------------------------------


class RMCStepCache(NamedTuple):
    blocks: list[AttentionBlockCache]  # one per block
    gates: GateCache | None  # None when gate_style is None
    memory: np.ndarray  # (B, N, F) memory after the step


class RMCCache(NamedTuple):
    input_proj: LinearCache
    gate_input: LinearCache | None
    steps: list[RMCStepCache]


class RelationalMemory(RecurrentModel):
    """Relational Memory Core with a readout MLP on the flattened memory.

    Trace arrays: ``attention`` (B, T, L, H, N+1, N+1) softmax weights, row =
    query, column = key, the last row and column being the input row;
    ``input_gate`` and ``forget_gate`` (B, T, N, G), absent when
    ``gate_style`` is None; ``memory`` (B, T, N, F) after each step.
    """

    kind = "rmc"

    @property
    def mem_size(self):
        return self.hyper.head_size * self.hyper.num_heads

    @property
    def key_size(self):
        return self.hyper.key_size or self.hyper.head_size

    @property
    def gate_width(self):
        return {"unit": self.mem_size, "memory": 1, None: 0}[self.hyper.gate_style]

    @property
    def _feature_size(self):
        return self.hyper.mem_slots * self.mem_size

    def _init_core_params(self, rng):
        hyper, mem_size = self.hyper, self.mem_size
        params = {}
        params["input_proj.W"], params["input_proj.b"] = init_linear(
            rng, hyper.input_size, mem_size, self.dtype
        )
        for block in range(hyper.num_blocks):
            local = init_attention_block(rng, mem_size, hyper.num_heads, self.key_size, self.dtype)
            params.update({f"block{block}.{name}": value for name, value in local.items()})
        for j in range(hyper.attention_mlp_layers):
            params[f"attention_mlp.{j}.W"], params[f"attention_mlp.{j}.b"] = init_linear(
                rng, mem_size, mem_size, self.dtype
            )
        if hyper.gate_style is not None:
            for name in ("gate_input", "gate_memory"):
                params[f"{name}.W"], params[f"{name}.b"] = init_linear(
                    rng, mem_size, 2 * self.gate_width, self.dtype
                )
        return params

    def _block_params(self):
        """Return one dict per block of its parameters under their local names."""
        blocks = []
        for block in range(self.hyper.num_blocks):
            prefix = f"block{block}."
            blocks.append(
                {
                    name[len(prefix) :]: value
                    for name, value in self.params.items()
                    if name.startswith(prefix)
                }
            )
        return blocks

    def _attention_mlp(self):
        """Return the shared MLP of the blocks as a list of (weight, bias) pairs."""
        return [
            (self.params[f"attention_mlp.{j}.W"], self.params[f"attention_mlp.{j}.b"])
            for j in range(self.hyper.attention_mlp_layers)
        ]

    def _step_forward(self, memory_prev, x_proj, gate_x, blocks, mlp_layers):
        """Advance memory (B, N, F) one step given projected input (B, F), gate input (B, 2G)."""
        hyper = self.hyper
        z = np.concatenate([memory_prev, x_proj[:, None, :]], axis=1)  # (B, N + 1, F)
        block_caches = []
        for block in blocks:
            z, cache = attention_block_forward(z, block, mlp_layers, hyper.num_heads, self.key_size)
            block_caches.append(cache)
        candidate = z[:, : hyper.mem_slots]  # (B, N, F), input row dropped

        if hyper.gate_style is None:
            return candidate, RMCStepCache(block_caches, None, candidate)
        memory, gate_cache = gates_forward(
            candidate,
            memory_prev,
            gate_x,
            self.params["gate_memory.W"],
            self.params["gate_memory.b"],
        )
        return memory, RMCStepCache(block_caches, gate_cache, memory)

    def _step_backward(self, d_memory, cache, grads):
        """Backward of one step; adds parameter grads into ``grads``.

        Returns (d_memory_prev (B, N, F), d_x_proj (B, F), d_gate_x (B, 2G) or None).
        """
        mem_slots = self.hyper.mem_slots
        if cache.gates is None:
            d_candidate, d_memory_prev, d_gate_x = d_memory, 0.0, None
        else:
            d_candidate, d_memory_prev, d_gate_x, local = gates_backward(d_memory, cache.gates)
            add_grads(grads, "gate_memory", local)

        # The dropped input row receives no gradient from the candidate.
        dz = np.zeros((d_memory.shape[0], mem_slots + 1, d_memory.shape[2]), d_memory.dtype)
        dz[:, :mem_slots] = d_candidate
        for block in reversed(range(len(cache.blocks))):
            dz, local, mlp_grads = attention_block_backward(dz, cache.blocks[block])
            add_grads(grads, f"block{block}", local)
            for j, mlp_local in enumerate(mlp_grads):
                add_grads(grads, f"attention_mlp.{j}", mlp_local)
        return d_memory_prev + dz[:, :mem_slots], dz[:, mem_slots], d_gate_x

    def _core_forward(self, x):
        batch, steps, _ = x.shape
        params, gated = self.params, self.hyper.gate_style is not None

        # Input projections for all steps at once.
        x_proj, input_proj = linear_forward(x, params["input_proj.W"], params["input_proj.b"])
        gate_x, gate_input = (None, None)
        if gated:  # (B, T, F) -> (B, T, 2G)
            gate_x, gate_input = linear_forward(
                x_proj, params["gate_input.W"], params["gate_input.b"]
            )

        blocks, mlp_layers = self._block_params(), self._attention_mlp()
        memory = initial_memory(batch, self.hyper.mem_slots, self.mem_size, self.dtype)
        caches = []
        for t in range(steps):
            memory, cache = self._step_forward(
                memory, x_proj[:, t], gate_x[:, t] if gated else None, blocks, mlp_layers
            )
            caches.append(cache)
        features = np.stack([cache.memory for cache in caches], axis=1)  # (B, T, N, F)
        return features.reshape(batch, steps, -1), RMCCache(input_proj, gate_input, caches)

    def _core_backward(self, d_features, cache):
        batch, steps, _ = d_features.shape
        mem_slots, mem_size = self.hyper.mem_slots, self.mem_size
        grads = zero_grads(self.params)
        d_features = d_features.reshape(batch, steps, mem_slots, mem_size)  # (B, T, N, F)
        d_x_proj = np.zeros((batch, steps, mem_size), dtype=d_features.dtype)
        d_gate_x = None
        if cache.gate_input is not None:
            d_gate_x = np.zeros((batch, steps, 2 * self.gate_width), dtype=d_features.dtype)

        # Walk the steps backward; the initial memory is constant, so its gradient is dropped.
        d_memory = np.zeros((batch, mem_slots, mem_size), dtype=d_features.dtype)
        for t in reversed(range(steps)):
            d_memory, d_x_proj[:, t], d_gate_x_t = self._step_backward(
                d_memory + d_features[:, t], cache.steps[t], grads
            )
            if d_gate_x is not None:
                d_gate_x[:, t] = d_gate_x_t

        # Back through the input projections applied to all steps at once.
        if d_gate_x is not None:
            d_from_gates, local = linear_backward(d_gate_x, cache.gate_input)
            add_grads(grads, "gate_input", local)
            d_x_proj += d_from_gates
        dx, local = linear_backward(d_x_proj, cache.input_proj)
        add_grads(grads, "input_proj", local)
        return dx, grads

    def _trace(self, cache):
        steps = cache.steps
        # per step [L x (B, H, R, R)] -> (B, L, H, R, R); over steps -> (B, T, L, H, R, R)
        attention = np.stack(
            [np.stack([block.heads.weights for block in step.blocks], axis=1) for step in steps],
            axis=1,
        )
        trace = {"attention": attention}
        if self.hyper.gate_style is not None:
            trace["input_gate"] = np.stack([s.gates.input_gate for s in steps], axis=1)
            trace["forget_gate"] = np.stack([s.gates.forget_gate for s in steps], axis=1)
        trace["memory"] = np.stack([s.memory for s in steps], axis=1)  # (B, T, N, F)
        return trace
