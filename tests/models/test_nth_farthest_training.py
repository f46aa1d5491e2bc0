"""N-th farthest training support: allowed n, padded labels, per-n accuracy, chunked
evaluation, the curriculum and the recipe, on tiny seeded configs."""

import gc
import json
import tracemalloc

import numpy as np
import pytest

from models import training
from models.curriculum import CurriculumError, check_curriculum
from models.evaluation import accuracy_by_group, predict_in_chunks
from models.factory import make_model
from models.recipes import NTH_FARTHEST_CURRICULUM, nth_farthest_config
from models.tasks import TASK_SPECS, make_task
from models.train import main
from models.train_config import TrainConfig
from models.training import train


def draw(task, batch_size=200, seed=0):
    return task.sample_with_info(batch_size, np.random.default_rng(seed))


def tiny_nth_config(**overrides) -> TrainConfig:
    settings = {
        "task": "nth-farthest",
        "task_options": {"num_vectors": 4, "vector_dim": 2},
        "model": "lstm",
        "model_options": {"hidden_size": 8},
        "steps": 12,
        "batch_size": 8,
        "eval_interval": 3,
        "eval_size": 64,
        "log_interval": 3,
    }
    settings.update(overrides)
    return TrainConfig.from_dict(settings)


TWO_STAGES = [
    {"task_options": {"num_vectors": 2}, "threshold": 0.0},
    {"task_options": {"num_vectors": 3, "allowed_n": [0, 2]}, "threshold": 1.0, "max_steps": 4},
]


# Task options: allowed n and padded labels.


def test_allowed_n_restricts_questions():
    task = make_task("nth-farthest", num_vectors=4, vector_dim=3, allowed_n=[3, 0])
    x, y, info = draw(task)
    assert task.options["allowed_n"] == [0, 3]
    assert set(info["n"].tolist()) == {0, 3}
    rows = np.arange(len(y))
    assert np.array_equal(info["ranking"][rows, info["n"]], y)
    # n is encoded in the n one-hot block of every row.
    assert np.array_equal(np.argmax(x[:, 0, 7:11], axis=-1), info["n"])


def test_default_options_allow_every_n():
    task = make_task("nth-farthest", num_vectors=4, vector_dim=4)
    assert task.options == {"num_vectors": 4, "vector_dim": 4, "num_labels": 4, "allowed_n": []}
    _, _, info = draw(task, batch_size=400)
    assert set(info["n"].tolist()) == {0, 1, 2, 3}


def test_num_labels_pads_one_hot_blocks_and_classes():
    task = make_task("nth-farthest", num_vectors=2, vector_dim=3, num_labels=4)
    assert (task.input_size, task.output_size, task.seq_len) == (3 + 3 * 4, 4, 2)
    x, y, info = draw(task)
    assert x.shape == (200, 2, 15)
    assert set(y.tolist()) <= {0, 1}
    # Labels, n and m use only the first 2 of the 4 entries of each block.
    for start in (3, 7, 11):
        assert np.all(x[:, :, start + 2 : start + 4] == 0.0)
        assert np.all(x[:, :, start : start + 2].sum(axis=-1) == 1.0)
    assert np.array_equal(np.argmax(x[:, :, 3:7], axis=-1), info["order"])


def test_same_seed_same_batch_with_allowed_n():
    task = make_task("nth-farthest", num_vectors=3, vector_dim=2, allowed_n=[1])
    first, _, _ = draw(task, seed=5)
    second, _, _ = draw(task, seed=5)
    assert np.array_equal(first, second)


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"num_vectors": 3, "allowed_n": [0, 3]}, ["'allowed_n'", "from 0 to", "= 2", "got 3"]),
        ({"allowed_n": [1, 1]}, ["'allowed_n'", "distinct", "[1, 1]"]),
        ({"allowed_n": [True]}, ["'allowed_n'", "list of integers", "True"]),
        ({"allowed_n": 2}, ["'allowed_n'", "list of integers", "got 2"]),
        ({"num_vectors": 4, "num_labels": 3}, ["'num_labels'", "at least num_vectors (4)", "3"]),
        ({"labels": 3}, ["unknown option 'labels'", "allowed_n", "num_labels"]),
    ],
)
def test_invalid_nth_options_name_option_rule_and_value(options, fragments):
    with pytest.raises(ValueError) as error:
        make_task("nth-farthest", **options)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_task_spec_lists_allowed_n_as_int_list():
    options = {option["name"]: option for option in TASK_SPECS["nth-farthest"]["options"]}
    assert options["allowed_n"]["type"] == "int_list"
    assert options["allowed_n"]["default"] == []
    assert options["num_labels"]["default"] == 0


# Per-n accuracy and chunked evaluation.


def test_accuracy_by_group_counts_each_group():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    labels = np.array([0, 0, 0, 1, 1])
    groups = np.array([0, 0, 1, 1, 3])
    assert accuracy_by_group(logits, labels, groups) == {"0": 0.5, "1": 1.0, "3": 0.0}


def test_chunked_predictions_match_and_bound_memory():
    task = make_task("nth-farthest", num_vectors=4, vector_dim=4)
    model = make_model(
        "rmc", input_size=task.input_size, output_size=task.output_size, mem_slots=2, head_size=4
    )
    x, _ = task.sample(1024, np.random.default_rng(0))
    assert np.array_equal(predict_in_chunks(model, x, chunk=64), model.predict(x)[0])

    def peak_bytes(function):
        gc.collect()
        tracemalloc.start()
        function()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    chunked = peak_bytes(lambda: predict_in_chunks(model, x, chunk=64))
    whole = peak_bytes(lambda: predict_in_chunks(model, x, chunk=1024))
    # The forward activations of 64 sequences, not of 1024, set the peak.
    assert chunked < 0.25 * whole


def test_training_reports_accuracy_per_n():
    result = train(tiny_nth_config(task_options={"num_vectors": 4, "vector_dim": 2}))
    evaluated = [event for event in result.metrics if event["test_loss"] is not None]
    assert [event["step"] for event in evaluated] == [3, 6, 9, 12]
    for event in result.metrics:
        assert ("test_accuracy_per_n" in event) == (event["test_loss"] is not None)

    # The held-out set is drawn from its own generator, so its n values can be recounted.
    _, _, info = make_task("nth-farthest", num_vectors=4, vector_dim=2).sample_with_info(
        64, np.random.default_rng([0, 1])
    )
    counts = {str(n): int(np.sum(info["n"] == n)) for n in range(4)}
    last = evaluated[-1]
    assert set(last["test_accuracy_per_n"]) == {key for key, count in counts.items() if count}
    weighted = sum(counts[n] * value for n, value in last["test_accuracy_per_n"].items()) / 64
    assert weighted == pytest.approx(last["test_accuracy"])
    assert result.summary["final_test_accuracy_per_n"] == last["test_accuracy_per_n"]


def test_accuracy_per_n_has_only_allowed_n():
    config = tiny_nth_config(task_options={"num_vectors": 4, "vector_dim": 2, "allowed_n": [0, 3]})
    result = train(config)
    assert set(result.summary["final_test_accuracy_per_n"]) == {"0", "3"}


def test_regression_task_has_no_accuracy_per_n():
    config = TrainConfig.from_dict(
        {"task_options": {"num_steps": 3}, "model": "lstm", "model_options": {"hidden_size": 4},
         "steps": 4, "batch_size": 4, "eval_interval": 2, "eval_size": 8, "log_interval": 2}
    )  # fmt: skip
    result = train(config)
    assert all("test_accuracy_per_n" not in event for event in result.metrics)
    assert "final_test_accuracy_per_n" not in result.summary


# Curriculum: validation.


@pytest.mark.parametrize(
    ("curriculum", "loc", "fragments"),
    [
        ([], (), ["list of 1 to 16 stages", "got []"]),
        ({"threshold": 0.5}, (), ["list of 1 to 16 stages"]),
        ([{"threshold": 1.5}], (0, "threshold"), ["curriculum[0].threshold", "0 to 1", "1.5"]),
        ([{"task_options": {}}], (0, "threshold"), ["curriculum[0].threshold is required"]),
        ([{"threshold": 0.5, "steps": 3}], (0, "steps"), ["unknown key 'steps'"]),
        (
            [{"threshold": 0.5, "max_steps": 0}],
            (0, "max_steps"),
            ["curriculum[0].max_steps", "from 1 to", "got 0"],
        ),
        (
            [{"threshold": 0.5}, {"threshold": 0.5, "task_options": {"num_vectors": 5}}],
            (1, "task_options"),
            ["curriculum[1].task_options", "'num_labels'", "at least num_vectors (5)"],
        ),
        (
            [{"threshold": 0.5, "task_options": {"vector_dim": 3}}],
            (0, "task_options"),
            ["input size 15", "must equal the run's 14"],
        ),
        (
            [{"threshold": 0.5, "task_options": {"num_vectors": 3, "allowed_n": [3]}}],
            (0, "task_options"),
            ["'allowed_n'", "got 3"],
        ),
    ],
)
def test_invalid_curriculum_names_stage_field_and_value(curriculum, loc, fragments):
    with pytest.raises(CurriculumError) as error:
        tiny_nth_config(curriculum=curriculum)
    assert error.value.loc == loc
    for fragment in fragments:
        assert fragment in str(error.value)


def test_curriculum_needs_classification_task():
    with pytest.raises(ValueError, match="classification task, and 'tracking-grid' is not"):
        TrainConfig.from_dict({"curriculum": [{"threshold": 0.5}]})


def test_curriculum_config_round_trips_with_defaults():
    config = tiny_nth_config(curriculum=TWO_STAGES)
    assert config.curriculum[0] == {
        "task_options": {"num_vectors": 2},
        "threshold": 0.0,
        "max_steps": None,
    }
    data = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.from_dict(data) == config


# Curriculum: training.


class ShapeRecorder:
    """A real model that records the number of steps of every training batch."""

    def __init__(self, model):
        self._model = model
        self.batch_steps = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def loss_and_grads(self, x, y, loss):
        self.batch_steps.append(x.shape[1])
        return self._model.loss_and_grads(x, y, loss)


@pytest.fixture
def recorded_models(monkeypatch):
    built = []
    real_build_model = training.build_model

    def build_recorded(config, task):
        built.append(ShapeRecorder(real_build_model(config, task)))
        return built[-1]

    monkeypatch.setattr(training, "build_model", build_recorded)
    return built


def test_curriculum_advances_and_records_stages(recorded_models):
    events = []
    result = train(tiny_nth_config(curriculum=TWO_STAGES), on_event=events.append)

    # Stage 1 (2 vectors) passes its threshold of 0 at the first evaluation, step 3. Stage
    # 2 (3 vectors) cannot reach 100% and ends by max_steps after 4 steps, at step 7.
    assert recorded_models[0].batch_steps == [2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4]
    metrics = [event for event in events if event["type"] == "metric"]
    assert [event["curriculum_stage"] for event in metrics] == [0, 1, 2, 2]
    assert metrics[0]["stage_test_accuracy"] is not None
    assert metrics[2]["stage_test_accuracy"] is None

    logs = [event["message"] for event in events if event["type"] == "log"]
    assert any(message.startswith("curriculum: starting with stage 1 of 2") for message in logs)
    assert any("stage 1 of 2 ended at step 3 because held-out accuracy" in line for line in logs)
    assert any(
        "stage 2 of 2 ended at step 7 because it ran its max_steps 4" in line for line in logs
    )

    stages = result.summary["curriculum"]
    assert [(stage["start_step"], stage["end_step"]) for stage in stages] == [(0, 3), (3, 7)]
    assert [stage["end_reason"] for stage in stages] == ["threshold", "max_steps"]
    assert stages[0]["held_out_accuracy"] == metrics[0]["stage_test_accuracy"]


def test_curriculum_stage_unpassed_keeps_training_on_it(recorded_models):
    stages = [{"task_options": {"num_vectors": 2}, "threshold": 1.0}]
    result = train(tiny_nth_config(curriculum=stages, steps=6))
    assert recorded_models[0].batch_steps == [2] * 6
    assert result.summary["curriculum"][0]["end_step"] is None


def test_curriculum_run_is_deterministic_by_seed():
    first = train(tiny_nth_config(curriculum=TWO_STAGES))
    second = train(tiny_nth_config(curriculum=TWO_STAGES))
    other = train(tiny_nth_config(curriculum=TWO_STAGES, seed=1))
    for key, value in first.model.params.items():
        assert np.array_equal(value, second.model.params[key]), key
    assert not np.array_equal(first.model.params["lstm.W"], other.model.params["lstm.W"])

    def without_time(metrics):
        return [{k: v for k, v in event.items() if k != "elapsed"} for event in metrics]

    assert without_time(first.metrics) == without_time(second.metrics)


def test_cli_reads_curriculum_file(tmp_path):
    stages_path = tmp_path / "stages.json"
    stages_path.write_text(json.dumps(TWO_STAGES))
    out = tmp_path / "run"
    arguments = [
        "--task", "nth-farthest", "--model", "lstm", "--steps", "6", "--seed", "0",
        "--out", str(out), "--batch-size", "4", "--eval-interval", "3", "--eval-size", "16",
        "--log-interval", "3", "--task-option", "num_vectors=4", "--task-option", "vector_dim=2",
        "--model-option", "hidden_size=4", "--curriculum", f"@{stages_path}",
    ]  # fmt: skip
    assert main(arguments) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["curriculum"][1]["task_options"] == {"num_vectors": 3, "allowed_n": [0, 2]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["curriculum_stage"] for row in rows] == [0, 1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["curriculum"][0]["end_step"] == 3


def test_cli_rejects_malformed_curriculum(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--task", "nth-farthest", "--model", "lstm", "--steps", "2", "--seed", "0",
              "--out", str(tmp_path / "run"), "--curriculum", "[{"])  # fmt: skip
    assert "--curriculum is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# The recipe.


@pytest.mark.parametrize("model", ["rmc", "lstm"])
@pytest.mark.parametrize("curriculum", [False, True])
def test_recipe_configs_are_valid(model, curriculum):
    config = TrainConfig.from_dict(nth_farthest_config(model, seed=2, curriculum=curriculum))
    assert (config.batch_size, config.learning_rate, config.clip_norm) == (512, 3e-4, 1.0)
    assert config.lr_schedule == "constant"
    assert config.seed == 2
    assert (config.curriculum is not None) == curriculum
    task = config.build_task()
    assert (task.input_size, task.output_size) == (4 + 3 * 4, 4)


def test_recipe_curriculum_stages_fit_the_task():
    task = make_task("nth-farthest", num_vectors=4, vector_dim=4)
    stages = check_curriculum(NTH_FARTHEST_CURRICULUM, "nth-farthest", task)
    assert [stage["threshold"] for stage in stages] == [0.9] * 4
    assert [stage["task_options"].get("num_vectors") for stage in stages] == [2, 3, 3, 4]
