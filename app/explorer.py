"""Explorer computations: generate a sequence, run a checkpoint on it, reduce the trace.

These functions do NumPy work and block; the routes run them in worker threads. Shapes:
``T`` time steps, ``D`` input size, ``O`` output size, ``L`` attention blocks, ``H``
heads, ``N`` memory slots, ``F`` memory width, ``U`` LSTM hidden units. Arrays from a
model carry a leading batch axis of size 1, which the JSON payloads drop.
"""

import math
from pathlib import Path

import numpy as np

import models
from app import limits
from app.json_encoding import MAX_VALUES_PER_CALL
from app.validation import FieldErrors, field_error
from models.losses import loss_and_gradient

LSTM_TRACE_KEYS = ("input_gate", "forget_gate", "output_gate", "cell", "hidden")


class ExplorerError(Exception):
    """A run cannot serve predictions, for example because its checkpoint is unreadable."""


def json_array(array: np.ndarray):
    """Return ``array`` as nested lists, with NaN and infinities as None.

    Large arrays are converted one slice of the first axis at a time, because ``tolist``
    holds the GIL for the whole call and would stall the server's event loop.
    """
    array = np.asarray(array)
    if array.ndim > 1 and array.size > MAX_VALUES_PER_CALL:
        return [json_array(part) for part in array]
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        values = array.astype(object)
        values[~np.isfinite(array)] = None
        return values.tolist()
    return array.tolist()


def _info_for_first_sequence(info: dict) -> dict:
    return {key: json_array(np.asarray(value)[0]) for key, value in info.items()}


def generate_sequence(task_name: str, task_options: dict, seed: int) -> dict:
    """Draw one sequence of a task with ``numpy.random.default_rng(seed)``.

    Raises:
        FieldErrors: when ``task_options`` are invalid for the task.
    """
    try:
        task = models.make_task(task_name, **task_options)
    except ValueError as exc:
        raise FieldErrors([field_error(("task_options",), str(exc), task_options)]) from exc
    x, y, info = task.sample_with_info(1, np.random.default_rng(seed))
    return {
        "task": task.name,
        "task_options": task.options,
        "seed": seed,
        "inputs": json_array(x[0]),  # (T, D)
        "target": json_array(y[0]),  # (O,) or a class label
        "info": _info_for_first_sequence(info),
    }


def load_model(checkpoint: Path):
    """Load a run's checkpoint; raise ExplorerError with a message safe to show a client."""
    try:
        return models.load_checkpoint(checkpoint)
    except models.CheckpointError as exc:
        message = str(exc).replace(str(checkpoint), checkpoint.name)
        raise ExplorerError(f"the checkpoint cannot be used: {message}") from exc


def _trace_size(model, steps: int) -> int:
    """Return how many numbers the reduced trace of ``steps`` steps will hold."""
    config = model.config
    if config["kind"] == "lstm":
        return len(LSTM_TRACE_KEYS) * steps * config["hidden_size"]
    rows = config["mem_slots"] + 1
    attention = steps * config["num_blocks"] * config["num_heads"] * rows * rows
    return attention + 3 * steps * config["mem_slots"]


def check_posted_sequence(task, inputs: list[list[float]], target) -> tuple[np.ndarray, object]:
    """Return the posted inputs (1, T, D) and target as arrays, or raise FieldErrors."""
    widths = {len(row) for row in inputs}
    if widths != {task.input_size}:
        message = (
            f"inputs must have {task.input_size} values per step for task {task.name!r}, "
            f"got rows of length {sorted(widths)}"
        )
        raise FieldErrors([field_error(("inputs",), message, sorted(widths))])
    x = np.asarray(inputs, dtype=np.float64)[None]  # (1, T, D)
    if target is None:
        return x, None
    if task.loss == "cross_entropy":
        if not isinstance(target, int) or not 0 <= target < task.output_size:
            message = f"target must be a class label from 0 to {task.output_size - 1}"
            raise FieldErrors([field_error(("target",), f"{message}, got {target!r}", target)])
        return x, np.asarray([target])  # (1,)
    if not isinstance(target, list) or len(target) != task.output_size:
        message = f"target must be a list of {task.output_size} numbers for task {task.name!r}"
        raise FieldErrors([field_error(("target",), f"{message}, got {target!r}", target)])
    return x, np.asarray([target], dtype=np.float64)  # (1, O)


def check_finite_prediction(x: np.ndarray, outputs: np.ndarray, trace: dict) -> None:
    """Raise FieldErrors naming ``inputs`` when the prediction or trace for posted x is not finite.

    Inputs far outside a task's scale, such as 1e308, overflow the model's
    floating-point arithmetic, and the result would be all NaN.
    """
    if np.isfinite(outputs).all() and all(np.isfinite(value).all() for value in trace.values()):
        return
    largest = float(np.abs(x).max())
    message = (
        f"the model's output is not finite for these inputs, whose largest magnitude is "
        f"{largest:g}; send inputs on the scale of the task's own sequences"
    )
    raise FieldErrors([field_error(("inputs",), message, largest)])


def predict_run(run: dict, checkpoint: Path, seed: int | None, inputs, target) -> dict:
    """Run a run's checkpoint on one sequence with tracing on; return the explorer payload.

    The sequence is drawn from the run's task with ``seed``, or given as ``inputs`` (and
    optionally ``target``).

    Raises:
        FieldErrors: for posted inputs or a target that do not fit the run's task,
            posted inputs whose prediction is not finite, or a trace over
            ``limits.MAX_TRACE_VALUES``.
        ExplorerError: when the checkpoint cannot be loaded.
    """
    config = run["config"]
    try:
        task = models.make_task(config["task"], **config["task_options"])
    except ValueError as exc:
        raise ExplorerError(f"the run's task can no longer be built: {exc}") from exc
    info = None
    if inputs is None:
        x, y, info = task.sample_with_info(1, np.random.default_rng(seed))
        info = _info_for_first_sequence(info)
    else:
        x, y = check_posted_sequence(task, inputs, target)

    model = load_model(checkpoint)
    trace_size = _trace_size(model, x.shape[1])
    if trace_size > limits.MAX_TRACE_VALUES:
        message = (
            f"the trace of this model over {x.shape[1]} steps has {trace_size} values, more "
            f"than the limit of {limits.MAX_TRACE_VALUES}; send fewer steps"
        )
        raise FieldErrors([field_error(("inputs",), message, x.shape[1])])

    outputs, trace = model.predict(x, trace=True)
    if inputs is not None:
        check_finite_prediction(x, outputs, trace)
    payload = {
        "run_id": run["id"],
        "model": model.kind,
        "task": task.name,
        "seed": seed if inputs is None else None,
        "inputs": json_array(x[0]),  # (T, D)
        "target": None if y is None else json_array(y[0]),
        "prediction": json_array(outputs[0]),  # (O,)
        "probabilities": None,
        "loss": None,
        "info": info,
        "trace": reduce_trace(model.kind, trace),
    }
    if task.loss == "cross_entropy":
        payload["probabilities"] = json_array(_softmax(outputs[0]))
    per_step = model.config.get("per_step_targets", False)
    if y is not None and not per_step:
        loss, _ = loss_and_gradient(task.loss, outputs, y)
        payload["loss"] = loss if math.isfinite(loss) else None
    return payload


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def reduce_trace(kind: str, trace: dict) -> dict:
    """Reduce a model trace of one sequence to the JSON the explorer plots.

    RMC: ``attention`` is [T][L][H][N+1][N+1]. ``input_gate`` and ``forget_gate`` are
    [T][N], the mean over each slot's gate units, or None when the model has no gates.
    ``memory_norm`` is [T][N], the L2 norm of each slot. LSTM: each gate, ``cell`` and
    ``hidden`` are [T][U].
    """
    if kind == "lstm":
        return {key: json_array(trace[key][0]) for key in LSTM_TRACE_KEYS}  # (T, U)
    reduced = {"attention": json_array(trace["attention"][0])}  # (T, L, H, N+1, N+1)
    for key in ("input_gate", "forget_gate"):
        gate = trace.get(key)
        # (T, N, F) or (T, N, 1) -> (T, N)
        reduced[key] = None if gate is None else json_array(gate[0].mean(axis=-1))
    reduced["memory_norm"] = json_array(np.linalg.norm(trace["memory"][0], axis=-1))  # (T, N)
    return reduced
