"""Analytic matmul FLOPs of one training step, and the machine's measured matmul rate.

A training step's compute-bound limit is its matmul FLOPs divided by the best
float32 matmul rate NumPy's BLAS reaches on this machine with the same threads.
Elementwise work (layer norms, softmax, gates, Adam) is not counted, so the
limit is a lower bound on the time of a step, never reached in practice.

Counting: a product of (m, k) by (k, n) costs 2mkn FLOPs. The backward pass
of every product computes the gradients of both factors, each as costly as
the forward product, so a training step costs three times its forward
matmuls. That counts the gradient with respect to the data ``x`` too, which
a training step skips (``loss_and_grads``): 0.5% of the count on
``tracking`` and 1.0% on ``nth-farthest``. The backward pass of step 0
skips the gradient at the initial memory, a constant: the products of the
first block's qkv map and of the gates' memory term back to the memory rows.
The count leaves those two products out.
"""

import time

import numpy as np

from models.rmc import MIN_SPLIT_FLOPS


def matmul_flops(m, k, n):
    return 2 * m * k * n


def _readout_flops(rows, feature_size, readout_hidden, output_size):
    widths = [feature_size, *readout_hidden, output_size]
    return sum(matmul_flops(rows, a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))


def _input_map_flops(rows, input_size, width, columns):
    """FLOPs of a map u @ W (F, n) of the input rows, taken as models.rmc_input takes it."""
    if input_size < width:  # [x | 1] @ ([W_in; b_in] @ W)
        extended = input_size + 1
        return matmul_flops(extended, width, columns) + matmul_flops(rows, extended, columns)
    return matmul_flops(rows, width, columns)


def _splits_input_qkv(config, batch, width, qkv_width):
    """Return True when models.rmc takes the first block's qkv map of the input rows from x."""
    input_size = config["input_size"]
    saved = 2 * batch * qkv_width * (width - input_size - 1)
    return input_size < width and saved >= MIN_SPLIT_FLOPS


def _shares_initial_memory(config, batch, width, qkv_width):
    """Return True when models.rmc maps step 0's initial memory once per slot."""
    saved = 2 * (batch - 1) * config["mem_slots"] * width * qkv_width
    return saved >= MIN_SPLIT_FLOPS


def rmc_forward_flops(config, batch, steps):
    """Matmul FLOPs of one RMC forward pass over (batch, steps) for a model ``config``."""
    slots, heads, head_size = config["mem_slots"], config["num_heads"], config["head_size"]
    key_size = config["key_size"] or head_size
    width = heads * head_size  # F
    rows = slots + 1  # R
    qkv_width = heads * (2 * key_size + head_size)
    gate_width = {"unit": width, "memory": 1, None: 0}[config["gate_style"]]

    attention = (
        matmul_flops(batch * rows, width, qkv_width)  # qkv map
        + heads * batch * matmul_flops(rows, key_size, rows)  # q k^T
        + heads * batch * matmul_flops(rows, rows, head_size)  # weights v
    )
    layers = config["attention_mlp_layers"]
    # The last block's MLP runs on the N memory rows only: the input row's output is dropped.
    per_step = config["num_blocks"] * attention + layers * (
        (config["num_blocks"] - 1) * matmul_flops(batch * rows, width, width)
        + matmul_flops(batch * slots, width, width)
    )
    input_size = config["input_size"]
    total = matmul_flops(batch * steps, input_size, width)  # input projection
    if _splits_input_qkv(config, batch, width, qkv_width):
        # The first block maps the input rows for all steps at once, through x.
        per_step -= matmul_flops(batch, width, qkv_width)
        total += _input_map_flops(batch * steps, input_size, width, qkv_width)
    if gate_width:
        per_step += matmul_flops(batch * slots, width, 2 * gate_width)  # tanh(M) @ W_gm
        total += _input_map_flops(batch * steps, input_size, width, 2 * gate_width)
    total += steps * per_step
    if _shares_initial_memory(config, batch, width, qkv_width):
        # At step 0 the first block's qkv map and the gates take each slot of the
        # initial memory once instead of B times.
        total -= matmul_flops((batch - 1) * slots, width, qkv_width + 2 * gate_width)

    readout_rows = batch * steps if config["per_step_targets"] else batch
    return total + _readout_flops(
        readout_rows, slots * width, config["readout_hidden"], config["output_size"]
    )


def lstm_forward_flops(config, batch, steps):
    """Matmul FLOPs of one LSTM forward pass over (batch, steps) for a model ``config``."""
    units = config["hidden_size"]
    total = steps * matmul_flops(batch, config["input_size"] + units, 4 * units)
    readout_rows = batch * steps if config["per_step_targets"] else batch
    return total + _readout_flops(
        readout_rows, units, config["readout_hidden"], config["output_size"]
    )


def training_step_flops(config, batch, steps):
    """Matmul FLOPs of forward plus backward: three times the forward matmuls.

    For the RMC, less the gradient at step 0's initial memory, which the step skips.
    """
    if config["kind"] == "lstm":
        return 3 * lstm_forward_flops(config, batch, steps)
    return 3 * rmc_forward_flops(config, batch, steps) - _initial_memory_grad_flops(config, batch)


def _initial_memory_grad_flops(config, batch):
    """FLOPs of the products back to step 0's memory rows, which the RMC's backward skips."""
    width = config["num_heads"] * config["head_size"]  # F
    key_size = config["key_size"] or config["head_size"]
    qkv_width = config["num_heads"] * (2 * key_size + config["head_size"])
    gate_width = {"unit": width, "memory": 1, None: 0}[config["gate_style"]]
    shared = _shares_initial_memory(config, batch, width, qkv_width)
    rows = config["mem_slots"] * (1 if shared else batch)  # the forward's rows of that memory
    return matmul_flops(rows, qkv_width + 2 * gate_width, width)


def largest_matmul_shape(config, batch):
    """Return the (m, k, n) of the model's largest per-step matmul, the one that dominates."""
    if config["kind"] == "lstm":
        units = config["hidden_size"]
        return batch, config["input_size"] + units, 4 * units
    width = config["num_heads"] * config["head_size"]
    key_size = config["key_size"] or config["head_size"]
    return (
        batch * (config["mem_slots"] + 1),
        width,
        config["num_heads"] * (2 * key_size + config["head_size"]),
    )


class MatmulRate:
    """Measure the float32 matmul rate of NumPy's BLAS in short bursts.

    Each burst times ``repeats`` products of every shape in CPU time and keeps
    the best shape's median rate. Bursts spread over a benchmark sample the
    machine in the same state as the steps they are compared with.

    Args:
        shapes: (m, k, n) products to time; the default adds 1024 cubed to
            the model's own shapes.
        repeats: products timed per shape and burst.
    """

    def __init__(self, shapes, repeats=5, seed=0):
        rng = np.random.default_rng(seed)
        self.operands = [
            (
                rng.standard_normal((m, k)).astype(np.float32),
                rng.standard_normal((k, n)).astype(np.float32),
            )
            for m, k, n in shapes
        ]
        self.repeats = repeats
        self.samples = []  # FLOP/s of each burst

    def burst(self):
        best = 0.0
        for a, b in self.operands:
            out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
            np.matmul(a, b, out=out)  # touch the operands once before timing
            seconds = []
            for _ in range(self.repeats):
                started = time.process_time()
                np.matmul(a, b, out=out)
                seconds.append(time.process_time() - started)
            flops = matmul_flops(a.shape[0], a.shape[1], b.shape[1])
            best = max(best, flops / float(np.median(seconds)))
        self.samples.append(best)
        return best

    def median(self):
        return float(np.median(self.samples))
