"""Sweeps and runs on a Dask cluster: a LocalCluster on 127.0.0.1 with in-process workers.

The server runs in its own process with ``RELMEM_EXECUTOR=dask`` and trains nothing
itself. The cluster's worker threads live in the test process and send every event
through the scheduler.
"""

import io
import json
import time

import numpy as np
import pytest
from server_helpers import RunsClient
from sweep_helpers import (
    SWEEP_TIMEOUT_SECONDS,
    assert_cells_aggregate_seeds,
    create_sweep,
    wait_for_sweep,
)
from websockets.sync.client import connect

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        # tcp rather than the in-process default, so the server process can connect.
        protocol="tcp://",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
    ) as local_cluster:
        yield local_cluster


@pytest.fixture(scope="module")
def dask_runs(cluster, tmp_path_factory, start_live_server):
    env = {"RELMEM_EXECUTOR": "dask", "RELMEM_DASK_SCHEDULER": cluster.scheduler_address}
    data_dir = tmp_path_factory.mktemp("dask-server") / "data"
    with start_live_server(data_dir, extra_env=env) as server:
        client = RunsClient(server)
        yield client
        client.http.close()


def test_health_counts_cluster_threads(dask_runs):
    health = dask_runs.http.get("/api/health").json()
    assert health["max_concurrent_runs"] == 2


def test_sweep_on_dask_reaches_store_and_websocket(dask_runs, tiny_run_request):
    http = dask_runs.http
    body = {
        "base": tiny_run_request("rmc"),
        "grid": {"model_options.num_heads": [1, 2]},
        "seeds": [0, 1],
    }
    # One deadline bounds the whole sweep, because a busy machine can leave long gaps
    # between two messages.
    deadline = time.monotonic() + SWEEP_TIMEOUT_SECONDS
    with connect(f"ws://127.0.0.1:{dask_runs.server.port}/ws/runs") as socket:
        assert json.loads(socket.recv(timeout=SWEEP_TIMEOUT_SECONDS))["type"] == "snapshot"
        created = create_sweep(http, body)
        ids = {run["id"] for run in created["runs"]}
        completed = set()
        while completed != ids:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no completed status on the websocket for {ids - completed}"
            try:
                message = json.loads(socket.recv(timeout=remaining))
            except TimeoutError:
                continue
            run = message.get("run") if message["type"] == "status" else None
            if run and run["id"] in ids and run["status"] == "completed":
                completed.add(run["id"])

    sweep = wait_for_sweep(http, created["id"])
    assert sweep["status"] == "completed"
    assert_cells_aggregate_seeds(sweep, seeds=2)

    # Metrics arrived through the scheduler's queue, and the checkpoint through the result.
    run_id = created["runs"][0]["id"]
    metrics = http.get(f"/api/runs/{run_id}/metrics").json()
    assert [metric["step"] for metric in metrics] == [10, 20, 30, 40]
    checkpoint = http.get(f"/api/runs/{run_id}/checkpoint")
    assert checkpoint.status_code == 200
    archive = np.load(io.BytesIO(checkpoint.content), allow_pickle=False)
    assert "__config__" in archive.files
    prediction = http.post(f"/api/runs/{run_id}/predict", json={"seed": 3})
    assert prediction.status_code == 200, prediction.text


def test_cancel_on_dask(dask_runs, tiny_run_request):
    long_run = tiny_run_request(
        "lstm", steps=1_000_000, log_interval=50, eval_interval=1_000_000, eval_size=8
    )
    created = create_sweep(
        dask_runs.http,
        {"base": long_run, "grid": {"model_options.hidden_size": [4, 5, 6]}},
    )
    first = created["runs"][0]["id"]
    assert dask_runs.wait_for_step(first, 50)["status"] == "running"
    response = dask_runs.http.post(f"/api/sweeps/{created['id']}/cancel")
    assert response.status_code == 202

    sweep = wait_for_sweep(dask_runs.http, created["id"])
    ends = [(run["status"], run["error"]) for run in sweep["runs"]]
    assert sweep["counts"]["cancelled"] == 3, ends
    run = dask_runs.get(first)
    assert run["status"] == "cancelled"
    assert run["progress"]["step"] >= 50
    assert run["has_checkpoint"] is True


def test_executor_options_are_validated(monkeypatch):
    from pydantic import ValidationError

    from app.cli import _settings_from, build_parser

    parser = build_parser()
    args = parser.parse_args(["serve", "--executor", "dask", "--scheduler", "tcp://10.1.2.3:8786"])
    settings = _settings_from(args)
    assert (settings.executor, settings.dask_scheduler) == ("dask", "tcp://10.1.2.3:8786")

    monkeypatch.setenv("RELMEM_EXECUTOR", "dask")
    monkeypatch.setenv("RELMEM_DASK_SCHEDULER", "tcp://127.0.0.1:8786")
    assert _settings_from(parser.parse_args(["serve"])).executor == "dask"

    monkeypatch.delenv("RELMEM_DASK_SCHEDULER")
    with pytest.raises(ValidationError, match="needs dask_scheduler"):
        _settings_from(parser.parse_args(["serve"]))
    with pytest.raises(ValidationError, match="tcp://HOST:PORT or tls://HOST:PORT, got 'nowhere'"):
        _settings_from(parser.parse_args(["serve", "--scheduler", "nowhere"]))
