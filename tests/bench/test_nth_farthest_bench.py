"""``bench/nth_farthest.py``: runs it trains and the results table it writes."""

import json
import logging

import pytest

from bench import nth_farthest


@pytest.fixture
def bench_environment(monkeypatch):
    """Restore what ``main`` changes in the process: thread variables and a log level."""
    for name in nth_farthest.THREAD_VARIABLES:
        monkeypatch.setenv(name, "1")
    training_logger = logging.getLogger("models.training")
    level = training_logger.level
    yield
    training_logger.setLevel(level)


def test_two_jobs_train_both_models_with_the_recipe(tmp_path, bench_environment):
    out = tmp_path / "nth"
    arguments = ["--out", str(out), "--seeds", "1", "--curriculum", "off", "--steps", "3"]
    assert nth_farthest.main([*arguments, "--jobs", "2"]) == 0

    for model in ("rmc", "lstm"):
        folder = out / f"{model}-plain-s1"
        config = json.loads((folder / "config.json").read_text())
        assert (config["model"], config["seed"], config["batch_size"]) == (model, 1, 512)
        assert config["time_limit_minutes"] == 30.0
        summary = json.loads((folder / "summary.json").read_text())
        assert (summary["status"], summary["steps"], summary["stopped_by"]) == (
            "completed",
            3,
            "steps",
        )
        assert (folder / "checkpoint.npz").is_file()
    results = (out / "results.md").read_text()
    assert "| lstm-plain-s1 | 3 |" in results
    assert "| rmc-plain-s1 | 3 |" in results
    assert "--jobs 2" in results


def write_run(folder, evaluations):
    """Write the files ``describe_run`` reads: (step, elapsed seconds, accuracy) per row."""
    folder.mkdir()
    rows = [
        {"step": step, "elapsed": elapsed, "test_accuracy": accuracy}
        for step, elapsed, accuracy in evaluations
    ]
    rows.insert(1, {"step": 1, "elapsed": 1.0, "test_accuracy": None})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "config.json").write_text("{}")
    last_step, last_elapsed, _ = evaluations[-1]
    summary = {"status": "completed", "steps": last_step, "seconds": last_elapsed}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_results_row_reads_accuracy_by_time_and_step(tmp_path):
    evaluations = [
        (0, 0.0, 0.25),
        (5_000, 500.0, 0.60),
        (9_000, 1_150.0, 0.91),
        (15_000, 1_700.0, 0.88),
        (21_000, 1_900.0, 0.95),
    ]
    write_run(tmp_path / "rmc-plain-s0", evaluations)
    row = nth_farthest.describe_run(tmp_path / "rmc-plain-s0")

    # The last evaluation at or before 10, 20 and 30 minutes, and 5k, 10k and 20k steps.
    assert row["by_minutes"] == {10: 0.60, 20: 0.91, 30: 0.88}
    assert row["by_steps"] == {5_000: 0.60, 10_000: 0.91, 20_000: 0.88}
    assert (row["reached_step"], row["reached_seconds"]) == (9_000, 1_150.0)
    assert (row["final_accuracy"], row["best_accuracy"]) == (0.95, 0.95)
    table = nth_farthest.results_table([row])
    assert "| rmc-plain-s0 | 21000 | 31.7 min | 60.0% | 91.0% | 88.0% |" in table
    assert "step 9000, 19.2 min" in table


def test_unfinished_run_has_no_row(tmp_path):
    (tmp_path / "lstm-plain-s0").mkdir()
    assert nth_farthest.describe_run(tmp_path / "lstm-plain-s0") is None


def test_zero_jobs_is_rejected(tmp_path, capsys, bench_environment):
    with pytest.raises(SystemExit):
        nth_farthest.main(["--out", str(tmp_path / "nth"), "--jobs", "0"])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "nth").exists()
