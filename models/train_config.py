"""``TrainConfig``: the validated, JSON-ready configuration of one training run."""

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from models.curriculum import check_curriculum
from models.optim import LR_SCHEDULES
from models.tasks import Task, make_task

MODEL_KINDS = ("lstm", "rmc")
DTYPES = ("float32", "float64")

# Inclusive limits of the integer fields; they bound the work and memory of one run.
INT_LIMITS = {
    "steps": (1, 10_000_000),
    "batch_size": (1, 65_536),
    "warmup_steps": (0, 10_000_000),
    "eval_interval": (1, 10_000_000),
    "eval_size": (1, 100_000),
    "log_interval": (1, 10_000_000),
    "seed": (0, 2**63 - 1),
}

# Four weeks: the longest wall-clock limit a run may ask for.
MAX_TIME_LIMIT_MINUTES = 40_320.0


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; the same config and seed give the same weights.

    Attributes:
        task: task name for ``make_task`` ["tracking-grid"].
        task_options: options for ``make_task`` [{}].
        model: "rmc" or "lstm" ["rmc"].
        model_options: hyperparameters for ``make_model`` [{}].
        steps: optimizer steps [10000].
        batch_size: sequences per step [32].
        learning_rate: Adam peak learning rate [5e-3]. With the cosine schedule this
            default brings the 32-unit LSTM and the 4-slot RMC below 0.004 test MSE on
            "tracking-grid" within 10,000 steps of batch 32, on seeds 0, 1 and 2. At 1e-3
            they ended between 0.004 and 0.022 (docs/results.md).
        lr_schedule: "constant", or "cosine" decaying to 10% of the peak after the
            warm-up ["cosine"].
        warmup_steps: steps of linear warm-up to the peak [0].
        clip_norm: maximum global gradient norm, or None for no clipping [None].
        eval_interval: steps between held-out evaluations; the last step is always
            evaluated [500].
        eval_size: held-out sequences, drawn once from a generator separate from the
            training batches [1024].
        log_interval: steps between metric events [50].
        seed: seeds the parameters, the training batches and the held-out set [0].
        dtype: "float32" or "float64" for parameters and computation ["float32"].
        time_limit_minutes: wall-clock limit of the training loop in minutes, or None for
            none [None]. Once a step ends past it, the model is evaluated and the run ends as
            "completed" with ``stopped_by`` "time_limit" in its summary. The learning-rate
            schedule still spans ``steps``.
        curriculum: None, or a list of stages, each ``{"task_options": overrides of
            task_options, "threshold": held-out accuracy that ends the stage,
            "max_steps": steps after which the stage ends anyway, or None}``; see
            ``models.curriculum`` [None]. Only for classification tasks.
    """

    task: str = "tracking-grid"
    task_options: dict = field(default_factory=dict)
    model: str = "rmc"
    model_options: dict = field(default_factory=dict)
    steps: int = 10_000
    batch_size: int = 32
    learning_rate: float = 5e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    clip_norm: float | None = None
    eval_interval: int = 500
    eval_size: int = 1024
    log_interval: int = 50
    seed: int = 0
    dtype: str = "float32"
    time_limit_minutes: float | None = None
    curriculum: list | None = None

    def __post_init__(self):
        for name in ("task_options", "model_options"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
                raise ValueError(f"invalid {name}: must be a dict with string keys, got {value!r}")
            # A private copy keeps the frozen config independent of the caller's dict.
            object.__setattr__(self, name, copy.deepcopy(dict(value)))

        for name, (low, high) in INT_LIMITS.items():
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                raise ValueError(
                    f"invalid {name}: must be an integer between {low} and {high}, got {value!r}"
                )

        self._check_choice("model", MODEL_KINDS)
        self._check_choice("lr_schedule", LR_SCHEDULES)
        self._check_choice("dtype", DTYPES)

        if not _is_number(self.learning_rate) or not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(
                f"invalid learning_rate: must be a number in (0, 1], got {self.learning_rate!r}"
            )
        if self.clip_norm is not None and not (_is_number(self.clip_norm) and self.clip_norm > 0):
            raise ValueError(
                f"invalid clip_norm: must be a positive number or None, got {self.clip_norm!r}"
            )
        if self.time_limit_minutes is not None and not (
            _is_number(self.time_limit_minutes)
            and 0.0 < self.time_limit_minutes <= MAX_TIME_LIMIT_MINUTES
        ):
            raise ValueError(
                "invalid time_limit_minutes: must be a number in "
                f"(0, {MAX_TIME_LIMIT_MINUTES}] or None, got {self.time_limit_minutes!r}"
            )
        if self.warmup_steps > self.steps:
            raise ValueError(
                f"invalid warmup_steps: must be at most steps ({self.steps}), "
                f"got {self.warmup_steps}"
            )

        # Building the task checks the task name and its options.
        task = self.build_task()
        # The stages are stored with their defaults filled in, as a private copy.
        object.__setattr__(self, "curriculum", check_curriculum(self.curriculum, self.task, task))

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ValueError(f"invalid {name}: must be one of {', '.join(choices)}, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping) -> "TrainConfig":
        """Build a config from a dict such as ``to_dict`` returns; missing keys take defaults.

        Raises:
            ValueError: for an unknown key or an invalid value, naming the key.
        """
        known = [item.name for item in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(
                f"unknown training config key {unknown[0]!r}: expected one of {', '.join(known)}"
            )
        return cls(**data)

    def to_dict(self) -> dict:
        """Return every field as a JSON-ready dict that ``from_dict`` accepts."""
        data = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        return copy.deepcopy(data)

    def build_task(self) -> Task:
        """Return the configured task."""
        return make_task(self.task, **self.task_options)
