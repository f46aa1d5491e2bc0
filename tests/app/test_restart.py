"""Restart recovery: runs, metrics and checkpoints survive a server that stops or is killed."""

import signal
import time

import httpx
from server_helpers import RunsClient, pid_alive


def long_request(tiny_run_request):
    return tiny_run_request("lstm", steps=1_000_000, log_interval=50, eval_interval=1_000_000)


def wait_until_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if pid_alive(pid)]


def test_killed_server_restart_keeps_runs(tmp_path, start_live_server, tiny_run_request):
    data_dir = tmp_path / "data"
    with start_live_server(data_dir) as server:
        runs = RunsClient(server)
        completed = runs.wait_for(runs.create(tiny_run_request())["id"])
        assert completed["status"] == "completed"
        metrics = runs.http.get(f"/api/runs/{completed['id']}/metrics").json()
        checkpoint = runs.http.get(f"/api/runs/{completed['id']}/checkpoint").content
        active = runs.create(long_request(tiny_run_request))
        runs.wait_for_step(active["id"], 50)
        workers = runs.worker_pids()
        assert len(workers) == 1

        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)

    # The orphaned worker notices that its server is gone and exits.
    assert wait_until_gone(workers) == []

    with start_live_server(data_dir) as server:
        runs = RunsClient(server)
        interrupted = runs.get(active["id"])
        assert interrupted["status"] == "interrupted"
        assert interrupted["error"] == "the server stopped before the run finished"
        assert interrupted["finished_at"] is not None

        assert runs.get(completed["id"]) == completed
        assert runs.http.get(f"/api/runs/{completed['id']}/metrics").json() == metrics
        assert runs.http.get(f"/api/runs/{completed['id']}/checkpoint").content == checkpoint
        predict = runs.http.post(f"/api/runs/{completed['id']}/predict", json={"seed": 3})
        assert predict.status_code == 200

        run_folders = (data_dir / "runs").iterdir()
        assert not [path for folder in run_folders for path in folder.glob("*.tmp")]

        # The restarted server trains new runs as before.
        again = runs.wait_for(runs.create(tiny_run_request("lstm"))["id"])
        assert again["status"] == "completed"


def test_stopped_server_interrupts_run(tmp_path, start_live_server, tiny_run_request):
    data_dir = tmp_path / "data"
    with start_live_server(data_dir) as server:
        runs = RunsClient(server)
        active = runs.create(long_request(tiny_run_request))
        runs.wait_for_step(active["id"], 50)
        workers = runs.worker_pids()

        server.process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal.
        assert server.process.wait(30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
        assert wait_until_gone(workers) == []

    with start_live_server(data_dir) as server:
        run = RunsClient(server).get(active["id"])
        assert run["status"] == "interrupted"
        assert run["error"] == "the server stopped during training"
        assert run["has_checkpoint"] is True


def test_corrupted_checkpoint_gives_clear_error(module_runs, tiny_run_request):
    run = module_runs.wait_for(module_runs.create(tiny_run_request())["id"])
    path = module_runs.server.data_dir / "runs" / run["id"] / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:200])

    response = module_runs.http.post(f"/api/runs/{run['id']}/predict", json={"seed": 0})
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "truncated or corrupted" in detail
    assert str(path.parent) not in detail
    assert httpx.get(f"{module_runs.server.url}/api/health").status_code == 200
