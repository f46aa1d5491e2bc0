"""PyTorch references of the NumPy RMC and LSTM, for the oracle test and the benchmark.

Shapes: B batch, T steps, D input size, N memory slots, H heads, K key size per
head, V value size per head, F = H * V memory width, R = N + 1 rows attended
over, G gate width per slot, U LSTM hidden units, O outputs.

The RMC is written from the equations in the docstrings of ``models.rmc`` and
``models.attention``, in idiomatic eager PyTorch (``F.linear``,
``F.layer_norm``, batched matmuls over heads). Its parameters are leaf tensors
with the NumPy model's names and shapes, weights stored (in, out), so
``params`` maps one to one onto the NumPy model's ``params``. Every block has
its own qkv map and layer norms, and all blocks share one attention MLP.

The LSTM is ``torch.nn.LSTM``, the framework's fused implementation, plus the
same readout MLP. ``nn.LSTM`` keeps two weights of shape (4U, D) and (4U, U)
in gate order [i | f | g | o], while the NumPy model keeps one ``lstm.W`` of
shape (D + U, 4U) in gate order [i | f | o | g]; ``TorchLSTM`` converts between
the two layouts in both directions. Its second bias ``bias_hh_l0`` is fixed at
zero, so that both models have the same parameters.

This module is used only by ``bench/`` and the oracle test; ``models/`` and
``app/`` never import PyTorch.
"""

import numpy as np
import torch
import torch.nn.functional as F

from models.layers import LAYER_NORM_EPS
from models.rmc import FORGET_GATE_BIAS, INPUT_GATE_BIAS


def _leaf(value, dtype):
    return torch.tensor(np.asarray(value), dtype=dtype, requires_grad=True)


def mlp_forward(features, layers):
    """Apply an MLP, a list of (W (in, out), b) pairs, with ReLU between layers and none after."""
    out = features
    for index, (weight, bias) in enumerate(layers):
        out = F.linear(out, weight.t(), bias)  # (..., in) @ (in, out) + (out,)
        if index < len(layers) - 1:
            out = torch.relu(out)
    return out


def loss_of(outputs, targets, loss):
    """Return the mean loss of ``models.losses``: "mse" or "cross_entropy" over every target."""
    if loss == "mse":
        return F.mse_loss(outputs, targets)
    if loss == "cross_entropy":
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
    raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")


class TorchModel:
    """Shared parts of the two references: parameters, readout, and NumPy conversions.

    Subclasses set ``self.params`` (name -> leaf tensor) and implement
    ``core_forward(x) -> (features (B, T, S), trace or None)``.
    """

    def __init__(self, config, dtype):
        self.config = config
        self.dtype = dtype
        self.per_step_targets = config["per_step_targets"]
        self.readout_count = len(config["readout_hidden"]) + 1

    def parameters(self):
        return [value for value in self.params.values() if value.requires_grad]

    def _readout_layers(self):
        return [
            (self.params[f"readout.{j}.W"], self.params[f"readout.{j}.b"])
            for j in range(self.readout_count)
        ]

    def forward(self, x, trace=False):
        """Return (outputs (B, O), or (B, T, O) for per-step targets, and the trace or None)."""
        features, trace_arrays = self.core_forward(x, trace)
        selected = features if self.per_step_targets else features[:, -1]
        return mlp_forward(selected, self._readout_layers()), trace_arrays

    def numpy_grads(self):
        """Return the gradients as NumPy arrays under the NumPy model's names and shapes."""
        return {name: value.grad.detach().numpy().copy() for name, value in self.params.items()}


class TorchRMC(TorchModel):
    """The Relational Memory Core of ``models.rmc`` in eager PyTorch.

    Trace arrays when requested: ``attention`` (B, T, L, H, R, R),
    ``input_gate`` and ``forget_gate`` (B, T, N, G) when gated, and
    ``memory`` (B, T, N, F).
    """

    def __init__(self, config, params, dtype=torch.float32):
        super().__init__(config, dtype)
        self.params = {name: _leaf(value, dtype) for name, value in params.items()}
        self.mem_slots = config["mem_slots"]
        self.num_heads = config["num_heads"]
        self.head_size = config["head_size"]
        self.key_size = config["key_size"] or config["head_size"]
        self.num_blocks = config["num_blocks"]
        self.mlp_layers = config["attention_mlp_layers"]
        self.gated = config["gate_style"] is not None
        self.mem_size = self.num_heads * self.head_size

    def _initial_memory(self, batch):
        eye = torch.eye(self.mem_slots, self.mem_size, dtype=self.dtype)
        return eye.expand(batch, self.mem_slots, self.mem_size)  # (B, N, F)

    def block_forward(self, z, block, mlp):
        """Apply one block to rows z (B, R, F); return (rows (B, R, F), weights (B, H, R, R))."""
        batch, rows, _ = z.shape
        heads, key_size = self.num_heads, self.key_size
        qkv = F.linear(z, block["qkv.W"].t(), block["qkv.b"])  # (B, R, H(2K+V))
        qkv = F.layer_norm(
            qkv, qkv.shape[-1:], block["qkv_norm.gain"], block["qkv_norm.bias"], LAYER_NORM_EPS
        )
        # [B, R, H(2K+V)] -> [B, R, H, 2K+V] -> [B, H, R, 2K+V]
        qkv = qkv.view(batch, rows, heads, -1).transpose(1, 2)
        q, k, v = qkv.split([key_size, key_size, self.head_size], dim=-1)
        logits = (q * key_size**-0.5) @ k.transpose(-1, -2)  # (B, H, R, K) @ (B, H, K, R)
        weights = torch.softmax(logits, dim=-1)
        # (B, H, R, R) @ (B, H, R, V) -> [B, H, R, V] -> [B, R, H, V] -> [B, R, F]
        attended = (weights @ v).transpose(1, 2).reshape(batch, rows, self.mem_size)

        width = (self.mem_size,)
        z1 = F.layer_norm(
            z + attended, width, block["attention_norm.gain"], block["attention_norm.bias"],
            LAYER_NORM_EPS,
        )  # fmt: skip
        hidden = mlp_forward(z1, mlp)  # the shared row-wise MLP
        out = F.layer_norm(
            z1 + hidden, width, block["mlp_norm.gain"], block["mlp_norm.bias"], LAYER_NORM_EPS
        )
        return out, weights

    def gate_forward(self, candidate, memory, gate_x):
        """Return (M_t, input gate, forget gate) from C, M_{t-1} (B, N, F) and u @ W_gx + b_gx."""
        p = self.params
        pre = F.linear(torch.tanh(memory), p["gate_memory.W"].t(), p["gate_memory.b"])
        pre = pre + gate_x[:, None]  # (B, N, 2G), the input part broadcast over slots
        input_pre, forget_pre = pre.chunk(2, dim=-1)  # order [i | f]
        input_gate = torch.sigmoid(input_pre + INPUT_GATE_BIAS)
        forget_gate = torch.sigmoid(forget_pre + FORGET_GATE_BIAS)
        return input_gate * torch.tanh(candidate) + forget_gate * memory, input_gate, forget_gate

    def core_forward(self, x, trace=False):
        p = self.params
        batch, steps, _ = x.shape
        blocks = [
            {name.split(".", 1)[1]: p[name] for name in p if name.startswith(f"block{b}.")}
            for b in range(self.num_blocks)
        ]
        mlp = [
            (p[f"attention_mlp.{j}.W"], p[f"attention_mlp.{j}.b"]) for j in range(self.mlp_layers)
        ]

        # Input projections for all steps at once: (B, T, D) -> (B, T, F) -> (B, T, 2G).
        projected = F.linear(x, p["input_proj.W"].t(), p["input_proj.b"])
        if self.gated:
            gate_x = F.linear(projected, p["gate_input.W"].t(), p["gate_input.b"])

        memory = self._initial_memory(batch)
        memories, attention, input_gates, forget_gates = [], [], [], []
        for t in range(steps):
            z = torch.cat([memory, projected[:, t, None]], dim=1)  # (B, R, F)
            weights = []
            for block in blocks:
                z, block_weights = self.block_forward(z, block, mlp)
                weights.append(block_weights)
            candidate = z[:, : self.mem_slots]  # input row dropped
            if self.gated:
                memory, input_gate, forget_gate = self.gate_forward(candidate, memory, gate_x[:, t])
                input_gates.append(input_gate)
                forget_gates.append(forget_gate)
            else:
                memory = candidate
            memories.append(memory)
            attention.append(torch.stack(weights, dim=1))  # (B, L, H, R, R)

        features = torch.stack(memories, dim=1)  # (B, T, N, F)
        trace_arrays = None
        if trace:
            trace_arrays = {"attention": torch.stack(attention, dim=1), "memory": features}
            if self.gated:
                trace_arrays["input_gate"] = torch.stack(input_gates, dim=1)
                trace_arrays["forget_gate"] = torch.stack(forget_gates, dim=1)
        return features.reshape(batch, steps, -1), trace_arrays


class TorchLSTM(TorchModel):
    """``torch.nn.LSTM`` with the readout MLP, loaded from NumPy LSTM parameters."""

    def __init__(self, config, params, dtype=torch.float32):
        super().__init__(config, dtype)
        units, input_size = config["hidden_size"], config["input_size"]
        self.input_size = input_size
        self.lstm = torch.nn.LSTM(input_size, units, batch_first=True).to(dtype)
        # Columns of the NumPy gate order [i | f | o | g] taken in torch's order [i | f | g | o].
        blocks = np.arange(4 * units).reshape(4, units)
        self.torch_columns = blocks[[0, 1, 3, 2]].reshape(-1)

        weight = np.asarray(params["lstm.W"])[:, self.torch_columns]  # (D + U, 4U)
        with torch.no_grad():
            self.lstm.weight_ih_l0.copy_(torch.from_numpy(weight[:input_size].T.copy()))
            self.lstm.weight_hh_l0.copy_(torch.from_numpy(weight[input_size:].T.copy()))
            self.lstm.bias_ih_l0.copy_(torch.from_numpy(params["lstm.b"][self.torch_columns]))
            self.lstm.bias_hh_l0.zero_()
        self.lstm.bias_hh_l0.requires_grad_(False)

        self.params = {
            "lstm.weight_ih_l0": self.lstm.weight_ih_l0,
            "lstm.weight_hh_l0": self.lstm.weight_hh_l0,
            "lstm.bias_ih_l0": self.lstm.bias_ih_l0,
        }
        for name, value in params.items():
            if name.startswith("readout."):
                self.params[name] = _leaf(value, dtype)

    def core_forward(self, x, trace=False):
        if trace:
            raise ValueError("the nn.LSTM reference has no gate trace; call with trace=False")
        hidden, _ = self.lstm(x)  # (B, T, U)
        return hidden, None

    def numpy_grads(self):
        grads = {
            name: value.grad.detach().numpy().copy()
            for name, value in self.params.items()
            if name.startswith("readout.")
        }
        # Back to one (D + U, 4U) weight in the NumPy gate order.
        weight_ih = self.lstm.weight_ih_l0.grad.detach().numpy()  # (4U, D)
        weight_hh = self.lstm.weight_hh_l0.grad.detach().numpy()  # (4U, U)
        stacked = np.concatenate([weight_ih.T, weight_hh.T], axis=0)  # (D + U, 4U), torch order
        weight = np.empty_like(stacked)
        weight[:, self.torch_columns] = stacked
        bias_torch_order = self.lstm.bias_ih_l0.grad.detach().numpy()  # (4U,)
        bias = np.empty_like(bias_torch_order)
        bias[self.torch_columns] = bias_torch_order
        grads["lstm.W"], grads["lstm.b"] = weight, bias
        return grads


def from_numpy_model(model, dtype=torch.float32):
    """Return the PyTorch reference of a NumPy model, holding a copy of its parameters."""
    classes = {"rmc": TorchRMC, "lstm": TorchLSTM}
    return classes[model.kind](model.config, model.params, dtype)
