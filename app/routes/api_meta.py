"""Server health and the specs a client needs to build launch forms."""

from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request

import models
from app import limits
from app.presets import PRESETS
from app.schemas import Health, RunCreate

router = APIRouter(prefix="/api", tags=["meta"])

try:
    VERSION = metadata.version("relmem-explorer")
except metadata.PackageNotFoundError:
    VERSION = "unknown"


@router.get("/health", response_model=Health)
def health(request: Request) -> dict:
    """Return ``ok``, the number of runs in each status and the concurrency limit."""
    return {
        "status": "ok",
        "version": VERSION,
        "runs": request.app.state.store.count_by_status(),
        "max_concurrent_runs": request.app.state.runner.max_concurrent,
    }


def _training_option(name: str, kind: str, help_text: str, **extra: Any) -> dict:
    field = RunCreate.model_fields[name]
    option = {"name": name, "type": kind, "default": field.default, "min": None, "max": None}
    for constraint in field.metadata:
        for attribute, key in (("ge", "min"), ("gt", "min"), ("le", "max")):
            if hasattr(constraint, attribute):
                option[key] = getattr(constraint, attribute)
        if hasattr(constraint, "gt"):
            option["exclusive_min"] = True  # the value must be greater than min
    option.update(extra)
    option["help"] = help_text
    return option


def training_options() -> list[dict]:
    """Return the training fields of ``POST /api/runs`` in the option format of the specs."""
    return [
        _training_option("steps", "int", "Optimizer steps."),
        _training_option("batch_size", "int", "Sequences per step."),
        _training_option("learning_rate", "float", "Adam peak learning rate."),
        _training_option(
            "lr_schedule",
            "choice",
            "Constant, or cosine decay to 10% of the peak after the warm-up.",
            choices=["constant", "cosine"],
        ),
        _training_option("warmup_steps", "int", "Steps of linear warm-up; at most steps."),
        _training_option(
            "clip_norm",
            "float",
            "Maximum global gradient norm; null for no clipping.",
            nullable=True,
        ),
        _training_option("eval_interval", "int", "Steps between held-out evaluations."),
        _training_option("eval_size", "int", "Held-out sequences."),
        _training_option("log_interval", "int", "Steps between metric rows."),
        _training_option("seed", "int", "Seeds parameters, batches and the held-out set."),
        _training_option(
            "dtype", "choice", "Floating-point type of training.", choices=["float32", "float64"]
        ),
        _training_option(
            "time_limit_minutes",
            "float",
            "Wall-clock limit of training in minutes; the run then ends as completed. "
            "null for no limit.",
            nullable=True,
        ),
    ]


def _task_entry(name: str, spec: dict) -> dict:
    task = models.make_task(name)
    return {
        "name": name,
        **spec,
        "default_sizes": {
            "input_size": task.input_size,
            "output_size": task.output_size,
            "seq_len": task.seq_len,
        },
    }


@router.get("/tasks")
def tasks() -> dict:
    """Return tasks, models and training fields with their limits and defaults, and presets.

    Options have ``name``, ``type`` (int, float, bool, choice or int_list), ``default``,
    ``min``, ``max`` and ``help``. Choice options also have ``choices``, options that
    accept null have ``nullable: true``, and options whose value must be greater than
    ``min`` have ``exclusive_min: true``. ``limits`` contains the caps on the estimated
    size of a whole run.
    """
    return {
        "tasks": [_task_entry(name, spec) for name, spec in models.TASK_SPECS.items()],
        "models": [{"kind": kind, **spec} for kind, spec in models.MODEL_SPECS.items()],
        "training": training_options(),
        "limits": {
            "max_parameters": limits.MAX_PARAMETERS,
            "max_memory_bytes": limits.MAX_MEMORY_BYTES,
            "max_training_flops": limits.MAX_TRAINING_FLOPS,
            "max_metric_rows": limits.MAX_METRIC_ROWS,
            "max_sequence_steps": limits.MAX_SEQUENCE_STEPS,
        },
        "presets": PRESETS,
    }
