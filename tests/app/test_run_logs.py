"""Stored log lines of a finished run in the websocket snapshot and GET /api/runs/{id}/logs."""

import json
import re

from websockets.sync.client import connect

RECEIVE_TIMEOUT_SECONDS = 30.0


def test_finished_run_snapshot_has_logs(module_runs, tiny_run_request):
    run = module_runs.wait_for(module_runs.create(tiny_run_request("lstm"))["id"])
    url = f"ws://127.0.0.1:{module_runs.server.port}/ws/runs/{run['id']}"
    with connect(url) as socket:
        snapshot = json.loads(socket.recv(timeout=RECEIVE_TIMEOUT_SECONDS))

    messages = [line["message"] for line in snapshot["logs"]]
    assert any(message.startswith("training lstm on tracking-grid") for message in messages)
    final = [message for message in messages if message.startswith("training completed")]
    assert len(final) == 1
    # Baselines read as "name value" pairs, not as a Python dict.
    assert re.search(r"; baselines: \w+ [-+.\de]+(, \w+ [-+.\de]+)*$", final[0]), final[0]

    response = module_runs.http.get(f"/api/runs/{run['id']}/logs")
    assert response.status_code == 200
    assert response.json() == snapshot["logs"]


def test_logs_of_unknown_run_not_found(module_runs):
    response = module_runs.http.get("/api/runs/0123456789ab/logs")
    assert response.status_code == 404
