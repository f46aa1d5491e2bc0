"""Checks of run requests that depend on more than one field, and the 422 error format.

A rejected request gets status 422 and ``{"detail": [{"loc", "msg", "type", "input"},
…]}``, the shape FastAPI uses for pydantic errors. Every ``msg`` names the field, the rule
or limit, and the value received, for example ``"steps must be less than or equal to
1000000, got 2000000"``.
"""

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import models
from app import limits
from app.schemas import RunCreate
from models.curriculum import CurriculumError
from models.factory import MAX_MEM_SIZE


class FieldErrors(Exception):
    """One or more invalid fields; rendered like pydantic's request validation errors."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(error["msg"] for error in errors))
        self.errors = errors


def field_error(loc: tuple, message: str, value: Any = None) -> dict:
    return {"loc": ["body", *loc], "msg": message, "type": "value_error", "input": value}


# Options of tasks and models


def _type_rule(spec: dict) -> str:
    kind = spec["type"]
    if kind == "bool":
        return "true or false"
    if kind == "choice":
        return f"one of {spec['choices']}"
    if kind == "int_list":
        return (
            f"a list of at most {spec['max_length']} integers from {spec['min']} to {spec['max']}"
        )
    noun = "an integer" if kind == "int" else "a number"
    rule = f"{noun} from {spec['min']} to {spec['max']}"
    return f"{rule} or null" if spec.get("nullable") else rule


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _option_valid(spec: dict, value: Any) -> bool:
    kind = spec["type"]
    if value is None:
        return bool(spec.get("nullable")) or (kind == "choice" and None in spec["choices"])
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "choice":
        return value in spec["choices"]
    if kind == "int_list":
        return (
            isinstance(value, list)
            and len(value) <= spec["max_length"]
            and all(_is_int(item) and spec["min"] <= item <= spec["max"] for item in value)
        )
    if kind == "int" and not _is_int(value):
        return False
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return False
    return spec["min"] <= value <= spec["max"]


def check_options(field: str, owner: str, specs: list[dict], values: dict) -> tuple[dict, list]:
    """Check option values against their specs; return (resolved options, errors).

    Resolved options contain every option of ``specs``, with defaults for omitted ones.
    """
    by_name = {spec["name"]: spec for spec in specs}
    errors = []
    for name, value in values.items():
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(by_name) or "none"
            message = f"{field}: unknown option {name!r} for {owner}; known options: {known}"
            errors.append(field_error((field, name), message, value))
        elif not _option_valid(spec, value):
            message = f"{field}.{name} must be {_type_rule(spec)}, got {value!r}"
            errors.append(field_error((field, name), message, value))
    resolved = {spec["name"]: values.get(spec["name"], spec["default"]) for spec in specs}
    for spec in specs:
        if spec["type"] == "float" and _is_int(resolved[spec["name"]]):
            resolved[spec["name"]] = float(resolved[spec["name"]])
    return resolved, errors


# Run requests


@dataclass(frozen=True)
class ResolvedRun:
    """A valid run request: the resolved training config and what it will cost."""

    id: str
    name: str
    config: dict
    cost: limits.RunCost


def new_run_id() -> str:
    """Return a fresh run id: 12 lowercase hexadecimal characters."""
    return secrets.token_hex(6)


def resolve_run(request: RunCreate) -> ResolvedRun:
    """Check a run request beyond its field types and build its training config.

    Raises:
        FieldErrors: for invalid options, inconsistent fields or a run over the limits.
    """
    task_options, errors = check_options(
        "task_options",
        f"task {request.task!r}",
        models.TASK_SPECS[request.task]["options"],
        request.task_options,
    )
    model_options, model_errors = check_options(
        "model_options",
        f"model {request.model!r}",
        models.MODEL_SPECS[request.model]["options"],
        request.model_options,
    )
    errors += model_errors
    errors += _check_training_fields(request)
    if errors:
        raise FieldErrors(errors)

    try:
        task = models.make_task(request.task, **task_options)
    except ValueError as exc:
        raise FieldErrors([field_error(("task_options",), str(exc), request.task_options)]) from exc
    if request.model == "rmc":
        _check_memory_width(model_options)
    if model_options.get("per_step_targets") and not _has_per_step_targets(task):
        message = (
            f"model_options.per_step_targets must be false for task {task.name!r}, "
            "which has one target per sequence"
        )
        raise FieldErrors([field_error(("model_options", "per_step_targets"), message, True)])

    config = request.model_dump()
    config["task_options"] = dict(task.options)
    config["model_options"] = model_options
    try:
        config = models.TrainConfig.from_dict(config).to_dict()
    except CurriculumError as exc:
        loc = ("curriculum", *exc.loc)
        raise FieldErrors([field_error(loc, str(exc), None)]) from exc
    except ValueError as exc:
        raise FieldErrors([field_error((), str(exc))]) from exc

    cost = limits.estimate_run_cost(
        request.model, model_options, task.input_size, task.output_size, task.seq_len, config
    )
    _check_cost(cost, request)
    run_id = new_run_id()
    name = f"{request.model}-{request.task}-s{request.seed}-{run_id[:4]}"
    return ResolvedRun(id=run_id, name=name, config=config, cost=cost)


def _check_training_fields(request: RunCreate) -> list[dict]:
    errors = []
    if request.warmup_steps > request.steps:
        errors.append(
            field_error(
                ("warmup_steps",),
                f"warmup_steps must be at most steps ({request.steps}), got {request.warmup_steps}",
                request.warmup_steps,
            )
        )
    metric_rows = request.steps // request.log_interval
    if metric_rows > limits.MAX_METRIC_ROWS:
        errors.append(
            field_error(
                ("log_interval",),
                f"log_interval {request.log_interval} gives {metric_rows} metric rows for "
                f"{request.steps} steps, more than the limit of {limits.MAX_METRIC_ROWS}; "
                f"use a log_interval of at least {-(-request.steps // limits.MAX_METRIC_ROWS)}",
                request.log_interval,
            )
        )
    return errors


def _has_per_step_targets(task) -> bool:
    """Return whether the task's targets have a time axis: (B, T, O) or labels (B, T)."""
    _, y = task.sample(1, np.random.default_rng(0))
    return y.ndim == (3 if task.loss == "mse" else 2)


def _check_memory_width(hyper: dict) -> None:
    width = hyper["head_size"] * hyper["num_heads"]
    if width > MAX_MEM_SIZE:
        message = (
            f"head_size * num_heads (the memory width) must be at most {MAX_MEM_SIZE}, "
            f"got {hyper['head_size']} * {hyper['num_heads']} = {width}"
        )
        raise FieldErrors([field_error(("model_options", "head_size"), message, width)])


# The options that set a model's size: its parameter count and activation memory.
SIZE_OPTIONS = {
    "rmc": ("mem_slots", "num_heads", "head_size", "readout_hidden"),
    "lstm": ("hidden_size", "readout_hidden"),
}


def _size_options(model: str) -> str:
    names = SIZE_OPTIONS.get(model, ())
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "the model size"


def _check_cost(cost: limits.RunCost, request: RunCreate) -> None:
    """Reject a run over the size, memory or compute limits.

    A limit that several fields drive gets one error per field, with the same message, so
    that a form can show it beside each of them. Size errors go to ``model_options``.
    """
    errors = []
    size_options = _size_options(request.model)
    if cost.parameters > limits.MAX_PARAMETERS:
        message = (
            f"the model would have {cost.parameters:,} parameters, more than the limit of "
            f"{limits.MAX_PARAMETERS:,}; reduce {size_options}"
        )
        errors.append(field_error(("model_options",), message, cost.parameters))
    if cost.memory_bytes > limits.MAX_MEMORY_BYTES:
        message = (
            f"estimated training memory {cost.memory_bytes / 2**30:.1f} GiB exceeds the limit "
            f"of {limits.MAX_MEMORY_BYTES / 2**30:.0f} GiB at batch_size {request.batch_size}; "
            f"reduce batch_size or the model size ({size_options})"
        )
        errors.append(field_error(("batch_size",), message, request.batch_size))
        errors.append(field_error(("model_options",), message, None))
    if cost.flops > limits.MAX_TRAINING_FLOPS:
        sequences = request.steps * request.batch_size
        factor = cost.flops / limits.MAX_TRAINING_FLOPS
        message = (
            f"estimated compute {cost.flops:.2g} floating-point operations exceeds the limit "
            f"of {limits.MAX_TRAINING_FLOPS:.0g}: steps × batch_size = {request.steps:,} × "
            f"{request.batch_size} = {sequences:,} training sequences; reduce that product "
            f"at least {factor:.2g}-fold (fewer steps or a smaller batch_size), "
            f"or reduce {size_options}"
        )
        errors.append(field_error(("steps",), message, request.steps))
        errors.append(field_error(("batch_size",), message, request.batch_size))
    if errors:
        raise FieldErrors(errors)


# Error responses


def describe_pydantic_error(error: dict) -> str:
    """Rewrite a pydantic error message so that it names the field and the value."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or "request body"
    kind = error.get("type", "")
    message = error.get("msg", "invalid value")
    if kind == "extra_forbidden":
        return f"unknown field {field!r} is not allowed"
    if kind == "missing":
        return f"{field} is required"
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    else:
        message = message[0].lower() + message[1:]
    if not loc:
        return message
    if "input" in error and ", got " not in message:
        return f"{field} {message}, got {_short_repr(error['input'])}"
    return f"{field} {message}"


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compact(error: dict) -> dict:
    compact = {"loc": list(error.get("loc", ())), "msg": describe_pydantic_error(error)}
    compact["type"] = error.get("type", "value_error")
    if "input" in error:
        value = error["input"]
        if isinstance(value, dict | list):
            # A whole request body is not repeated back; the message names the field.
            value = None
        elif isinstance(value, float) and not math.isfinite(value):
            # JSON has no NaN or infinity.
            value = str(value)
        compact["input"] = value
    if "ctx" in error:
        compact["ctx"] = {key: str(value) for key, value in error["ctx"].items()}
    return compact


def _json_error(error: dict, body: Any) -> dict:
    """Describe a body that is not JSON with the parser's reason, line and column."""
    reason = error.get("ctx", {}).get("error", "invalid JSON")
    position = error["loc"][-1] if isinstance(error["loc"][-1], int) else 0
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    message = f"request body is not valid JSON: {reason} at line {line} column {column}"
    excerpt = text if len(text) <= 80 else text[:77] + "..."
    return {"loc": ["body"], "msg": message, "type": "json_invalid", "input": excerpt}


async def request_validation_handler(request: Request, exc: RequestValidationError):
    errors = [
        _json_error(error, exc.body) if error.get("type") == "json_invalid" else _compact(error)
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content=jsonable_encoder({"detail": errors}))


async def field_errors_handler(request: Request, exc: FieldErrors):
    return JSONResponse(status_code=422, content=jsonable_encoder({"detail": exc.errors}))
