"""Websockets on a live uvicorn server: snapshot first, then every metric exactly once."""

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from app.hub import Hub

FINISHED = ("completed", "failed", "cancelled", "interrupted")
RECEIVE_TIMEOUT_SECONDS = 30.0


def ws_url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def receive(socket) -> dict:
    return json.loads(socket.recv(timeout=RECEIVE_TIMEOUT_SECONDS))


def receive_until_finished(socket, run_id: str, messages: list[dict]) -> list[dict]:
    """Append messages to ``messages`` until the run's final status arrives."""
    while True:
        message = receive(socket)
        messages.append(message)
        run = message.get("run") if message["type"] == "status" else None
        if run is not None and run["id"] == run_id and run["status"] in FINISHED:
            return messages


def metric_steps(messages: list[dict]) -> list[int]:
    """Steps of the snapshot's metrics followed by the live metric events."""
    steps = [metric["step"] for metric in messages[0]["metrics"]]
    return steps + [message["step"] for message in messages[1:] if message["type"] == "metric"]


def test_two_clients_get_every_event(module_runs, tiny_run_request):
    body = tiny_run_request(steps=300, batch_size=16, log_interval=5, eval_interval=100)
    run = module_runs.create(body)
    path = f"/ws/runs/{run['id']}"

    with connect(ws_url(module_runs.server, path)) as first:
        first_messages = [receive(first)]
        assert first_messages[0]["type"] == "snapshot"
        assert first_messages[0]["run"]["id"] == run["id"]
        # Let a few live metrics pass, so the second client's snapshot has history.
        while sum(message["type"] == "metric" for message in first_messages) < 3:
            first_messages.append(receive(first))
            assert first_messages[-1]["type"] in ("metric", "log", "status")

        with connect(ws_url(module_runs.server, path)) as second:
            second_messages = [receive(second)]
            assert second_messages[0]["type"] == "snapshot"
            assert len(second_messages[0]["metrics"]) >= 3
            receive_until_finished(second, run["id"], second_messages)
        receive_until_finished(first, run["id"], first_messages)

    final = module_runs.get(run["id"])
    assert final["status"] == "completed"
    stored_steps = [
        m["step"] for m in module_runs.http.get(f"/api/runs/{run['id']}/metrics").json()
    ]
    assert stored_steps == list(range(5, 301, 5))
    for messages in (first_messages, second_messages):
        assert metric_steps(messages) == stored_steps
        assert messages[-1] == {"type": "status", "run": final}
        live_metrics = [message for message in messages if message["type"] == "metric"]
        assert all(message["run_id"] == run["id"] for message in live_metrics)
    logs = [message["message"] for message in first_messages if message["type"] == "log"]
    assert any("training completed" in message for message in logs)


def test_finished_run_snapshot_is_complete(module_runs, tiny_run_request):
    run = module_runs.wait_for(module_runs.create(tiny_run_request("lstm"))["id"])
    with connect(ws_url(module_runs.server, f"/ws/runs/{run['id']}")) as socket:
        snapshot = receive(socket)
    assert snapshot["run"] == run
    assert [metric["step"] for metric in snapshot["metrics"]] == [10, 20, 30, 40]


def test_all_runs_channel_streams_progress(module_runs, tiny_run_request):
    with connect(ws_url(module_runs.server, "/ws/runs")) as socket:
        snapshot = receive(socket)
        assert snapshot["type"] == "snapshot"
        known = {run["id"] for run in snapshot["runs"]}
        run = module_runs.create(tiny_run_request("lstm"))
        assert run["id"] not in known
        messages = receive_until_finished(socket, run["id"], [])

    own = [
        message
        for message in messages
        if message.get("run_id") == run["id"] or message.get("run", {}).get("id") == run["id"]
    ]
    statuses = [message["run"]["status"] for message in own if message["type"] == "status"]
    assert statuses == ["queued", "running", "completed"]
    progress = [message for message in own if message["type"] == "progress"]
    assert [message["step"] for message in progress] == [10, 20, 30, 40]
    assert all(message["steps"] == 40 for message in progress)


@pytest.mark.parametrize("run_id", ["0123456789ab", "nonsense"])
def test_unknown_run_closes_with_4404(module_runs, run_id):
    with connect(ws_url(module_runs.server, f"/ws/runs/{run_id}")) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=RECEIVE_TIMEOUT_SECONDS)
    assert closed.value.rcvd.code == 4404


def test_hub_drops_full_subscriber():
    async def scenario():
        hub = Hub(queue_size=3)
        slow = hub.subscribe("run:a")
        fast = hub.subscribe("run:a")
        received = []
        for step in range(5):
            hub.publish("run:a", {"type": "metric", "step": step})
            received.append((await fast.get()).payload["step"])
        return hub, slow, received

    hub, slow, received = asyncio.run(scenario())
    assert received == [0, 1, 2, 3, 4]
    assert slow.dropped.is_set()
    assert hub.subscriber_count("run:a") == 1
    assert [slow.queue.get_nowait().payload["step"] for _ in range(3)] == [0, 1, 2]


def test_hub_keeps_channels_apart():
    async def scenario():
        hub = Hub()
        one, other = hub.subscribe("run:a"), hub.subscribe("run:b")
        hub.publish("run:a", {"type": "log", "message": "for a"})
        return one.queue.qsize(), other.queue.qsize()

    assert asyncio.run(scenario()) == (1, 0)
