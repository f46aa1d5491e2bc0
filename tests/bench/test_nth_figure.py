"""``bench/nth_figure.py``: the accuracy figure of N-th farthest runs."""

import json

import pytest

from bench import nth_figure


def write_run(folder, model, curriculum, accuracies):
    """Write a finished run with one evaluation every 250 steps and 15 s."""
    folder.mkdir(parents=True)
    config = {
        "model": model,
        "task_options": {"num_vectors": 4, "vector_dim": 4},
        "curriculum": [{"task_options": {"num_vectors": 2}}] if curriculum else None,
    }
    (folder / "config.json").write_text(json.dumps(config))
    rows = [
        {"step": 250 * (i + 1), "elapsed": 15.0 * (i + 1), "test_accuracy": accuracy}
        for i, accuracy in enumerate(accuracies)
    ]
    rows.insert(0, {"step": 50, "elapsed": 3.0, "test_accuracy": None})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "summary.json").write_text("{}")


def test_read_run_keeps_evaluations_only(tmp_path):
    write_run(tmp_path / "rmc-curriculum-s0", "rmc", True, [0.5, 0.7, 0.95])
    run = nth_figure.read_run(tmp_path / "rmc-curriculum-s0")
    assert run["steps"] == [250, 500, 750]
    assert run["minutes"] == [0.25, 0.5, 0.75]
    assert run["accuracy"] == [0.5, 0.7, 0.95]
    assert (run["model"], run["curriculum"], run["num_vectors"]) == ("rmc", True, 4)


def test_figure_is_a_png_with_every_finished_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs / "rmc-plain-s0", "rmc", False, [0.5, 0.8, 0.93])
    write_run(runs / "lstm-plain-s0", "lstm", False, [0.5, 0.5, 0.51])
    (runs / "lstm-plain-s1").mkdir()  # unfinished: no summary.json
    figure = tmp_path / "figure.png"

    assert nth_figure.main([str(runs), str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {figure}: 2 runs" in capsys.readouterr().out


def test_folder_without_finished_runs_is_an_error(tmp_path, capsys):
    (tmp_path / "runs" / "rmc-plain-s0").mkdir(parents=True)
    with pytest.raises(SystemExit):
        nth_figure.main([str(tmp_path / "runs"), str(tmp_path / "figure.png")])
    assert "no finished runs" in capsys.readouterr().err
    assert not (tmp_path / "figure.png").exists()
