"""Batch analysis and trace downloads for a run's checkpoint.

These functions do NumPy work and block; the routes run them in the explorer's thread
pool. ``analyse_run`` draws a batch from the run's task and reduces ``models.analysis``
to JSON; ``trace_archive`` writes one sequence's full trace as an ``.npz``. Shapes: ``B``
batch, ``T`` steps, ``L`` blocks, ``H`` heads, ``N`` slots, ``J`` tracked objects.
"""

import io
import json
from pathlib import Path

import numpy as np

import models
from app.explorer import (
    ExplorerError,
    check_finite_prediction,
    check_posted_sequence,
    json_array,
    load_model,
)
from app.validation import FieldErrors, field_error
from models import analysis

# Cap on batch * T * (values one step of the trace holds), so the arrays of one request
# stay within a few hundred megabytes.
MAX_ANALYSIS_VALUES = 16_000_000

ANALYSIS_ARRAYS = (
    "attention_received",
    "input_attention",
    "entropy",
    "input_gate",
    "forget_gate",
    "output_gate",
    "memory_change",
    "slot_usage",
    "object_attention_correlation",
    "object_update_correlation",
)


def _task_of(run: dict):
    config = run["config"]
    try:
        return models.make_task(config["task"], **config["task_options"])
    except ValueError as exc:
        raise ExplorerError(f"the run's task can no longer be built: {exc}") from exc


def _step_values(model) -> int:
    """Return how many trace values one step of one sequence holds."""
    config = model.config
    if config["kind"] == "lstm":
        return 6 * config["hidden_size"]
    rows = config["mem_slots"] + 1
    width = config["head_size"] * config["num_heads"]
    return config["num_blocks"] * config["num_heads"] * rows * rows + 3 * rows * width


def _check_size(model, batch_size: int, steps: int) -> None:
    values = batch_size * steps * _step_values(model)
    if values > MAX_ANALYSIS_VALUES:
        message = (
            f"batch_size {batch_size} over {steps} steps gives {values} trace values for this "
            f"model, more than the limit of {MAX_ANALYSIS_VALUES}; use a smaller batch_size"
        )
        raise FieldErrors([field_error(("batch_size",), message, batch_size)])


def analyse_run(run: dict, checkpoint: Path, seed: int, batch_size: int) -> dict:
    """Analyse a run's checkpoint on ``batch_size`` sequences drawn with ``default_rng(seed)``.

    Two runs of the same task and task options analysed with the same seed and batch size
    see the same sequences, so their connectivity can be compared step by step.

    Raises:
        FieldErrors: for a batch whose trace would exceed ``MAX_ANALYSIS_VALUES``.
        ExplorerError: when the checkpoint or the run's task cannot be loaded.
    """
    task = _task_of(run)
    model = load_model(checkpoint)
    _check_size(model, batch_size, task.seq_len)
    x, _, info = task.sample_with_info(batch_size, np.random.default_rng(seed))
    result = analysis.analyse_batch(model, x, info)

    connectivity = result["connectivity"]  # (B, T)
    payload = {
        "run_id": run["id"],
        "model": model.kind,
        "task": task.name,
        "task_options": task.options,
        "seed": seed,
        "batch_size": batch_size,
        "steps": int(x.shape[1]),
        "connectivity": {
            "mean": json_array(connectivity.mean(axis=0)),  # (T,)
            "std": json_array(connectivity.std(axis=0)),  # (T,)
            "first": json_array(connectivity[0]),  # (T,), sequence 0 of the batch
        },
    }
    payload.update({key: _json_or_none(result.get(key)) for key in ANALYSIS_ARRAYS})
    if model.kind == "rmc":
        payload["max_entropy"] = result["max_entropy"]
        payload["unused_slots"] = result["unused_slots"]
        payload["unused_threshold"] = result["unused_threshold"]
        payload["num_slots"] = model.config["mem_slots"]
    return payload


def _json_or_none(value):
    return None if value is None else json_array(value)


def trace_archive(run: dict, checkpoint: Path, seed: int | None, inputs, target) -> bytes:
    """Return an ``.npz`` with one sequence's inputs, prediction, full trace and connectivity.

    The sequence is drawn from the run's task with ``seed``, or given as ``inputs`` [T][D]
    and optionally ``target``. Array names: ``inputs`` (T, D), ``target``, ``prediction``
    (O,), ``connectivity`` (T,), ``trace.<name>`` for every array of the model's trace
    without its batch axis, ``info.<name>`` for the task's ground truth (seeded sequences
    only), and ``__meta__``, a 0-d string with the run id, seed and model config as JSON.
    """
    task = _task_of(run)
    info = {}
    if inputs is None:
        x, y, info = task.sample_with_info(1, np.random.default_rng(seed))
    else:
        x, y = check_posted_sequence(task, inputs, target)
    model = load_model(checkpoint)
    _check_size(model, 1, x.shape[1])

    predictions, trace = model.predict(x, trace=True)
    if inputs is not None:
        check_finite_prediction(x, predictions, trace)
    arrays = {
        "inputs": x[0],
        "prediction": predictions[0],
        "connectivity": analysis.input_gradient_norms(model, x)[0],
    }
    if y is not None:
        arrays["target"] = np.asarray(y[0])
    arrays.update({f"trace.{name}": value[0] for name, value in trace.items()})
    arrays.update({f"info.{name}": np.asarray(value)[0] for name, value in info.items()})
    meta = {"run_id": run["id"], "task": task.name, "seed": seed, "model_config": model.config}
    arrays["__meta__"] = np.array(json.dumps(meta, sort_keys=True))

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
