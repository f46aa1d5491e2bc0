"""``relmem import``: run folders of ``python -m models.train`` become runs of the explorer."""

import hashlib
import json

import pytest

from app.cli import main
from app.store import Store
from models.train import main as train_main


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A finished command-line run: a tiny RMC on N-th farthest, 6 steps."""
    out = tmp_path_factory.mktemp("cli-run") / "rmc-nth"
    arguments = [
        "--task", "nth-farthest", "--model", "rmc", "--steps", "6", "--seed", "3",
        "--out", str(out), "--batch-size", "8", "--eval-interval", "3", "--eval-size", "16",
        "--log-interval", "2",
        "--task-option", "num_vectors=3", "--task-option", "vector_dim=2",
        "--model-option", "mem_slots=2", "--model-option", "head_size=4",
        "--model-option", "num_heads=2",
    ]  # fmt: skip
    assert train_main(arguments) == 0
    return out


@pytest.fixture
def folder(trained_folder, tmp_path):
    """A private copy of the trained folder that a test may damage."""
    copy = tmp_path / "run"
    copy.mkdir()
    for path in trained_folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    return copy


def stored_runs(data_dir):
    store = Store(data_dir / "relmem.sqlite3")
    try:
        return store.list_runs()
    finally:
        store.close()


def assert_nothing_written(data_dir):
    assert stored_runs(data_dir) == []
    assert not any((data_dir / "runs").glob("*"))


def test_imported_run_is_served_like_a_trained_one(folder, tmp_path, capsys, start_live_server):
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 0
    [run] = stored_runs(data_dir)
    assert f"imported {folder} as run {run['id']}" in capsys.readouterr().out

    metric_lines = (folder / "metrics.jsonl").read_text().splitlines()
    with start_live_server(data_dir) as server, server.client() as http:
        served = http.get(f"/api/runs/{run['id']}").json()
        assert (served["status"], served["model"], served["seed"]) == ("completed", "rmc", 3)
        assert served["has_checkpoint"] is True
        assert served["progress"] == {"step": 6, "steps": 6}
        assert served["final_metrics"]["stopped_by"] == "steps"
        summary = json.loads((folder / "summary.json").read_text())
        assert served["final_metrics"]["final_test_accuracy"] == summary["final_test_accuracy"]

        metrics = http.get(f"/api/runs/{run['id']}/metrics").json()
        assert [row["step"] for row in metrics] == [2, 3, 4, 6]
        assert len(metrics) == len(metric_lines)
        assert set(metrics[1]["test_accuracy_per_n"]) == {"0", "1", "2"}

        logs = http.get(f"/api/runs/{run['id']}/logs").json()
        assert any(f"imported from {folder}" in line["message"] for line in logs)
        prediction = http.post(f"/api/runs/{run['id']}/predict", json={"seed": 1})
        assert prediction.status_code == 200, prediction.text
        assert len(prediction.json()["trace"]["attention"]) == 3  # one entry per vector


def test_missing_checkpoint_writes_nothing(folder, tmp_path, capsys):
    (folder / "checkpoint.npz").unlink()
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 1
    assert f"relmem import: {folder}: missing checkpoint.npz" in capsys.readouterr().err
    assert_nothing_written(data_dir)


def test_bad_metrics_line_is_named(folder, tmp_path, capsys):
    with (folder / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"train_loss": 0.5}\n')
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 1
    assert "metrics.jsonl line 5: must be a JSON object with a step" in capsys.readouterr().err
    assert_nothing_written(data_dir)


def test_config_over_the_api_limits_is_rejected(folder, tmp_path, capsys):
    config = json.loads((folder / "config.json").read_text())
    config["batch_size"] = 10**6
    (folder / "config.json").write_text(json.dumps(config))
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 1
    error = capsys.readouterr().err
    assert "config.json: batch_size: " in error
    assert "1000000" in error
    assert_nothing_written(data_dir)


def test_checkpoint_of_another_model_kind_is_rejected(folder, tmp_path, capsys):
    config = json.loads((folder / "config.json").read_text())
    config.update(model="lstm", model_options={"hidden_size": 8})
    (folder / "config.json").write_text(json.dumps(config))
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 1
    error = capsys.readouterr().err
    assert "checkpoint.npz contains a model of kind 'rmc', but config.json trains 'lstm'" in error
    assert_nothing_written(data_dir)


def test_one_bad_folder_does_not_stop_the_others(folder, tmp_path, capsys):
    data_dir = tmp_path / "data"
    missing = tmp_path / "no-such-run"
    assert main(["import", str(missing), str(folder), "--data-dir", str(data_dir)]) == 1
    captured = capsys.readouterr()
    assert f"relmem import: {missing}: not a folder" in captured.err
    assert len(stored_runs(data_dir)) == 1


def test_second_import_of_a_checkpoint_is_rejected(folder, tmp_path, capsys):
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 0
    [first] = stored_runs(data_dir)
    capsys.readouterr()

    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 1
    error = capsys.readouterr().err
    assert f"checkpoint.npz: already imported as run {first['id']}" in error
    assert "pass --again to import another copy" in error
    assert len(stored_runs(data_dir)) == 1
    assert len(list((data_dir / "runs").iterdir())) == 1

    assert main(["import", str(folder), "--data-dir", str(data_dir), "--again"]) == 0
    assert len(stored_runs(data_dir)) == 2


def test_other_checkpoint_imports_beside_the_first(folder, tmp_path):
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 0
    config = json.loads((folder / "config.json").read_text())
    other = tmp_path / "other"
    arguments = ["--task", "tracking-grid", "--model", "lstm", "--steps", "2", "--seed", "5"]
    arguments += ["--batch-size", "4", "--eval-size", "4", "--out", str(other)]
    assert train_main(arguments) == 0
    assert json.loads((other / "config.json").read_text()) != config
    assert main(["import", str(other), "--data-dir", str(data_dir)]) == 0
    assert len(stored_runs(data_dir)) == 2


def test_deleted_import_can_be_imported_again(folder, tmp_path):
    data_dir = tmp_path / "data"
    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 0
    [first] = stored_runs(data_dir)
    digest = hashlib.sha256((folder / "checkpoint.npz").read_bytes()).hexdigest()
    store = Store(data_dir / "relmem.sqlite3")
    try:
        assert store.runs_imported_from(digest) == [first["id"]]
        assert store.delete_run(first["id"])
        assert store.runs_imported_from(digest) == []
    finally:
        store.close()

    assert main(["import", str(folder), "--data-dir", str(data_dir)]) == 0
    [second] = stored_runs(data_dir)
    assert second["id"] != first["id"]
