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

Implementation: the memory of every step lives in one array ``rows`` of
shape (T + 1, (N + 1) B, F), where ``rows[t]`` is the block input
[M_{t-1}; u_t] with its rows slot-major (row r * B + b is slot r of
sequence b), and each step writes M_t in place into its first N B rows, so
no step concatenates or stacks. The blocks and gates save their activations
on tapes with a leading step axis (see models.attention), the backward pass
through time computes only activation gradients, and every parameter
gradient is then one matmul or one sum over all T steps. The maps of the
input that do not depend on the memory, u and its share of the gates and of
the first block's qkv map, are taken for all T steps at once in
models.rmc_input.

Parameter names:

- ``input_proj.W`` (D, F) and ``input_proj.b`` (F,);
- ``block{l}.*`` for block l, with the local names listed in models.attention;
- ``attention_mlp.{j}.W`` (F, F) and ``attention_mlp.{j}.b`` for MLP layer j;
- ``gate_input.W`` and ``gate_memory.W`` (F, 2G), ``gate_input.b`` and
  ``gate_memory.b`` (2G,), present only when gated;
- ``readout.*`` (see models.readout).
"""

import dataclasses
import functools
from typing import NamedTuple

import numpy as np

from models.attention import (
    BLOCK_PARAM_NAMES,
    BlockTape,
    BlockWeights,
    allocate_block_tape,
    allocate_grad_tape,
    block_param_grads,
    block_step_backward,
    block_step_forward,
    init_attention_block,
    prepare_block,
    write_relu_masks,
)
from models.layers import (
    dot,
    init_linear,
    repeated_rows_dot,
    repeated_rows_grad,
    row_mean,
    scalar,
    sigmoid_of_halved,
    step_products,
    sum_middle,
    sum_rows,
)
from models.readout import ModelConfig, RecurrentModel
from models.rmc_input import (
    InputRows,
    gate_input_term,
    input_path_backward,
    input_projection,
    input_rows,
    input_term,
    through_input,
)

GATE_STYLES = ("unit", "memory", None)
# Two ways to take maps in fewer FLOPs, each at the cost of a few more NumPy
# calls, a few microseconds:
# - The first block's qkv map of the input rows, for all steps at once through
#   x (see models.rmc_input), saves 2 B Q (F - D - 1) FLOPs a step.
# - At step 0 the memory is the same initial memory for every sequence. The
#   first block's qkv map and the gates' memory term of each slot, taken once
#   instead of once per sequence, save 2 (B - 1) N F Q FLOPs and more, in the
#   forward pass and in the weight gradients.
# Each is taken only when it saves at least this many FLOPs (10 microseconds at
# 100 GFLOP/s).
MIN_SPLIT_FLOPS = 10**6
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


@functools.lru_cache(maxsize=16)
def _initial_slots(mem_slots, mem_size, dtype):
    """Return the initial memory of one sequence, eye(N, F) padded or cut, read-only.

    Built anew at every forward pass through ``np.eye`` and ``np.broadcast_to``,
    the batch's initial memory took about 40 microseconds of a tracking training
    step in bench/compare.py under a line profiler.
    """
    slots = np.eye(mem_slots, mem_size, dtype=dtype)
    slots.flags.writeable = False
    return slots


def initial_memory(batch, mem_slots, mem_size, dtype):
    """Return the identity memory of shape (B, N, F): eye(N, F), padded or cut, per sequence."""
    slots = _initial_slots(mem_slots, mem_size, np.dtype(dtype))
    return np.broadcast_to(slots, (batch, mem_slots, mem_size))


def _rows(array):
    """Return an array (..., D) as rows (n, D)."""
    return array.reshape(-1, array.shape[-1])


def _slot_major(memory):
    """Return memory (B, N, F) as slot-major rows (N B, F), a copy."""
    return np.ascontiguousarray(memory.transpose(1, 0, 2)).reshape(-1, memory.shape[-1])


def _batch_major(rows, batch):
    """Return slot-major rows (N B, F) as (B, N, F)."""
    return rows.reshape(-1, batch, rows.shape[-1]).transpose(1, 0, 2)


# --- gates --------------------------------------------------------------------


class GateCache(NamedTuple):
    """Gate activations over S steps, written by ``gates_step_forward``."""

    memory_prev: np.ndarray  # (S, N B, F) memory before each step, owned by the caller
    half_weight: np.ndarray  # (F, 2G) gate_memory.W / 2, the sigmoid's halving folded in
    weight_t: np.ndarray  # (2G, F) gate_memory.W transposed, contiguous for the backward
    tanh_memory: np.ndarray  # (S, N B, F)
    gates: np.ndarray  # (S, N B, 2G) sigmoid outputs in the order [i | f]
    tanh_candidate: np.ndarray  # (S, N B, F)
    input_gates: np.ndarray  # (S, N B, G) view of gates: the input gates i
    forget_gates: np.ndarray  # (S, N B, G) view of gates: the forget gates f
    one: np.ndarray  # the read-only scalar 1.0 in the tape's dtype, from scalar()
    one_half: np.ndarray  # the scalar 0.5 likewise
    per_slot: np.ndarray  # (S, N, B, 2G) view of gates, each step's rows by slot
    # True when memory_prev[0] is the same constant memory for every sequence, as
    # the RMC's initial memory is. Step 0 then takes the memory term of each slot
    # once, and the weight gradient takes step 0's share once per slot.
    shared_first: bool = False


def allocate_gate_tape(memory_prev, weight, batch, empty=np.empty, shared_first=False):
    """Return an empty gate tape for memory_prev (S, N B, F) and ``gate_memory.W`` (F, 2G).

    ``empty(shape, dtype)`` allocates each array, ``np.empty`` or ``PoolLease.empty``.
    ``shared_first`` as in ``GateCache``.
    """
    width = weight.shape[1] // 2  # G
    gates = empty((*memory_prev.shape[:-1], 2 * width), weight.dtype)
    tape = GateCache(
        memory_prev=memory_prev,
        half_weight=empty(weight.shape, weight.dtype),
        weight_t=empty(weight.shape[::-1], weight.dtype),
        tanh_memory=empty(memory_prev.shape, weight.dtype),
        gates=gates,
        tanh_candidate=empty(memory_prev.shape, weight.dtype),
        input_gates=gates[..., :width],
        forget_gates=gates[..., width:],
        one=scalar(1.0, weight.dtype),
        one_half=scalar(0.5, weight.dtype),
        # [S, N B, 2G] -> [S, N, B, 2G]
        per_slot=gates.reshape(gates.shape[0], -1, batch, gates.shape[-1], copy=False),
        shared_first=shared_first,
    )
    write_gate_weights(tape, weight)
    return tape


def write_gate_weights(tape, weight):
    """Overwrite the gate tape's copies of ``gate_memory.W`` (F, 2G) with those of ``weight``."""
    np.multiply(weight, 0.5, out=tape.half_weight)  # exact in binary floating point
    tape.weight_t[...] = weight.T


@functools.lru_cache(maxsize=16)
def constant_gate_bias(gate_width, dtype):
    """Return the constant biases [input (G,) | forget (G,)] added to the pre-activations.

    The array is read-only and kept for reuse.
    """
    bias = np.repeat(np.array([INPUT_GATE_BIAS, FORGET_GATE_BIAS], dtype=dtype), gate_width)
    bias.flags.writeable = False
    return bias


def gates_step_forward(tape, t, candidate, half_gate_x, memory):
    """Gate the candidate (N B, F) of step t into ``memory`` (N B, F), written in place.

    ``half_gate_x`` (B, 2G) is half the sum of the pre-activations' terms that
    do not depend on the memory: ``(u @ W_gx + b_gx + b_gm + constant biases) / 2``.
    The pre-activations are therefore computed halved, as the sigmoid's tanh form needs.
    """
    gates, per_slot = tape.gates[t], tape.per_slot[t]  # (N B, 2G) and its (N, B, 2G) view
    if t == 0 and tape.shared_first:
        # Each slot's tanh once, [N B, F] -> [N, B, F] -> (N, F), repeated over B.
        slots, mem_size = per_slot.shape[0], memory.shape[-1]
        shared = np.tanh(tape.memory_prev[0].reshape(slots, -1, mem_size)[:, 0])
        tape.tanh_memory[0].reshape(slots, -1, mem_size)[...] = shared[:, None]
        repeated_rows_dot(tape.tanh_memory[0], tape.half_weight, slots, gates)
    else:
        tanh_memory = np.tanh(tape.memory_prev[t], out=tape.tanh_memory[t])
        dot(tanh_memory, tape.half_weight, out=gates)  # (N B, F) @ (F, 2G)
    per_slot += half_gate_x  # the input part, broadcast over slots
    sigmoid_of_halved(gates, tape.one, tape.one_half)
    tanh_candidate = np.tanh(candidate, out=tape.tanh_candidate[t])
    np.multiply(tape.input_gates[t], tanh_candidate, out=memory)
    memory += tape.forget_gates[t] * tape.memory_prev[t]


def gates_step_backward(tape, t, d_memory, d_gates, d_candidate, memory_grad=True):
    """Backward of step t from d_memory (N B, F); return d_memory_prev (N B, F).

    Writes the gradient at the gate pre-activations to ``d_gates[t]`` (N B, 2G)
    and the candidate's gradient to ``d_candidate`` (N B, F). Returns None,
    without computing d_memory_prev, when ``memory_grad`` is False, as for
    the RMC's step 0, whose memory is a constant.
    """
    gates, d_pre, one = tape.gates[t], d_gates[t], tape.one
    input_gate, forget_gate = tape.input_gates[t], tape.forget_gates[t]
    memory_prev, tanh_candidate = tape.memory_prev[t], tape.tanh_candidate[t]
    width = input_gate.shape[-1]  # G
    d_input, d_forget = d_pre[:, :width], d_pre[:, width:]

    # memory = i * tanh(C) + f * M_prev; per-slot gates (G = 1) collect the gradient over F.
    if width == d_memory.shape[-1]:
        np.multiply(d_memory, tanh_candidate, out=d_input)
        np.multiply(d_memory, memory_prev, out=d_forget)
    else:
        np.sum(d_memory * tanh_candidate, axis=-1, keepdims=True, out=d_input)
        np.sum(d_memory * memory_prev, axis=-1, keepdims=True, out=d_forget)
    d_pre *= gates * (one - gates)  # sigmoid derivative, for [i | f] at once

    # d_candidate = d_memory * i * (1 - tanh(C)^2)
    np.multiply(tanh_candidate, tanh_candidate, out=d_candidate)
    np.subtract(one, d_candidate, out=d_candidate)
    d_candidate *= input_gate
    d_candidate *= d_memory
    if not memory_grad:
        return None

    # M_prev enters through the forget gate and through tanh(M_prev) @ W_gm.
    d_tanh_memory = dot(d_pre, tape.weight_t)  # (N B, 2G) @ (2G, F)
    tanh_memory = tape.tanh_memory[t]
    d_tanh_memory *= one - tanh_memory * tanh_memory
    d_memory_prev = d_memory * forget_gate
    d_memory_prev += d_tanh_memory
    return d_memory_prev


def gate_param_grads(tape, d_gates, batch):
    """Return the ``gate_memory`` grads and d_gate_x (S, B, 2G), summed over all S steps."""
    d_rows = _rows(d_gates)  # (S N B, 2G)
    steps, rows, width = d_gates.shape
    slots = rows // batch
    first = 1 if tape.shared_first else 0  # step 0's memory is taken once per slot below
    weight = step_products(tape.tanh_memory[first:], d_gates[first:])  # (F, 2G)
    if first:
        weight += repeated_rows_grad(tape.tanh_memory[0], d_gates[0], slots)
    grads = {"W": weight, "b": sum_rows(d_rows)}
    # The input part was repeated for every slot: [S, N B, 2G] -> [S, N, B 2G], summed over N.
    d_gate_x = sum_middle(d_gates.reshape(steps, slots, batch * width))  # (S, B 2G)
    return grads, d_gate_x.reshape(steps, batch, width)


def gates_forward(candidate, memory_prev, gate_x, weight, bias):
    """Gate the candidate (B, N, F) into the next memory, for one step.

    Args:
        candidate: candidate memory C of shape (B, N, F).
        memory_prev: previous memory of shape (B, N, F).
        gate_x: the input's gate pre-activations ``u @ W_gx + b_gx`` of shape (B, 2G).
        weight, bias: ``gate_memory.W`` (F, 2G) and ``gate_memory.b`` (2G,).
    """
    batch = memory_prev.shape[0]
    tape = allocate_gate_tape(_slot_major(memory_prev)[None], weight, batch)  # one step
    gate_x = gate_x + bias + constant_gate_bias(weight.shape[1] // 2, weight.dtype)  # (B, 2G)
    memory = np.empty(tape.memory_prev.shape[1:], dtype=weight.dtype)  # (N B, F)
    gates_step_forward(tape, 0, _slot_major(candidate), gate_x * 0.5, memory)
    return _batch_major(memory, batch), tape


def gates_backward(d_memory, cache):
    """Return (d_candidate, d_memory_prev, d_gate_x (B, 2G), ``gate_memory`` grads)."""
    batch = d_memory.shape[0]
    d_gates = np.empty_like(cache.gates)
    d_memory = _slot_major(d_memory)
    d_candidate = np.empty_like(d_memory)
    d_memory_prev = gates_step_backward(cache, 0, d_memory, d_gates, d_candidate)
    grads, d_gate_x = gate_param_grads(cache, d_gates, batch)
    d_candidate = _batch_major(d_candidate, batch)
    return d_candidate, _batch_major(d_memory_prev, batch), d_gate_x[0], grads


# --- the core -----------------------------------------------------------------


class RMCWorkspace(NamedTuple):
    """The arrays and tapes of one forward and backward pass over sequences of one shape.

    A pass takes it from the model's pool with ``PoolLease.reuse``, so that
    the passes of a training loop build its tapes and their views once, and
    later passes only overwrite the arrays. Built at every pass, they took
    about 2% of a ``tracking`` training step of bench/compare.py.
    """

    rows: np.ndarray  # (T + 1, (N + 1) B, F), see RMCCache
    tapes: list[BlockTape]  # one per block, without given_qkv
    gate_tape: GateCache | None  # each pass overwrites its weight copies (write_gate_weights)
    grad_tapes: list  # one BlockGradTape per block
    d_rows: np.ndarray  # (T, (N + 1) B, F) the gradient at the first block's input rows
    d_gates: np.ndarray | None  # (T, N B, 2G) at the gate pre-activations


class RMCCache(NamedTuple):
    inputs: InputRows  # x and the input projection, as models.rmc_input takes them
    rows: np.ndarray  # (T + 1, (N + 1) B, F): rows[t] = [M_{t-1}; u_t]; M_T in rows[T, :N B]
    blocks: list[BlockTape]  # one per block, each over all T steps
    block_weights: list[BlockWeights]
    gates: GateCache | None  # None when gate_style is None
    workspace: RMCWorkspace


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

    def _splits_input_qkv(self, batch):
        """Return True when the first block takes the input rows' qkv map through x."""
        if not through_input(self.params):
            return False
        input_size, width = self.params["input_proj.W"].shape
        qkv_width = self.params["block0.qkv.W"].shape[1]
        return 2 * batch * qkv_width * (width - input_size - 1) >= MIN_SPLIT_FLOPS

    def _shares_initial_memory(self, batch):
        """Return True when step 0 maps the initial memory once per slot, not per sequence."""
        qkv_width = self.params["block0.qkv.W"].shape[1]
        flops = 2 * (batch - 1) * self.hyper.mem_slots * self.mem_size * qkv_width
        return flops >= MIN_SPLIT_FLOPS

    def _block_weights(self, batch, lease):
        """Return the ``BlockWeights`` of every block, each with the shared attention MLP."""
        mlp_layers = [
            (self.params[f"attention_mlp.{j}.W"], self.params[f"attention_mlp.{j}.b"])
            for j in range(self.hyper.attention_mlp_layers)
        ]
        weights = []
        for block in range(self.hyper.num_blocks):
            local = {name: self.params[f"block{block}.{name}"] for name in BLOCK_PARAM_NAMES}
            # The last block computes only the memory rows: the input row's output is dropped.
            kept_slots = self.hyper.mem_slots if block == self.hyper.num_blocks - 1 else None
            row_shape = (self.hyper.mem_slots + 1, batch)
            weights.append(
                prepare_block(
                    local,
                    mlp_layers,
                    self.hyper.num_heads,
                    self.key_size,
                    row_shape,
                    lease.empty,
                    kept_slots,
                )
            )
        return weights

    def _workspace(self, steps, batch, block_weights, shared, empty):
        """Return an ``RMCWorkspace`` for T steps of B sequences; ``empty`` allocates its arrays.

        ``shared`` as ``_shares_initial_memory`` returned.
        """
        slots, mem_size = self.hyper.mem_slots, self.mem_size
        memory_rows = slots * batch  # N B
        rows = empty((steps + 1, memory_rows + batch, mem_size), self.dtype)
        # The first block's memory rows at step 0 are the initial memory, a constant whose
        # gradient is dropped, and the same for every sequence.
        first_rows = {"constant_slots": slots, "shared_slots": slots if shared else 0}
        tapes, block_input = [], rows[:steps]
        for block, weights in enumerate(block_weights):
            options = first_rows if block == 0 else {}
            tapes.append(allocate_block_tape(block_input, weights, empty, **options))
            block_input = tapes[-1].out
        gate_tape, d_gates = None, None
        if self.hyper.gate_style is not None:
            weight = self.params["gate_memory.W"]
            gate_tape = allocate_gate_tape(rows[:steps, :memory_rows], weight, batch, empty, shared)
            d_gates = empty(gate_tape.gates.shape, self.dtype)
        return RMCWorkspace(
            rows=rows,
            tapes=tapes,
            gate_tape=gate_tape,
            grad_tapes=[allocate_grad_tape(tape, empty) for tape in tapes],
            d_rows=empty((steps, memory_rows + batch, mem_size), self.dtype),
            d_gates=d_gates,
        )

    def _core_forward(self, x, lease):
        batch, steps, _ = x.shape
        slots, mem_size = self.hyper.mem_slots, self.mem_size
        params, gated = self.params, self.hyper.gate_style is not None

        # Input projections for all steps at once.
        inputs = input_rows(x, params)
        u = input_projection(inputs)  # (T, B, F)
        memory_rows = slots * batch  # N B
        block_weights = self._block_weights(batch, lease)
        shared, split = self._shares_initial_memory(batch), self._splits_input_qkv(batch)
        workspace = lease.reuse(
            ("rmc", steps, batch, shared),
            lambda empty: self._workspace(steps, batch, block_weights, shared, empty),
        )
        rows = workspace.rows
        # [N B, F] -> [N, B, F]: slot r of every sequence gets row r of the initial memory
        initial = rows[0, :memory_rows].reshape(slots, batch, mem_size, copy=False)
        initial[...] = _initial_slots(slots, mem_size, self.dtype)[:, None]
        rows[:steps, memory_rows:] = u
        rows[steps, memory_rows:] = 0.0  # no input row after the last step

        tapes = list(workspace.tapes)
        if split:
            given_qkv = input_term(inputs, block_weights[0].qkv_weight)  # (T, B, Q)
            tapes[0] = tapes[0]._replace(given_qkv=given_qkv)
        gate_x, gate_tape = None, None
        if gated:
            # The memory term's bias and the constant biases join the input term once per
            # sequence, halved: the steps compute the pre-activations halved, see
            # gates_step_forward.
            extra_bias = params["gate_memory.b"] + constant_gate_bias(self.gate_width, self.dtype)
            gate_x = gate_input_term(inputs, u, params, extra_bias, 0.5)  # (T, B, 2G)
            gate_tape = workspace.gate_tape
            write_gate_weights(gate_tape, params["gate_memory.W"])

        for t in range(steps):
            for tape, weights in zip(tapes, block_weights, strict=True):
                block_step_forward(tape, t, weights)
            candidate = tapes[-1].out[t]  # (N B, F), the input row was dropped
            if gated:
                gates_step_forward(gate_tape, t, candidate, gate_x[t], rows[t + 1, :memory_rows])
            else:
                rows[t + 1, :memory_rows] = candidate

        cache = RMCCache(inputs, rows, tapes, block_weights, gate_tape, workspace)
        if not self.hyper.per_step_targets:
            # [N B, F] -> [N, B, F] -> [B, N, F] -> [B, N F], a copy: rows is pooled
            memory = rows[steps, :memory_rows].reshape(slots, batch, mem_size)
            return memory.transpose(1, 0, 2).copy().reshape(batch, -1), cache
        # [T, N B, F] -> [T, N, B, F] -> [B, T, N, F] -> [B, T, N F], a copy: rows is pooled
        memory = rows[1:, :memory_rows].reshape(steps, slots, batch, mem_size)
        return memory.transpose(2, 0, 1, 3).copy().reshape(batch, steps, -1), cache

    def _core_backward(self, d_features, cache, lease, input_grad):
        batch = d_features.shape[0]
        steps = cache.rows.shape[0] - 1
        slots, mem_size = self.hyper.mem_slots, self.mem_size
        memory_rows = slots * batch
        if self.hyper.per_step_targets:
            # [B, T, N F] -> [B, T, N, F] -> [T, N, B, F] -> [T, N B, F]
            d_features = d_features.reshape(batch, steps, slots, mem_size).transpose(1, 2, 0, 3)
            d_features = d_features.reshape(steps, memory_rows, mem_size)
        else:
            # [B, N F] -> [B, N, F] -> [N, B, F] -> [N B, F], the last step's only
            d_features = d_features.reshape(batch, slots, mem_size).transpose(1, 0, 2)
            d_last = d_features.reshape(memory_rows, mem_size)
        workspace = cache.workspace
        grad_tapes, d_rows, d_gates = workspace.grad_tapes, workspace.d_rows, workspace.d_gates
        for tape, grad_tape in zip(cache.blocks, grad_tapes, strict=True):
            write_relu_masks(tape, grad_tape)

        # Walk the steps backward; the initial memory is constant, so its gradient is dropped.
        d_memory = np.zeros((memory_rows, mem_size), dtype=d_features.dtype)
        for t in reversed(range(steps)):
            if self.hyper.per_step_targets:
                d_memory = d_memory + d_features[t]
            elif t == steps - 1:  # no gradient reaches the features of earlier steps
                d_memory = d_memory + d_last
            d_memory = self._step_backward(t, d_memory, cache, grad_tapes, d_rows, d_gates)

        return self._param_grads(cache, grad_tapes, d_rows, d_gates, input_grad)

    def _step_backward(self, t, d_memory, cache, grad_tapes, d_rows, d_gates):
        """Backward of step t from d_memory (N B, F); return d_memory_prev (N B, F).

        Fills step t of the gradient tapes, of d_rows (T, (N + 1) B, F) and of
        d_gates. Returns None for step 0, because the initial memory is a constant.
        """
        memory_rows = d_memory.shape[0]
        d_candidate = grad_tapes[-1].d_out[t]  # (N B, F)
        if d_gates is None:
            d_candidate[...] = d_memory
        else:
            d_memory = gates_step_backward(
                cache.gates, t, d_memory, d_gates, d_candidate, memory_grad=t > 0
            )

        for block in reversed(range(len(cache.blocks))):
            dz = grad_tapes[block - 1].d_out[t] if block > 0 else d_rows[t]
            block_step_backward(
                cache.blocks[block], grad_tapes[block], t, cache.block_weights[block], dz
            )

        # M_{t-1} is also the first N B rows of the first block's input. The initial
        # memory M_0 is a constant, so step 0 returns nothing.
        if t == 0:
            return None
        if d_gates is None:
            return d_rows[t, :memory_rows]
        d_memory += d_rows[t, :memory_rows]
        return d_memory

    def _param_grads(self, cache, grad_tapes, d_rows, d_gates, input_grad):
        """Return (dx, grads of the core) from the filled tapes, over all steps at once.

        dx is None when ``input_grad`` is False.
        """
        grads = {}
        for block, (tape, grad_tape) in enumerate(zip(cache.blocks, grad_tapes, strict=True)):
            local, mlp_grads = block_param_grads(tape, grad_tape, cache.block_weights[block])
            grads.update({f"block{block}.{name}": value for name, value in local.items()})
            for j, mlp_local in enumerate(mlp_grads):  # the MLP is shared: sum over blocks
                for name, value in mlp_local.items():
                    key = f"attention_mlp.{j}.{name}"
                    grads[key] = grads[key] + value if key in grads else value

        batch = d_rows.shape[1] // (self.hyper.mem_slots + 1)
        memory_rows = self.hyper.mem_slots * batch
        d_gate_x = None
        if d_gates is not None:
            local, d_gate_x = gate_param_grads(cache.gates, d_gates, batch)
            grads.update({f"gate_memory.{name}": value for name, value in local.items()})
        steps = d_rows.shape[0]
        u, d_u = cache.rows[:steps, memory_rows:], d_rows[:, memory_rows:]  # (T, B, F)
        deferred = None
        if cache.blocks[0].given_qkv is not None:  # d_u lacks the input rows' qkv share
            d_qkv_pre = grad_tapes[0].d_qkv_pre[:, memory_rows:]  # (T, B, Q)
            deferred = (d_qkv_pre, cache.block_weights[0].qkv_weight)
        dx, local, qkv_weight_grad = input_path_backward(
            cache.inputs, u, d_u, d_gate_x, self.params, deferred, input_grad
        )
        if qkv_weight_grad is not None:  # the input rows' share, left out by block0's grads
            grads["block0.qkv.W"] += qkv_weight_grad - row_mean(qkv_weight_grad)
        grads.update(local)
        return dx, grads

    def _trace(self, cache):
        slots, mem_size = self.hyper.mem_slots, self.mem_size
        steps = cache.rows.shape[0] - 1
        batch = cache.rows.shape[1] // (slots + 1)
        # L x [T, S, B, H, R] -> [T, L, S, B, H, R] -> [B, T, L, H, R, S]: row query, column key
        attention = np.stack([tape.weights for tape in cache.blocks], axis=1)
        trace = {"attention": attention.transpose(3, 0, 1, 4, 5, 2).copy()}
        if cache.gates is not None:
            width = self.gate_width
            # [T, N B, 2G] -> [T, N, B, 2G] -> [B, T, N, 2G]
            gates = cache.gates.gates.reshape(steps, slots, batch, -1).transpose(2, 0, 1, 3)
            trace["input_gate"] = gates[..., :width].copy()
            trace["forget_gate"] = gates[..., width:].copy()
        # [T, N B, F] -> [T, N, B, F] -> [B, T, N, F]
        memory = cache.rows[1:, : slots * batch].reshape(steps, slots, batch, mem_size)
        trace["memory"] = memory.transpose(2, 0, 1, 3).copy()
        return trace
