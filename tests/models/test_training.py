"""Training loop, its configuration and the command line, on tiny seeded configs."""

import dataclasses
import json
import math

import numpy as np
import pytest

from models import training
from models.checkpoint import load_checkpoint
from models.train import main, parse_option
from models.train_config import TrainConfig
from models.training import TrainingDiverged, train

METRIC_FIELDS = {
    "type",
    "step",
    "train_loss",
    "grad_norm",
    "learning_rate",
    "elapsed",
    "test_loss",
    "test_accuracy",
    "train_accuracy",
}
SUMMARY_FIELDS = {
    "final_test_loss",
    "final_test_accuracy",
    "baselines",
    "steps",
    "seconds",
    "param_count",
    "stopped_by",
}


def tiny_config(**overrides) -> TrainConfig:
    settings = {
        "task": "tracking-grid",
        "task_options": {"num_steps": 4},
        "model": "lstm",
        "model_options": {"hidden_size": 8},
        "steps": 30,
        "batch_size": 8,
        "learning_rate": 1e-2,
        "eval_interval": 10,
        "eval_size": 32,
        "log_interval": 5,
    }
    settings.update(overrides)
    return TrainConfig.from_dict(settings)


def tiny_classification_config(**overrides) -> TrainConfig:
    settings = {
        "task": "nth-farthest",
        "task_options": {"num_vectors": 3, "vector_dim": 2},
        "model": "rmc",
        "model_options": {"mem_slots": 2, "head_size": 4, "num_heads": 2},
        "steps": 6,
        "batch_size": 4,
        "eval_interval": 3,
        "eval_size": 16,
        "log_interval": 2,
    }
    settings.update(overrides)
    return TrainConfig.from_dict(settings)


def collect_events(config, **kwargs):
    events = []
    result = train(config, on_event=events.append, **kwargs)
    return result, events


# Training.


def test_tiny_lstm_learns_on_fixed_seed():
    config = tiny_config(steps=300, eval_interval=300, log_interval=50, eval_size=256)
    result = train(config)
    first, last = result.metrics[0], result.metrics[-1]
    assert last["train_loss"] < first["train_loss"]
    assert result.summary["final_test_loss"] < 0.9 * result.summary["baselines"]["mean"]


def test_events_arrive_in_order_with_their_fields():
    config = tiny_config(steps=23)
    result, events = collect_events(config)

    assert events[0]["type"] == "log"
    assert "seed 0" in events[0]["message"]
    assert f"{result.model.param_count} parameters" in events[0]["message"]
    assert events[-1]["type"] == "log"
    assert events[-1]["message"].startswith("training completed after 23 steps")

    metrics = [event for event in events if event["type"] == "metric"]
    assert [event["step"] for event in metrics] == [5, 10, 15, 20, 23]
    for event in metrics:
        assert set(event) == METRIC_FIELDS
        assert event["train_accuracy"] is None
        assert event["test_accuracy"] is None
        assert math.isfinite(event["train_loss"])
        assert event["grad_norm"] > 0
    evaluated = [event["step"] for event in metrics if event["test_loss"] is not None]
    assert evaluated == [10, 20, 23]
    elapsed = [event["elapsed"] for event in metrics]
    assert elapsed == sorted(elapsed)

    # Each evaluation is followed by a log line that reports it.
    for index, event in enumerate(events):
        if event["type"] == "metric" and event["test_loss"] is not None:
            assert events[index + 1]["type"] == "log"
            assert events[index + 1]["message"].startswith(f"step {event['step']}: test loss")

    assert [{k: v for k, v in m.items()} for m in result.metrics] == metrics
    assert result.status == "completed"


def test_learning_rate_in_events_follows_schedule():
    config = tiny_config(steps=20, warmup_steps=5, lr_schedule="cosine", learning_rate=0.01)
    result = train(config)
    rates = {event["step"]: event["learning_rate"] for event in result.metrics}
    assert rates[5] == pytest.approx(0.01)  # the step that ends the warm-up
    assert rates[20] == pytest.approx(0.001)  # the last step, at 10% of the peak


def test_summary_fields():
    result = train(tiny_config(steps=10))
    assert SUMMARY_FIELDS <= set(result.summary)
    assert result.summary["steps"] == 10
    assert result.summary["stopped_by"] == "steps"
    assert result.summary["final_test_accuracy"] is None
    assert result.summary["final_test_loss"] == result.metrics[-1]["test_loss"]
    assert result.summary["param_count"] == result.model.param_count
    assert set(result.summary["baselines"]) == {"mean", "last_seen"}
    json.dumps(result.summary)


def test_classification_reports_accuracies():
    result, events = collect_events(tiny_classification_config())
    metrics = [event for event in events if event["type"] == "metric"]
    assert [event["step"] for event in metrics] == [2, 3, 4, 6]
    for event in metrics:
        assert 0.0 <= event["train_accuracy"] <= 1.0
    assert [event["test_accuracy"] is not None for event in metrics] == [False, True, False, True]
    assert 0.0 <= result.summary["final_test_accuracy"] <= 1.0
    assert result.summary["baselines"]["chance"] == pytest.approx(1 / 3)


def test_should_stop_cancels_between_steps():
    calls = []

    def should_stop():
        calls.append(None)
        return len(calls) > 7

    result, events = collect_events(tiny_config(steps=30), should_stop=should_stop)

    assert result.status == "cancelled"
    assert result.summary["status"] == "cancelled"
    assert result.summary["steps"] == 7
    assert result.summary["stopped_by"] == "cancel"
    # The stopped run is evaluated once more, so the summary describes its final weights.
    assert result.metrics[-1]["step"] == 7
    assert result.metrics[-1]["test_loss"] == result.summary["final_test_loss"]
    assert events[-1]["message"].startswith("training cancelled after 7 steps")


@pytest.fixture
def ten_seconds_per_step(monkeypatch):
    """Make the training clock advance 10 s with every step and stand still otherwise."""
    clock = {"now": 0.0}
    original_step = training._Run._train_step

    def timed_step(self, rng):
        original_step(self, rng)
        clock["now"] += 10.0

    monkeypatch.setattr(training.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(training._Run, "_train_step", timed_step)


def test_time_limit_ends_run_as_completed(ten_seconds_per_step):
    result, events = collect_events(tiny_config(steps=30, time_limit_minutes=1.0))

    assert result.status == "completed"
    assert result.summary["stopped_by"] == "time_limit"
    # The step that ends at 60 s reaches the limit: 6 steps of 10 s.
    assert result.summary["steps"] == 6
    assert result.summary["seconds"] == 60.0
    assert result.metrics[-1]["step"] == 6
    assert result.metrics[-1]["test_loss"] == result.summary["final_test_loss"]
    assert events[-1]["message"].startswith("training completed after 6 steps")


def test_time_limit_above_run_length_changes_nothing(ten_seconds_per_step):
    limited = train(tiny_config(steps=12, time_limit_minutes=5.0))
    unlimited = train(tiny_config(steps=12))
    assert limited.summary["stopped_by"] == "steps"
    assert limited.summary["steps"] == 12
    for name, value in unlimited.model.params.items():
        np.testing.assert_array_equal(limited.model.params[name], value)


def test_same_seed_gives_same_weights():
    first = train(tiny_config(steps=15))
    second = train(tiny_config(steps=15))
    other_seed = train(tiny_config(steps=15, seed=1))
    for key, value in first.model.params.items():
        assert np.array_equal(value, second.model.params[key]), key
    assert not np.array_equal(first.model.params["lstm.W"], other_seed.model.params["lstm.W"])
    assert first.summary["final_test_loss"] == second.summary["final_test_loss"]


def test_explicit_rng_matches_default():
    config = tiny_config(steps=5, seed=3)
    implicit = train(config)
    explicit = train(config, rng=np.random.default_rng(3))
    assert np.array_equal(implicit.model.params["lstm.W"], explicit.model.params["lstm.W"])


class PoisonedModel:
    """A real model whose gradients become NaN from the ``poison_call``-th update on."""

    def __init__(self, model, poison_call):
        self._model = model
        self._calls = 0
        self._poison_call = poison_call

    def __getattr__(self, name):
        return getattr(self._model, name)

    def loss_and_grads(self, x, y, loss):
        value, grads = self._model.loss_and_grads(x, y, loss)
        self._calls += 1
        if self._calls >= self._poison_call:
            grads = {key: np.full_like(grad, np.nan) for key, grad in grads.items()}
        return value, grads


@pytest.fixture
def diverge_at_step_8(monkeypatch):
    built = []
    real_build_model = training.build_model

    def build_poisoned(config, task):
        built.append(PoisonedModel(real_build_model(config, task), poison_call=8))
        return built[-1]

    monkeypatch.setattr(training, "build_model", build_poisoned)
    return built


def test_divergence_raises_after_emitting_metrics(diverge_at_step_8):
    events = []
    with pytest.raises(TrainingDiverged, match=r"^diverged at step 8: loss .*gradient norm nan"):
        train(tiny_config(steps=30), on_event=events.append)

    error_event = events[-1]
    assert error_event == {"type": "log", "message": error_event["message"]}
    assert error_event["message"].startswith("diverged at step 8")
    metrics = [event for event in events if event["type"] == "metric"]
    # Steps 6 and 7 completed after the metric at step 5, so they are reported too.
    assert [event["step"] for event in metrics] == [5, 7]
    for key, value in diverge_at_step_8[0].params.items():
        assert np.isfinite(value).all(), key


def test_divergence_error_keeps_metrics(diverge_at_step_8):
    with pytest.raises(TrainingDiverged) as error:
        train(tiny_config(steps=30))
    assert error.value.step == 8
    assert [event["step"] for event in error.value.metrics] == [5, 7]


# Configuration.


def test_config_defaults_and_round_trip():
    config = TrainConfig()
    assert config.task == "tracking-grid"
    assert config.steps == 10_000
    assert config.batch_size == 32
    data = config.to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(data))) == config
    assert set(data) == {field.name for field in dataclasses.fields(TrainConfig)}


def test_config_rejects_unknown_key():
    with pytest.raises(ValueError, match="unknown training config key 'epochs'"):
        TrainConfig.from_dict({"epochs": 3})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "invalid steps: must be an integer between 1 and"),
        ({"steps": 10.0}, "invalid steps: .* got 10.0"),
        ({"batch_size": True}, "invalid batch_size: .* got True"),
        ({"seed": -1}, "invalid seed: .* got -1"),
        ({"learning_rate": 0.0}, r"invalid learning_rate: must be a number in \(0, 1\], got 0.0"),
        ({"learning_rate": float("nan")}, "invalid learning_rate"),
        ({"lr_schedule": "step"}, "invalid lr_schedule: must be one of constant, cosine"),
        ({"dtype": "float16"}, "invalid dtype: must be one of float32, float64, got 'float16'"),
        ({"model": "gru"}, "invalid model: must be one of lstm, rmc, got 'gru'"),
        ({"clip_norm": -1.0}, "invalid clip_norm: must be a positive number or None"),
        ({"warmup_steps": 20, "steps": 10}, r"invalid warmup_steps: must be at most steps \(10\)"),
        ({"time_limit_minutes": 0}, r"invalid time_limit_minutes: must be a number in \(0, "),
        ({"time_limit_minutes": -5.0}, "invalid time_limit_minutes: .* got -5.0"),
        ({"time_limit_minutes": float("inf")}, "invalid time_limit_minutes: .* got inf"),
        ({"time_limit_minutes": "30"}, "invalid time_limit_minutes: .* got '30'"),
        ({"time_limit_minutes": 1e6}, "invalid time_limit_minutes: .* got 1000000.0"),
        ({"task": "copy"}, "unknown task 'copy'"),
        ({"task_options": {"grid_size": 50}}, "invalid option 'grid_size'"),
        ({"task_options": [1]}, "invalid task_options: must be a dict"),
    ],
)
def test_config_rejects_invalid_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(overrides)


def test_config_is_frozen_and_copies_options():
    options = {"hidden_size": 8}
    config = TrainConfig(model="lstm", model_options=options)
    options["hidden_size"] = 16
    assert config.model_options == {"hidden_size": 8}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 5


def test_invalid_model_option_raises_before_training():
    with pytest.raises(ValueError, match="hidden_size"):
        train(tiny_config(model_options={"hidden_size": 0}))


# Command line.


def cli_arguments(out, *extra):
    return [
        "--task", "tracking-grid",
        "--model", "lstm",
        "--steps", "12",
        "--seed", "2",
        "--out", str(out),
        "--batch-size", "8",
        "--eval-interval", "6",
        "--eval-size", "32",
        "--log-interval", "4",
        "--task-option", "num_steps=3",
        "--model-option", "hidden_size=6",
        *extra,
    ]  # fmt: skip


def test_cli_writes_the_four_files(tmp_path):
    out = tmp_path / "run"
    assert main(cli_arguments(out)) == 0

    config = json.loads((out / "config.json").read_text())
    assert TrainConfig.from_dict(config).to_dict() == config
    assert config["model_options"] == {"hidden_size": 6}
    assert config["task_options"] == {"num_steps": 3}
    assert config["seed"] == 2

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [4, 6, 8, 12]
    assert set(rows[0]) == METRIC_FIELDS - {"type"}

    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["steps"] == 12
    assert summary["final_test_loss"] == rows[-1]["test_loss"]

    model = load_checkpoint(out / "checkpoint.npz")
    assert model.param_count == summary["param_count"]


def test_cli_time_limit_flag_is_recorded(tmp_path):
    out = tmp_path / "run"
    assert main(cli_arguments(out, "--time-limit-minutes", "5")) == 0
    assert json.loads((out / "config.json").read_text())["time_limit_minutes"] == 5.0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["steps"], summary["stopped_by"]) == (12, "steps")


def test_cli_refuses_existing_run_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(cli_arguments(out)) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(cli_arguments(out))
    assert exit_info.value.code == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(cli_arguments(out, "--overwrite")) == 0


def test_cli_rejects_invalid_model_option_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(cli_arguments(out, "--model-option", "hidden_size=-3"))
    assert exit_info.value.code == 2
    assert "hidden_size" in capsys.readouterr().err
    assert not out.exists()


def test_cli_divergence_keeps_written_files(tmp_path, diverge_at_step_8):
    out = tmp_path / "run"
    assert main(cli_arguments(out)) == 1
    assert (out / "config.json").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [4, 6, 7]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["error"].startswith("diverged at step 8")
    assert summary["final_test_loss"] == rows[1]["test_loss"]
    assert not (out / "checkpoint.npz").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hidden_size=64", ("hidden_size", 64)),
        ("noise_std=0.1", ("noise_std", 0.1)),
        ("gate_style=null", ("gate_style", None)),
        ("gate_style=unit", ("gate_style", "unit")),
        ("readout_hidden=[128,128]", ("readout_hidden", [128, 128])),
    ],
)
def test_parse_option(text, expected):
    assert parse_option(text) == expected
