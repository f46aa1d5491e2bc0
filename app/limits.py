"""Hard limits of the HTTP API and an estimate of what a run costs before it is queued.

The per-field limits of tasks and models come from ``models.TASK_SPECS`` and
``models.MODEL_SPECS``; this module adds the limits of training fields, of explorer
requests, and caps on the estimated size of a whole run.

Shapes: ``B`` batch, ``T`` time steps, ``D`` input size, ``O`` output size, ``N`` memory
slots, ``H`` heads, ``F`` memory width (``head_size * num_heads``), ``K`` key size per
head, ``V`` value size per head (``head_size``), ``U`` LSTM hidden units.
"""

from dataclasses import dataclass

# Training fields (inclusive).
MAX_STEPS = 1_000_000
MAX_BATCH_SIZE = 4096
MAX_EVAL_SIZE = 8192
MAX_INTERVAL = 1_000_000
MAX_LEARNING_RATE = 1.0
MAX_CLIP_NORM = 1e6
MAX_SEED = 2**32 - 1
MAX_OPTIONS = 32

# Whole-run caps on estimates; see ``estimate_run_cost``.
MAX_PARAMETERS = 16_000_000
MAX_MEMORY_BYTES = 6 * 2**30
MAX_TRAINING_FLOPS = 1e16
MAX_METRIC_ROWS = 100_000

# Explorer requests.
MAX_SEQUENCE_STEPS = 256
MAX_INPUT_SIZE = 4096
MAX_TRACE_VALUES = 4_000_000
MAX_PENDING_PREDICTIONS = 16
# Sequences one slot and attention analysis request may draw.
MAX_ANALYSIS_BATCH = 256

# Runs one sweep may launch.
MAX_SWEEP_RUNS = 64


@dataclass(frozen=True)
class RunCost:
    """Estimated size of one training run.

    Attributes:
        parameters: trainable parameters.
        memory_bytes: activations kept for backpropagation through time over one batch,
            plus parameters, gradients and the two Adam moments.
        flops: floating-point operations of the whole run: forward and backward passes
            of every training batch, plus every held-out evaluation.
    """

    parameters: int
    memory_bytes: int
    flops: float


def _readout_sizes(features: int, hidden: list[int], outputs: int) -> tuple[int, int, int]:
    """Return (parameters, multiply-adds, activations kept) of one readout of the MLP."""
    widths = [features, *hidden, outputs]
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return weights + sum(widths[1:]), weights, 2 * sum(widths)


def _rmc_step_sizes(hyper: dict, input_size: int) -> tuple[int, int, int]:
    """Return (core parameters, multiply-adds per step, activations kept per step).

    Counts are per sequence of the batch. The activation count assumes each layer keeps
    its input, its pre-normalisation values and its output for the backward pass.
    """
    slots, heads, value = hyper["mem_slots"], hyper["num_heads"], hyper["head_size"]
    key = hyper.get("key_size") or value
    width = heads * value  # F
    rows = slots + 1  # N + 1: the memory plus the input row
    qkv = heads * (2 * key + value)
    mlp_layers = hyper["attention_mlp_layers"]
    gate = {"unit": width, "memory": 1, None: 0}[hyper.get("gate_style", "unit")]

    block_params = width * qkv + qkv + 2 * qkv + mlp_layers * (width * width + width) + 4 * width
    params = input_size * width + width + hyper["num_blocks"] * block_params
    params += 2 * (width * 2 * gate + 2 * gate)

    block_madds = rows * width * qkv + heads * rows * rows * (key + value)
    block_madds += mlp_layers * rows * width * width
    madds = input_size * width + hyper["num_blocks"] * block_madds + 2 * width * 2 * gate * slots

    block_kept = rows * (3 * qkv + (4 + 2 * mlp_layers) * width) + 2 * heads * rows * rows
    kept = 2 * width + hyper["num_blocks"] * block_kept + slots * width * 8
    return params, madds, kept


def _lstm_step_sizes(hyper: dict, input_size: int) -> tuple[int, int, int]:
    units = hyper["hidden_size"]
    params = (input_size + units) * 4 * units + 4 * units
    madds = (input_size + units) * 4 * units
    kept = input_size + 13 * units
    return params, madds, kept


def estimate_run_cost(
    kind: str,
    hyper: dict,
    input_size: int,
    output_size: int,
    seq_len: int,
    config: dict,
) -> RunCost:
    """Estimate the parameters, peak memory and total compute of a run.

    ``hyper`` holds every hyperparameter of the model (defaults filled in); ``config``
    holds ``steps``, ``batch_size``, ``eval_interval``, ``eval_size`` and ``dtype``.
    These are estimates within a small factor, meant to reject runs that cannot fit,
    not to predict the exact footprint.
    """
    step_sizes = _rmc_step_sizes if kind == "rmc" else _lstm_step_sizes
    core_params, step_madds, step_kept = step_sizes(hyper, input_size)
    if kind == "rmc":
        features = hyper["mem_slots"] * hyper["num_heads"] * hyper["head_size"]  # N * F
    else:
        features = hyper["hidden_size"]  # U
    readout_params, readout_madds, readout_kept = _readout_sizes(
        features, list(hyper.get("readout_hidden") or []), output_size
    )
    readouts = seq_len if hyper.get("per_step_targets") else 1
    parameters = core_params + readout_params

    # Forward multiply-adds of one sequence; backward costs about twice the forward.
    sequence_madds = seq_len * step_madds + readouts * readout_madds
    batch, steps = config["batch_size"], config["steps"]
    evaluations = steps // config["eval_interval"] + 1
    flops = 2.0 * sequence_madds * (3 * batch * steps + config["eval_size"] * evaluations)

    value_bytes = 8 if config.get("dtype") == "float64" else 4
    kept_values = batch * (seq_len * step_kept + readouts * readout_kept)
    memory_bytes = value_bytes * (kept_values + 4 * parameters)
    return RunCost(parameters=parameters, memory_bytes=memory_bytes, flops=flops)
