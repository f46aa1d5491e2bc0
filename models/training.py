"""The training loop: a function of a config, a seeded generator and an event callback.

``train`` keeps all of its state in local variables, so a server can run it many times in
one process and stop it between steps through ``should_stop``.
"""

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.allocator import keep_freed_memory
from models.curriculum import CurriculumRunner
from models.evaluation import (
    EVAL_CHUNK,
    accuracy_by_group,
    evaluate,
    predict_in_chunks,
    score_predictions,
)
from models.factory import make_model
from models.losses import accuracy
from models.optim import Adam, global_norm, scheduled_learning_rate
from models.train_config import TrainConfig

logger = logging.getLogger(__name__)
# The reasons a run ends, as ``stopped_by`` in its summary.
STOP_REASONS = ("steps", "time_limit", "cancel")

__all__ = ["EVAL_CHUNK", "TrainResult", "TrainingDiverged", "build_model", "evaluate", "train"]


class TrainingDiverged(RuntimeError):
    """A NaN or infinite loss or gradient norm ended training.

    Attributes:
        step: the 1-based step whose loss or gradients were not finite.
        metrics: the metric events emitted before the divergence.
    """

    def __init__(self, message: str, step: int, metrics: list[dict]):
        super().__init__(message)
        self.step = step
        self.metrics = metrics


@dataclass
class TrainResult:
    """Outcome of ``train``: ``status`` is "completed" or "cancelled"."""

    status: str
    model: object
    summary: dict
    metrics: list[dict] = field(default_factory=list)


@dataclass
class _MetricWindow:
    """Training measurements since the previous metric event."""

    started: float
    loss_sum: float = 0.0
    count: int = 0
    grad_norm: float = math.nan
    learning_rate: float = math.nan

    def add(self, loss: float, grad_norm: float, learning_rate: float) -> None:
        self.loss_sum += loss
        self.count += 1
        self.grad_norm = grad_norm
        self.learning_rate = learning_rate

    def ms_per_step(self, now: float) -> float:
        return 1000.0 * (now - self.started) / max(self.count, 1)


def _is_eval_step(step: int, config: TrainConfig) -> bool:
    return step % config.eval_interval == 0 or step == config.steps


def _is_metric_step(step: int, config: TrainConfig) -> bool:
    return step % config.log_interval == 0 or _is_eval_step(step, config)


def build_model(config: TrainConfig, task):
    """Return the configured model, sized for ``task`` and initialised from ``config.seed``."""
    return make_model(
        config.model,
        input_size=task.input_size,
        output_size=task.output_size,
        seed=config.seed,
        dtype=config.dtype,
        **config.model_options,
    )


def _emit_log(on_event: Callable[[dict], None], message: str, level: int = logging.INFO) -> None:
    logger.log(level, message)
    on_event({"type": "log", "message": message})


def _format_accuracy(value: float | None) -> str:
    return "" if value is None else f", accuracy {value:.4f}"


def _format_baselines(baselines: dict[str, float]) -> str:
    """Format baseline losses as ``mean 0.0793, last_seen 0.00143`` (3 significant digits)."""
    return ", ".join(f"{name} {value:.3g}" for name, value in baselines.items())


def train(
    config: TrainConfig,
    rng: np.random.Generator | None = None,
    on_event: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train the configured model with Adam on fresh batches drawn from ``rng``.

    The parameters are initialised from ``config.seed``. The held-out set is drawn once
    from its own generator, ``numpy.random.default_rng([config.seed, 1])``, so it stays
    fixed during the run and is the same for every model trained with that seed. The
    summary's ``stopped_by`` says what ended the run: "steps", "time_limit"
    (``config.time_limit_minutes``, checked between steps) or "cancel".

    Args:
        config: the training configuration.
        rng: source of the training batches [``numpy.random.default_rng(config.seed)``].
        on_event: called with each event dict, in order. ``{"type": "log", "message"}``
            comes at the start, after each evaluation and at the end. ``{"type": "metric",
            "step", "train_loss", "grad_norm", "learning_rate", "elapsed", "test_loss",
            "test_accuracy", "train_accuracy"}`` comes every ``log_interval`` steps, at
            every evaluation and at the last step. ``train_loss`` is the mean since the
            previous metric, ``grad_norm`` and ``learning_rate`` are the latest step's, and
            ``train_accuracy`` is measured on the latest batch. The ``test_*`` fields are
            None except at evaluations, and the accuracies are None for MSE tasks. Tasks
            with an ``accuracy_group_metric`` (N-th farthest: ``test_accuracy_per_n``)
            add that field at evaluations: the held-out accuracy per group, keyed by the
            group value as a string. With a curriculum every metric event also has
            ``curriculum_stage`` and ``stage_test_accuracy``. The stage is the one whose
            task gave the latest batch, or the number of stages once the run trains on
            its own task. The accuracy is on that stage's held-out set at evaluations,
            and None elsewhere.
        should_stop: called before every step. Once it returns True, the model is
            evaluated and training ends as "cancelled".

    Raises:
        TrainingDiverged: when a loss or gradient norm is NaN or infinite, after the
            measurements of the preceding steps were emitted.
        ValueError: for model options that ``make_model`` rejects.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if rng is None:
        rng = np.random.default_rng(config.seed)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    emit = on_event if on_event is not None else (lambda event: None)
    keep_freed_memory()  # each step reuses the pages its temporaries freed (models.allocator)

    task = config.build_task()
    model = build_model(config, task)
    test_x, test_y, test_info = task.sample_with_info(
        config.eval_size, np.random.default_rng([config.seed, 1])
    )
    baselines = task.baselines(test_x, test_y)
    _emit_log(
        emit,
        f"training {config.model} on {config.task} with seed {config.seed}: "
        f"{model.param_count} parameters; config {json.dumps(config.to_dict(), sort_keys=True)}",
    )

    run = _Run(config, task, model, test_x, test_y, emit)
    if hasattr(task, "accuracy_groups"):
        run.test_groups = task.accuracy_groups(test_info)
    if config.curriculum is not None:
        run.curriculum = CurriculumRunner(
            config.curriculum, config.task, task, config.seed, config.eval_size
        )
        _emit_log(emit, f"curriculum: starting with {run.curriculum.describe()}")
    status = run.loop(rng, should_stop)
    summary = {
        "status": status,
        "final_test_loss": run.test_loss,
        "final_test_accuracy": run.test_accuracy,
        "baselines": baselines,
        "steps": run.step,
        "stopped_by": run.stopped_by,
        "seconds": run.elapsed(),
        "param_count": model.param_count,
    }
    if run.test_groups is not None:
        summary["final_test_accuracy_per_n"] = run.test_accuracy_per_group
    if run.curriculum is not None:
        summary["curriculum"] = run.curriculum.summary()
    _emit_log(
        emit,
        f"training {status} after {run.step} steps in {summary['seconds']:.1f} s: "
        f"test loss {run.test_loss}{_format_accuracy(run.test_accuracy)}; "
        f"baselines: {_format_baselines(baselines)}",
    )
    return TrainResult(status=status, model=model, summary=summary, metrics=run.metrics)


class _Run:
    """The mutable state of one call to ``train``: step counter, timers and metrics."""

    def __init__(self, config, task, model, test_x, test_y, emit):
        self.config = config
        self.task = task
        self.model = model
        self.test_x = test_x
        self.test_y = test_y
        self.emit = emit
        self.optimizer = Adam(model.params, clip_norm=config.clip_norm)
        self.metrics: list[dict] = []
        self.step = 0
        self.last_metric_step = 0
        self.test_loss: float | None = None
        self.test_accuracy: float | None = None
        # Per-group accuracy (N-th farthest: per n) needs one group value per test row.
        self.test_groups: np.ndarray | None = None
        self.test_accuracy_per_group: dict | None = None
        self.curriculum: CurriculumRunner | None = None
        self.stopped_by: str | None = None
        self.started = time.perf_counter()
        self.window = _MetricWindow(self.started)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def loop(self, rng: np.random.Generator, should_stop: Callable[[], bool] | None) -> str:
        """Run the remaining steps and return "completed" or "cancelled".

        Sets ``stopped_by`` to "steps", "time_limit" or "cancel".
        """
        limit = self.config.time_limit_minutes
        limit_seconds = math.inf if limit is None else 60.0 * limit
        while self.step < self.config.steps:
            if should_stop is not None and should_stop():
                self._finish_early("cancel")
                return "cancelled"
            if self.elapsed() >= limit_seconds and self.step > 0:
                self._finish_early("time_limit")
                return "completed"
            self._train_step(rng)
        self.stopped_by = "steps"
        return "completed"

    def _finish_early(self, reason: str) -> None:
        """Evaluate the steps since the last metric event, if any, and record ``reason``."""
        if self.step > self.last_metric_step:
            self._emit_metric(train_accuracy=None, evaluate_now=True)
        self.stopped_by = reason

    def _train_step(self, rng: np.random.Generator) -> None:
        config = self.config
        batch_task = self.task if self.curriculum is None else self.curriculum.task
        x, y = batch_task.sample(config.batch_size, rng)
        learning_rate = scheduled_learning_rate(
            self.step,
            peak=config.learning_rate,
            schedule=config.lr_schedule,
            total_steps=config.steps,
            warmup_steps=config.warmup_steps,
        )
        step = self.step + 1

        # Training accuracy is measured on this step's batch, before the update.
        train_accuracy = None
        if self.task.loss == "cross_entropy" and _is_metric_step(step, config):
            train_accuracy = accuracy(self.model.predict(x)[0], y)

        loss, grads = self.model.loss_and_grads(x, y, self.task.loss)
        if math.isfinite(loss):
            grad_norm = self.optimizer.step(self.model.params, grads, learning_rate)
        else:
            grad_norm = global_norm(grads)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self._diverge(step, loss, grad_norm)

        self.step = step
        self.window.add(loss, grad_norm, learning_rate)
        stage_accuracy = None
        if _is_metric_step(step, config):
            stage_accuracy = self._emit_metric(
                train_accuracy, evaluate_now=_is_eval_step(step, config)
            )
        if self.curriculum is not None:
            message = self.curriculum.advance_if_done(step, stage_accuracy)
            if message is not None:
                _emit_log(self.emit, message)

    def _evaluate(self) -> tuple[float, float | None, dict]:
        """Score the model on the held-out set: (loss, accuracy, per-group accuracy field)."""
        predictions = predict_in_chunks(self.model, self.test_x)
        test_loss, test_accuracy = score_predictions(self.task.loss, predictions, self.test_y)
        self.test_loss, self.test_accuracy = test_loss, test_accuracy
        if self.test_groups is None:
            return test_loss, test_accuracy, {}
        per_group = accuracy_by_group(predictions, self.test_y, self.test_groups)
        self.test_accuracy_per_group = per_group
        return test_loss, test_accuracy, {self.task.accuracy_group_metric: per_group}

    def _emit_metric(self, train_accuracy: float | None, evaluate_now: bool) -> float | None:
        """Emit a metric event; return the curriculum stage's held-out accuracy, if measured."""
        test_loss = test_accuracy = None
        extra = {}
        if evaluate_now:
            test_loss, test_accuracy, extra = self._evaluate()
        stage_accuracy = None
        if self.curriculum is not None:
            extra["curriculum_stage"] = self.curriculum.index
            if evaluate_now:
                stage_accuracy = self.curriculum.evaluate_stage(self.model)
            extra["stage_test_accuracy"] = stage_accuracy

        now = time.perf_counter()
        window = self.window
        event = {
            "type": "metric",
            "step": self.step,
            "train_loss": window.loss_sum / window.count,
            "grad_norm": window.grad_norm,
            "learning_rate": window.learning_rate,
            "elapsed": now - self.started,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "train_accuracy": train_accuracy,
            **extra,
        }
        logger.info(
            "step %d/%d: train loss %.6f, grad norm %.4g, learning rate %.3g, %.1f ms/step",
            self.step,
            self.config.steps,
            event["train_loss"],
            window.grad_norm,
            window.learning_rate,
            window.ms_per_step(now),
        )
        self.metrics.append(event)
        self.emit(dict(event))
        if evaluate_now:
            _emit_log(
                self.emit,
                f"step {self.step}: test loss {test_loss:.6f}{_format_accuracy(test_accuracy)}",
            )
        self.last_metric_step = self.step
        self.window = _MetricWindow(now)
        return stage_accuracy

    def _diverge(self, step: int, loss: float, grad_norm: float) -> None:
        """Emit the measurements of the steps before ``step``, then raise TrainingDiverged."""
        if self.step > self.last_metric_step:
            self._emit_metric(train_accuracy=None, evaluate_now=False)
        message = f"diverged at step {step}: loss {loss}, gradient norm {grad_norm}"
        _emit_log(self.emit, message, level=logging.ERROR)
        raise TrainingDiverged(message, step=step, metrics=self.metrics)
