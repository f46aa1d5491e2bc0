"""Curriculum: train on easier versions of a task first, advancing on held-out accuracy.

A curriculum is a list of stages. Each stage names ``task_options`` that override the
run's own task options, a ``threshold`` of held-out accuracy and an optional
``max_steps``. Training starts in stage 0 and samples its batches from the stage's task.
At every evaluation the model is also scored on the stage's own held-out set, and the
stage ends once that accuracy reaches the threshold, or once the stage has run
``max_steps`` steps. After the last stage the run trains on its own task until ``steps``.

One model serves every stage, so every stage's task must have the input and output sizes
of the run's task; the sequence length may differ. For N-th farthest a stage with fewer
vectors keeps the sizes because it inherits ``num_labels`` from the run's resolved task
options, which pad the one-hot blocks and the classes to the run's number of vectors.
"""

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.evaluation import predict_in_chunks, score_predictions
from models.tasks import Task, make_task

logger = logging.getLogger(__name__)

MAX_STAGES = 16
MAX_STAGE_STEPS = 10_000_000
STAGE_KEYS = ("task_options", "threshold", "max_steps")


class CurriculumError(ValueError):
    """An invalid curriculum; ``loc`` locates the bad value, e.g. ``(1, "threshold")``."""

    def __init__(self, message: str, loc: tuple = ()):
        super().__init__(message)
        self.loc = loc


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_stage(index: int, stage, task_name: str, base_task: Task) -> dict:
    """Return one stage with defaults filled in, or raise CurriculumError naming the field."""
    where = f"invalid curriculum[{index}]"
    if not isinstance(stage, Mapping):
        raise CurriculumError(
            f"{where}: each stage must be a dict with keys {', '.join(STAGE_KEYS)}, got {stage!r}",
            (index,),
        )
    unknown = sorted(set(stage) - set(STAGE_KEYS))
    if unknown:
        raise CurriculumError(
            f"{where}: unknown key {unknown[0]!r}, expected one of {', '.join(STAGE_KEYS)}",
            (index, unknown[0]),
        )
    if "threshold" not in stage:
        raise CurriculumError(f"{where}.threshold is required", (index, "threshold"))

    threshold = stage["threshold"]
    if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
        raise CurriculumError(
            f"{where}.threshold must be a held-out accuracy from 0 to 1, got {threshold!r}",
            (index, "threshold"),
        )
    max_steps = stage.get("max_steps")
    valid_steps = isinstance(max_steps, int) and not isinstance(max_steps, bool)
    if max_steps is not None and not (valid_steps and 1 <= max_steps <= MAX_STAGE_STEPS):
        raise CurriculumError(
            f"{where}.max_steps must be an integer from 1 to {MAX_STAGE_STEPS} or null, "
            f"got {max_steps!r}",
            (index, "max_steps"),
        )
    overrides = stage.get("task_options", {})
    if not isinstance(overrides, Mapping) or not all(isinstance(key, str) for key in overrides):
        raise CurriculumError(
            f"{where}.task_options must be a dict with string keys, got {overrides!r}",
            (index, "task_options"),
        )

    resolved = {
        "task_options": copy.deepcopy(dict(overrides)),
        "threshold": float(threshold),
        "max_steps": max_steps,
    }
    try:
        task = stage_task(task_name, base_task, resolved)
    except ValueError as exc:
        raise CurriculumError(f"{where}.task_options: {exc}", (index, "task_options")) from exc
    if (task.input_size, task.output_size) != (base_task.input_size, base_task.output_size):
        raise CurriculumError(
            f"{where}.task_options: the stage's task has input size {task.input_size} and "
            f"output size {task.output_size}, but one model serves every stage, so they must "
            f"equal the run's {base_task.input_size} and {base_task.output_size}",
            (index, "task_options"),
        )
    return resolved


def check_curriculum(curriculum, task_name: str, base_task: Task) -> list[dict] | None:
    """Validate a curriculum for a run of ``base_task`` and return it with defaults filled in.

    Returns None when ``curriculum`` is None. Each returned stage is
    ``{"task_options", "threshold", "max_steps"}``.

    Raises:
        CurriculumError: for a curriculum that is not a list of 1 to ``MAX_STAGES`` stages,
            a stage with an unknown or invalid field, a stage task that cannot be built, or
            one whose input or output size differs from ``base_task``'s.
    """
    if curriculum is None:
        return None
    if base_task.loss != "cross_entropy":
        raise CurriculumError(
            f"invalid curriculum: stages advance on held-out accuracy, so the task must be a "
            f"classification task, and {task_name!r} is not"
        )
    if not isinstance(curriculum, list | tuple) or not 1 <= len(curriculum) <= MAX_STAGES:
        raise CurriculumError(
            f"invalid curriculum: must be null or a list of 1 to {MAX_STAGES} stages, "
            f"got {curriculum!r}"
        )
    return [
        _check_stage(index, stage, task_name, base_task) for index, stage in enumerate(curriculum)
    ]


def stage_task(task_name: str, base_task: Task, stage: dict) -> Task:
    """Return the task of a stage: the run's resolved task options with the stage's on top."""
    return make_task(task_name, **{**base_task.options, **stage["task_options"]})


@dataclass
class StageRecord:
    """Record of one stage: its settings, start and end, and its latest held-out accuracy.

    ``end_step`` and ``end_reason`` stay None while the stage runs.
    """

    stage: int
    task_options: dict
    threshold: float
    start_step: int
    end_step: int | None = None
    end_reason: str | None = None
    held_out_accuracy: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class CurriculumRunner:
    """The curriculum state of one training run: the current stage, its task and held-out set.

    ``index`` is the stage in effect, and equals the number of stages once the curriculum
    has ended and the run trains on its own task.
    """

    def __init__(
        self, stages: list[dict], task_name: str, base_task: Task, seed: int, eval_size: int
    ):
        self.stages = stages
        self.task_name = task_name
        self.base_task = base_task
        self.seed = seed
        self.eval_size = eval_size
        self.index = 0
        self.records: list[StageRecord] = []
        self._begin_stage(start_step=0)

    @property
    def finished(self) -> bool:
        return self.index >= len(self.stages)

    @property
    def task(self) -> Task:
        """The task that training batches are drawn from now."""
        return self.base_task if self.finished else self._task

    def _begin_stage(self, start_step: int) -> None:
        if self.finished:
            return
        stage = self.stages[self.index]
        self._task = stage_task(self.task_name, self.base_task, stage)
        # Each stage has its own held-out set, drawn from a generator of its own, so it is
        # the same for every model trained with this seed.
        rng = np.random.default_rng([self.seed, 2, self.index])
        self._test_x, self._test_y = self._task.sample(self.eval_size, rng)
        self.records.append(
            StageRecord(self.index, dict(stage["task_options"]), stage["threshold"], start_step)
        )

    def describe(self) -> str:
        """Name the stage in effect and its task options, for log lines."""
        if self.finished:
            return f"the run's own task {self.base_task.options}"
        return (
            f"stage {self.index + 1} of {len(self.stages)} with task options {self._task.options}"
        )

    def evaluate_stage(self, model) -> float | None:
        """Return the model's accuracy on the current stage's held-out set, or None after it."""
        if self.finished:
            return None
        predictions = predict_in_chunks(model, self._test_x)
        _, held_out_accuracy = score_predictions("cross_entropy", predictions, self._test_y)
        self.records[-1].held_out_accuracy = held_out_accuracy
        return held_out_accuracy

    def advance_if_done(self, step: int, stage_accuracy: float | None) -> str | None:
        """End the current stage if it passed its threshold or ran its max_steps.

        Args:
            step: the 1-based step just completed.
            stage_accuracy: the stage's held-out accuracy measured at this step, or None
                when this step had no evaluation.

        Returns:
            A log message describing the advance, or None when the stage continues.
        """
        if self.finished:
            return None
        stage = self.stages[self.index]
        record = self.records[-1]
        if stage_accuracy is not None and stage_accuracy >= stage["threshold"]:
            reason = "threshold"
            because = f"held-out accuracy {stage_accuracy:.4f} >= threshold {stage['threshold']}"
        elif stage["max_steps"] is not None and step - record.start_step >= stage["max_steps"]:
            reason = "max_steps"
            because = f"it ran its max_steps {stage['max_steps']}"
        else:
            return None

        record.end_step = step
        record.end_reason = reason
        ended = f"stage {self.index + 1} of {len(self.stages)}"
        self.index += 1
        self._begin_stage(start_step=step)
        return f"curriculum: {ended} ended at step {step} because {because}; now {self.describe()}"

    def summary(self) -> list[dict]:
        """Return one dict per stage begun so far, in order."""
        return [record.to_dict() for record in self.records]
