"""Run lifecycle on a live server: complete, cancel, queue, delete, worker death, divergence."""

import csv
import io
import os
import signal

import numpy as np
import pytest
from server_helpers import RunsClient, pid_alive


def long_request(tiny_run_request, **overrides):
    """A run that trains until it is cancelled."""
    return tiny_run_request(
        "lstm", steps=1_000_000, log_interval=50, eval_interval=1_000_000, **overrides
    )


def test_run_completes_with_checkpoint(module_runs, tiny_run_request):
    created = module_runs.create(tiny_run_request())
    assert created["status"] in ("queued", "running")
    assert created["name"].startswith("rmc-tracking-grid-s0-")
    assert created["name"].endswith(created["id"][:4])

    run = module_runs.wait_for(created["id"])
    assert run["status"] == "completed", run["error"]
    assert run["progress"] == {"step": 40, "steps": 40}
    assert run["has_checkpoint"] is True
    assert run["param_count"] > 0
    assert run["final_metrics"]["final_test_loss"] > 0
    assert "mean" in run["final_metrics"]["baselines"]
    assert run["started_at"] <= run["finished_at"]

    metrics = module_runs.http.get(f"/api/runs/{run['id']}/metrics").json()
    assert [metric["step"] for metric in metrics] == [10, 20, 30, 40]
    assert all(metric["run_id"] == run["id"] for metric in metrics)
    assert metrics[1]["test_loss"] is not None
    assert metrics[0]["test_loss"] is None

    folder = module_runs.server.data_dir / "runs" / run["id"]
    assert sorted(path.name for path in folder.iterdir()) == ["checkpoint.npz", "config.json"]


def test_runs_list_newest_first(module_runs, tiny_run_request):
    first = module_runs.create(tiny_run_request("lstm"))
    second = module_runs.create(tiny_run_request("lstm", seed=1))
    ids = [run["id"] for run in module_runs.http.get("/api/runs").json()]
    assert ids.index(second["id"]) < ids.index(first["id"])
    for run in (first, second):
        assert module_runs.wait_for(run["id"])["status"] == "completed"


def test_metrics_csv_download(module_runs, tiny_run_request):
    run = module_runs.wait_for(module_runs.create(tiny_run_request("lstm"))["id"])
    response = module_runs.http.get(f"/api/runs/{run['id']}/metrics", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="{run["name"]}-metrics.csv"'

    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(row["step"]) for row in rows] == [10, 20, 30, 40]
    assert rows[0]["test_loss"] == ""
    assert float(rows[1]["test_loss"]) > 0
    assert set(rows[0]) >= {"run_id", "train_loss", "grad_norm", "learning_rate", "elapsed"}


def test_metrics_unknown_format_rejected(module_runs, tiny_run_request):
    run = module_runs.create(tiny_run_request("lstm"))
    response = module_runs.http.get(f"/api/runs/{run['id']}/metrics", params={"format": "xml"})
    assert response.status_code == 422
    module_runs.wait_for(run["id"])


def test_checkpoint_download(module_runs, tiny_run_request, tmp_path):
    run = module_runs.wait_for(module_runs.create(tiny_run_request())["id"])
    response = module_runs.http.get(f"/api/runs/{run['id']}/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    expected_name = f"{run['name']}-checkpoint.npz"
    assert expected_name in response.headers["content-disposition"]

    path = tmp_path / "downloaded.npz"
    path.write_bytes(response.content)
    with np.load(path, allow_pickle=False) as archive:
        assert "__config__" in archive.files
        assert (
            sum(archive[name].size for name in archive.files if name != "__config__")
            == (run["param_count"])
        )


def test_cancel_running_run_keeps_metrics(module_runs, tiny_run_request):
    run = module_runs.create(long_request(tiny_run_request))
    module_runs.wait_for_step(run["id"], 100)

    response = module_runs.http.post(f"/api/runs/{run['id']}/cancel")
    assert response.status_code == 202
    cancelled = module_runs.wait_for(run["id"], timeout=15)
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] is None
    assert cancelled["has_checkpoint"] is True
    metrics = module_runs.http.get(f"/api/runs/{run['id']}/metrics").json()
    assert len(metrics) >= 2
    assert metrics[-1]["step"] == cancelled["progress"]["step"]


def test_time_limited_run_completes_before_its_steps(module_runs, tiny_run_request):
    # Two seconds of a run that would take many minutes.
    run = module_runs.create(long_request(tiny_run_request, time_limit_minutes=2 / 60))
    finished = module_runs.wait_for(run["id"])

    assert finished["status"] == "completed", finished["error"]
    assert finished["config"]["time_limit_minutes"] == pytest.approx(2 / 60)
    assert finished["final_metrics"]["stopped_by"] == "time_limit"
    assert 0 < finished["progress"]["step"] < 1_000_000
    assert finished["final_metrics"]["seconds"] >= 2.0
    assert finished["final_metrics"]["final_test_loss"] > 0
    assert finished["has_checkpoint"] is True


def test_cancel_finished_run_conflicts(module_runs, tiny_run_request):
    run = module_runs.wait_for(module_runs.create(tiny_run_request("lstm"))["id"])
    response = module_runs.http.post(f"/api/runs/{run['id']}/cancel")
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]


def test_delete_requires_finished_run(module_runs, tiny_run_request):
    run = module_runs.create(long_request(tiny_run_request))
    module_runs.wait_for(run["id"], statuses=("running",))
    response = module_runs.http.delete(f"/api/runs/{run['id']}")
    assert response.status_code == 409
    assert "cancel it" in response.json()["detail"]

    module_runs.http.post(f"/api/runs/{run['id']}/cancel")
    module_runs.wait_for(run["id"], timeout=15)
    assert module_runs.http.delete(f"/api/runs/{run['id']}").status_code == 204
    assert module_runs.http.get(f"/api/runs/{run['id']}").status_code == 404
    assert module_runs.http.get(f"/api/runs/{run['id']}/metrics").status_code == 404
    assert not (module_runs.server.data_dir / "runs" / run["id"]).exists()


@pytest.mark.parametrize("run_id", ["0123456789ab", "not-a-run-id", "ABCDEF012345", "..%2F..%2Fx"])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/cancel"),
        ("GET", "/metrics"),
        ("GET", "/checkpoint"),
    ],
)
def test_unknown_run_is_404(module_runs, run_id, method, suffix):
    response = module_runs.http.request(method, f"/api/runs/{run_id}{suffix}")
    assert response.status_code == 404
    assert "not found" in response.json()["detail"].lower()


def test_predict_unknown_run_is_404(module_runs):
    response = module_runs.http.post("/api/runs/0123456789ab/predict", json={"seed": 0})
    assert response.status_code == 404


def test_runs_beyond_limit_wait_queued(module_runs, tiny_run_request):
    first, second, third = (
        module_runs.create(long_request(tiny_run_request, seed=seed)) for seed in range(3)
    )
    module_runs.wait_for(first["id"], statuses=("running",))
    module_runs.wait_for(second["id"], statuses=("running",))
    assert module_runs.get(third["id"])["status"] == "queued"

    response = module_runs.http.post(f"/api/runs/{third['id']}/cancel")
    assert response.status_code == 202
    third = response.json()
    assert third["status"] == "cancelled"
    assert third["error"] == "cancelled before it started"

    for run in (first, second):
        module_runs.http.post(f"/api/runs/{run['id']}/cancel")
        assert module_runs.wait_for(run["id"], timeout=15)["status"] == "cancelled"


def test_killed_worker_fails_run(module_runs, tiny_run_request):
    run = module_runs.create(long_request(tiny_run_request))
    module_runs.wait_for_step(run["id"], 50)
    pids = module_runs.worker_pids()
    assert len(pids) == 1

    os.kill(pids[0], signal.SIGKILL)
    failed = module_runs.wait_for(run["id"], timeout=15)
    assert failed["status"] == "failed"
    assert "SIGKILL" in failed["error"]
    assert len(module_runs.http.get(f"/api/runs/{run['id']}/metrics").json()) >= 1

    assert module_runs.http.get("/api/health").status_code == 200
    after = module_runs.wait_for(module_runs.create(tiny_run_request("lstm"))["id"])
    assert after["status"] == "completed"


def test_diverging_run_fails_with_step(module_runs, tiny_run_request):
    # A deep, wide ReLU readout at learning rate 1 overflows float32 on the second step.
    body = tiny_run_request(
        model_options={"mem_slots": 2, "head_size": 8, "readout_hidden": [1024] * 8},
        learning_rate=1.0,
        lr_schedule="constant",
        batch_size=4,
        log_interval=1,
    )
    run = module_runs.wait_for(module_runs.create(body)["id"])
    assert run["status"] == "failed"
    assert run["error"].startswith("diverged at step ")
    diverged_step = int(run["error"].split()[3].rstrip(":"))
    metrics = module_runs.http.get(f"/api/runs/{run['id']}/metrics").json()
    assert [metric["step"] for metric in metrics] == list(range(1, diverged_step))
    assert run["has_checkpoint"] is False

    response = module_runs.http.post(f"/api/runs/{run['id']}/predict", json={"seed": 0})
    assert response.status_code == 409
    assert "no checkpoint" in response.json()["detail"]
    response = module_runs.http.get(f"/api/runs/{run['id']}/checkpoint")
    assert response.status_code == 409


def test_checkpoint_write_error_fails_run(module_runs, tiny_run_request):
    run = module_runs.create(long_request(tiny_run_request))
    module_runs.wait_for_step(run["id"], 50)
    # A file where the run's folder belongs makes the checkpoint write fail.
    (module_runs.server.data_dir / "runs" / run["id"]).write_text("in the way")
    module_runs.http.post(f"/api/runs/{run['id']}/cancel")
    failed = module_runs.wait_for(run["id"], timeout=15)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("could not write the checkpoint")
    assert failed["has_checkpoint"] is False
    assert module_runs.http.get("/api/health").status_code == 200


def test_busy_worker_terminated_after_grace(tmp_path, start_live_server, tiny_run_request):
    # Steps of about a second on one core: the worker cannot notice a cancel within 0.2 s.
    body = tiny_run_request(
        task_options={},
        model_options={"mem_slots": 8, "head_size": 32, "num_heads": 4},
        batch_size=512,
        steps=1000,
        log_interval=1,
    )
    env = {"RELMEM_CANCEL_GRACE_SECONDS": "0.2"}
    with start_live_server(tmp_path / "data", extra_env=env) as server:
        runs = RunsClient(server)
        run = runs.create(body)
        # After the first metric the worker is inside step 2, which takes about a second.
        runs.wait_for_step(run["id"], 1)
        workers = runs.worker_pids()
        assert runs.http.post(f"/api/runs/{run['id']}/cancel").status_code == 202
        cancelled = runs.wait_for(run["id"], timeout=15)
        assert cancelled["status"] == "cancelled"
        assert cancelled["error"] == "the worker did not stop within 0.2 s and was terminated"
        assert not any(pid_alive(pid) for pid in workers)
        assert "terminating it" in server.log()
