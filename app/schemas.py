"""Pydantic request and response models of the JSON API.

Every request model rejects unknown fields and non-finite numbers. Task and model options
arrive as plain dicts here and are checked against ``models.TASK_SPECS`` and
``models.MODEL_SPECS`` in ``app.validation``, because their allowed keys depend on the
task and model named in the same request.
"""

import dataclasses
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    model_validator,
)

import models
from app import limits
from models.curriculum import MAX_STAGES as MAX_CURRICULUM_STAGES
from models.train_config import MAX_TIME_LIMIT_MINUTES

RunStatus = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]
TaskName = Literal[tuple(models.TASK_SPECS)]
ModelKind = Literal[tuple(models.MODEL_SPECS)]


def _check_option_value(value: Any) -> Any:
    """Accept a JSON scalar or a list of scalars, with every number finite.

    The option's own type and limits are checked against its spec in ``app.validation``.
    """
    items = value if isinstance(value, list) else [value]
    if len(items) > 64:
        raise ValueError(f"must be a list of at most 64 values, got {len(items)}")
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"must be a finite number, got {item}")
        if item is not None and not isinstance(item, bool | int | float | str):
            raise ValueError(f"must be a number, string, boolean or null, got {value!r}")
    return value


OptionValue = Annotated[Any, AfterValidator(_check_option_value)]
Seed = Annotated[int, Field(ge=0, le=limits.MAX_SEED, description="Random seed.")]

_TRAIN_DEFAULTS = {
    item.name: item.default
    for item in dataclasses.fields(models.TrainConfig)
    if item.default is not dataclasses.MISSING
}


class RequestModel(BaseModel):
    # Strict: JSON true is not the integer 1 nor the number 1.0, and "3" is not 3.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class CurriculumStage(RequestModel):
    """One curriculum stage; its task options override the run's (see models.curriculum)."""

    task_options: dict[str, OptionValue] = Field(
        default_factory=dict,
        max_length=limits.MAX_OPTIONS,
        description="Task options of this stage, on top of the run's task_options.",
    )
    threshold: float = Field(
        ge=0.0, le=1.0, description="Held-out accuracy on this stage's questions that ends it."
    )
    max_steps: int | None = Field(
        None, ge=1, le=limits.MAX_STEPS, description="Steps after which the stage ends anyway."
    )


class RunCreate(RequestModel):
    """A training run to queue. Omitted fields take the training defaults."""

    task: TaskName = Field(description="Task name, one of GET /api/tasks.")
    task_options: dict[str, OptionValue] = Field(
        default_factory=dict,
        max_length=limits.MAX_OPTIONS,
        description="Task options; see the task's options in GET /api/tasks.",
    )
    model: ModelKind = Field(description="Model kind.")
    model_options: dict[str, OptionValue] = Field(
        default_factory=dict,
        max_length=limits.MAX_OPTIONS,
        description="Hyperparameters; see the model's options in GET /api/tasks.",
    )
    steps: int = Field(_TRAIN_DEFAULTS["steps"], ge=1, le=limits.MAX_STEPS)
    batch_size: int = Field(_TRAIN_DEFAULTS["batch_size"], ge=1, le=limits.MAX_BATCH_SIZE)
    learning_rate: float = Field(
        _TRAIN_DEFAULTS["learning_rate"], gt=0.0, le=limits.MAX_LEARNING_RATE
    )
    lr_schedule: Literal["constant", "cosine"] = _TRAIN_DEFAULTS["lr_schedule"]
    warmup_steps: int = Field(_TRAIN_DEFAULTS["warmup_steps"], ge=0, le=limits.MAX_STEPS)
    clip_norm: float | None = Field(
        _TRAIN_DEFAULTS["clip_norm"],
        gt=0.0,
        le=limits.MAX_CLIP_NORM,
        description="Maximum global gradient norm; null for no clipping.",
    )
    eval_interval: int = Field(_TRAIN_DEFAULTS["eval_interval"], ge=1, le=limits.MAX_INTERVAL)
    eval_size: int = Field(_TRAIN_DEFAULTS["eval_size"], ge=1, le=limits.MAX_EVAL_SIZE)
    log_interval: int = Field(_TRAIN_DEFAULTS["log_interval"], ge=1, le=limits.MAX_INTERVAL)
    seed: Seed = _TRAIN_DEFAULTS["seed"]
    dtype: Literal["float32", "float64"] = _TRAIN_DEFAULTS["dtype"]
    time_limit_minutes: float | None = Field(
        _TRAIN_DEFAULTS["time_limit_minutes"],
        gt=0.0,
        le=MAX_TIME_LIMIT_MINUTES,
        description=(
            "Wall-clock limit of the training loop in minutes; the run then ends as "
            "completed. Omit for no limit."
        ),
    )
    curriculum: list[CurriculumStage] | None = Field(
        None,
        min_length=1,
        max_length=MAX_CURRICULUM_STAGES,
        description="Stages trained before the run's own task; classification tasks only.",
    )


class Progress(BaseModel):
    step: int
    steps: int | None


class Run(BaseModel):
    """A run as stored, with its resolved training config."""

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    name: str
    status: RunStatus
    task: str
    model: str
    seed: int
    config: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    param_count: int | None
    progress: Progress
    final_metrics: dict[str, Any] | None
    has_checkpoint: bool
    sweep_id: str | None = Field(None, description="The sweep that launched this run, if any.")


class Metric(BaseModel):
    """One metric row; fields beyond these (such as per-class accuracies) may follow."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    step: int
    train_loss: float | None
    test_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    grad_norm: float | None
    learning_rate: float | None
    elapsed: float | None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    runs: dict[str, int]
    max_concurrent_runs: int


class SequenceRequest(RequestModel):
    """A sequence to generate from a task and a seed."""

    task: TaskName
    task_options: dict[str, OptionValue] = Field(
        default_factory=dict, max_length=limits.MAX_OPTIONS
    )
    seed: Seed = 0


class Sequence(BaseModel):
    task: str
    task_options: dict[str, Any]
    seed: int
    inputs: list[list[float]]
    target: list[float] | list[list[float]] | int | list[int]
    info: dict[str, Any]


InputRow = Annotated[list[float], Field(min_length=1, max_length=limits.MAX_INPUT_SIZE)]


class PredictRequest(RequestModel):
    """Either a seed, to generate a sequence from the run's task, or a sequence of inputs."""

    seed: Seed | None = None
    inputs: (
        Annotated[list[InputRow], Field(min_length=1, max_length=limits.MAX_SEQUENCE_STEPS)] | None
    ) = Field(None, description="Model inputs of shape [T][D].")
    target: (
        Annotated[list[float], Field(min_length=1, max_length=limits.MAX_INPUT_SIZE)]
        | StrictInt
        | None
    ) = Field(None, description="Regression target [O] or class label; optional.")

    @model_validator(mode="after")
    def _seed_or_inputs(self) -> "PredictRequest":
        if (self.seed is None) == (self.inputs is None):
            raise ValueError("send exactly one of seed and inputs")
        if self.target is not None and self.inputs is None:
            raise ValueError("target is only accepted with inputs")
        return self


class Prediction(BaseModel):
    run_id: str
    model: str
    task: str
    seed: int | None
    inputs: list[list[float]]
    target: list[float] | int | None
    prediction: list[Any]
    probabilities: list[float | None] | None
    loss: float | None
    info: dict[str, Any] | None
    trace: dict[str, Any]


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]


class AnalysisRequest(RequestModel):
    """A batch of sequences to draw from the run's task for the slot and attention analysis."""

    seed: Seed = 0
    batch_size: int = Field(
        64,
        ge=1,
        le=limits.MAX_ANALYSIS_BATCH,
        description="Sequences drawn with numpy.random.default_rng(seed).",
    )


class Connectivity(BaseModel):
    mean: list[float | None]
    std: list[float | None]
    first: list[float | None]


class Analysis(BaseModel):
    """Batch means of a run's slot, attention and gate statistics; see models.analysis."""

    run_id: str
    model: str
    task: str
    task_options: dict[str, Any]
    seed: int
    batch_size: int
    steps: int
    connectivity: Connectivity
    attention_received: list[Any] | None = None
    input_attention: list[Any] | None = None
    entropy: list[Any] | None = None
    input_gate: list[Any] | None = None
    forget_gate: list[Any] | None = None
    output_gate: list[Any] | None = None
    memory_change: list[Any] | None = None
    slot_usage: list[float | None] | None = None
    object_attention_correlation: list[list[float | None]] | None = None
    object_update_correlation: list[list[float | None]] | None = None
    max_entropy: float | None = None
    unused_slots: list[int] | None = None
    unused_threshold: float | None = None
    num_slots: int | None = None


# Sweeps and paired runs

MAX_SWEEP_AXES = 4
MAX_AXIS_VALUES = 16
MAX_SWEEP_SEEDS = 16
GridValues = Annotated[list[OptionValue], Field(min_length=1, max_length=MAX_AXIS_VALUES)]


class SweepCreate(RequestModel):
    """A grid of runs: the base run with each combination of the grid's values, per seed."""

    name: str | None = Field(None, max_length=100, description="Shown on the sweep's page.")
    base: RunCreate = Field(description="The run every grid cell starts from.")
    grid: dict[str, GridValues] = Field(
        min_length=1,
        max_length=MAX_SWEEP_AXES,
        description=(
            'Axis -> values. An axis is "model", "task_options.NAME", "model_options.NAME" '
            'or a training field such as "learning_rate".'
        ),
    )
    seeds: list[Seed] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=MAX_SWEEP_SEEDS,
        description="Every cell trains once per seed; the heatmap shows the mean over seeds.",
    )
    model_options_by_kind: dict[ModelKind, dict[str, OptionValue]] = Field(
        default_factory=dict,
        description=(
            'Hyperparameters per model kind, for a grid with a "model" axis. A kind '
            "named here uses these options; otherwise the base model uses the base "
            "model_options and any other kind its defaults."
        ),
    )


class SweepCell(BaseModel):
    index: list[int]
    values: dict[str, Any]
    run_ids: list[str]
    metric_values: list[float]
    mean: float | None
    std: float | None
    finished: int


class Sweep(BaseModel):
    """A sweep with its grid, the count of its runs per status and, per cell, the metric."""

    id: str
    name: str
    status: Literal["running", "completed", "cancelled"]
    created_at: str
    cancelled_at: str | None
    base: dict[str, Any]
    axes: list[dict[str, Any]]
    seeds: list[int]
    metric: Literal["final_test_loss", "final_test_accuracy"]
    counts: dict[str, int]
    cells: list[SweepCell]
    runs: list[Run] | None = None


class PairCreate(RequestModel):
    """An RMC and an LSTM with the same task, training settings and seed."""

    base: RunCreate = Field(description="The RMC run; its model must be rmc.")
    lstm_options: dict[str, OptionValue] = Field(
        default_factory=dict, max_length=limits.MAX_OPTIONS, description="LSTM hyperparameters."
    )
    match_parameters: bool = Field(
        False,
        description=(
            "Choose the LSTM hidden_size whose parameter count is closest to the RMC's, "
            "in place of lstm_options.hidden_size."
        ),
    )


class Pair(BaseModel):
    runs: list[Run]
    lstm_hidden_size: int
    parameters: dict[str, int]
    url: str
