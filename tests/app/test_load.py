"""Websocket load on a live server: many clients on one run, and a client that stops reading.

The server caps each websocket's kernel send buffer at 4 KiB. A client that stops reading
then fills that buffer, uvicorn's 64 KiB write buffer and its hub queue of 256 messages
within a run of 2000 metric events. With the kernel's default buffer (up to 4 MiB) it
could take in every event of such a run without being noticed.
"""

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path

import pytest
from server_helpers import FINISHED, RunsClient
from websockets.asyncio.client import connect as async_connect
from websockets.sync.client import connect

from app.store import Store

CLIENTS = 50
RECEIVE_TIMEOUT_SECONDS = 60.0
LOAD_SERVER_ENV = {"RELMEM_WS_SEND_BUFFER_BYTES": "4096"}
CLOSE_TOO_SLOW = 1013


@pytest.fixture(scope="module")
def load_runs(tmp_path_factory, start_live_server):
    data_dir = tmp_path_factory.mktemp("load") / "data"
    with start_live_server(data_dir, extra_env=LOAD_SERVER_ENV) as server:
        runs = RunsClient(server)
        yield runs
        runs.http.close()


def is_final_status(message: dict, run_id: str) -> bool:
    run = message.get("run") if message["type"] == "status" else None
    return run is not None and run["id"] == run_id and run["status"] in FINISHED


def metric_steps(messages: list[dict]) -> list[int]:
    """Steps of the snapshot's metrics followed by those of the live metric events."""
    steps = [metric["step"] for metric in messages[0]["metrics"]]
    return steps + [message["step"] for message in messages[1:] if message["type"] == "metric"]


async def collect_events(url: str, run_id: str) -> list[dict]:
    """Receive the messages of one run until its final status."""
    async with async_connect(url, max_size=None) as websocket:
        messages = []
        while not messages or not is_final_status(messages[-1], run_id):
            text = await asyncio.wait_for(websocket.recv(), RECEIVE_TIMEOUT_SECONDS)
            messages.append(json.loads(text))
        return messages


def test_fifty_clients_get_every_event_in_order(load_runs, tiny_run_request):
    body = tiny_run_request("lstm", steps=400, log_interval=5, eval_interval=100)
    run = load_runs.create(body)
    url = f"ws://127.0.0.1:{load_runs.server.port}/ws/runs/{run['id']}"

    async def all_clients():
        return await asyncio.gather(*(collect_events(url, run["id"]) for _ in range(CLIENTS)))

    received = asyncio.run(all_clients())

    final = load_runs.get(run["id"])
    assert final["status"] == "completed", final["error"]
    stored = load_runs.http.get(f"/api/runs/{run['id']}/metrics").json()
    stored_steps = [metric["step"] for metric in stored]
    assert stored_steps == list(range(5, 401, 5))
    for messages in received:
        assert messages[0]["type"] == "snapshot"
        assert metric_steps(messages) == stored_steps
        assert messages[-1] == {"type": "status", "run": final}
    assert "closing a slow websocket client" not in load_runs.server.log()


# A client that completes the handshake and then never reads.


def open_stalled_client(port: int, path: str) -> socket.socket:
    """Complete a websocket handshake on a raw socket with a tiny receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10.0)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def drain(sock: socket.socket, seconds: float = 10.0) -> tuple[bytes, bool]:
    """Read what the server sent until it closes the connection or ``seconds`` pass.

    Returns the bytes and whether the connection reached end of file. The client replies
    to a close frame from the server, so that the server closes the connection.
    """
    data = b""
    answered = False
    deadline = time.monotonic() + seconds
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        if chunk == b"":
            return data, True
        data += chunk or b""
        if not answered and any(opcode == 0x8 for opcode, _ in parse_frames(data)):
            # A masked close frame with an empty payload and a zero mask.
            sock.sendall(b"\x88\x80\x00\x00\x00\x00")
            answered = True
    return data, False


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into (opcode, payload); a cut-off last frame is left out."""
    frames = []
    position = 0
    while position + 2 <= len(data):
        opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if length in (126, 127):
            size = 2 if length == 126 else 8
            length = int.from_bytes(data[position : position + size], "big")
            position += size
        if position + length > len(data):
            break
        frames.append((opcode, data[position : position + length]))
        position += length
    return frames


def test_stalled_client_dropped_others_not(load_runs, tiny_run_request):
    body = tiny_run_request("lstm", steps=2000, log_interval=1, eval_interval=2000)
    run = load_runs.create(body)
    path = f"/ws/runs/{run['id']}"
    stalled = open_stalled_client(load_runs.server.port, path)
    try:
        url = f"ws://127.0.0.1:{load_runs.server.port}{path}"
        with connect(url, max_size=None) as reader:
            messages = []
            while not messages or not is_final_status(messages[-1], run["id"]):
                messages.append(json.loads(reader.recv(timeout=RECEIVE_TIMEOUT_SECONDS)))
        data, closed = drain(stalled)
    finally:
        stalled.close()

    # The reading client got every event although the stalled one never read.
    final = load_runs.get(run["id"])
    assert final["status"] == "completed", final["error"]
    assert metric_steps(messages) == list(range(1, 2001))
    assert messages[-1] == {"type": "status", "run": final}

    # The stalled client got a prefix of the events, then was disconnected.
    frames = parse_frames(data)
    texts = [json.loads(payload) for opcode, payload in frames if opcode == 0x1]
    assert texts[0]["type"] == "snapshot"
    live_steps = [message["step"] for message in texts[1:] if message["type"] == "metric"]
    assert len(live_steps) < 1000
    assert metric_steps(texts) == list(range(1, len(metric_steps(texts)) + 1))
    close_frames = [payload for opcode, payload in frames if opcode == 0x8]
    if close_frames:
        assert int.from_bytes(close_frames[0][:2], "big") == CLOSE_TOO_SLOW
    assert closed
    log = load_runs.server.log()
    assert log.count(f"closing a slow websocket client of run:{run['id']}") == 1


# A large metrics export: more rows than one store page and one encoder slice.

EXPORT_RUN_ID = "e0e0e0e0e0e0"
EXPORT_ROWS = 4500


def write_export_run(database: Path) -> None:
    """Store a completed run with EXPORT_ROWS metric rows through a second store connection."""
    store = Store(database)
    store.create_run(
        {
            "id": EXPORT_RUN_ID,
            "name": "export",
            "task": "nth-farthest",
            "model": "lstm",
            "seed": 0,
            "config": {"steps": EXPORT_ROWS},
            "param_count": None,
        }
    )
    for step in range(1, EXPORT_ROWS + 1):
        extra = {"test_accuracy_per_n": {"0": 0.5, "1": None}} if step % 100 == 0 else {}
        store.add_metric(EXPORT_RUN_ID, {"step": step, "train_loss": 1 / step, **extra})
    store.finish_run(EXPORT_RUN_ID, "completed")
    store.close()


def test_large_metrics_export_complete(load_runs):
    write_export_run(load_runs.server.data_dir / "relmem.sqlite3")
    path = f"/api/runs/{EXPORT_RUN_ID}/metrics"

    response = load_runs.http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    metrics = response.json()
    assert [metric["step"] for metric in metrics] == list(range(1, EXPORT_ROWS + 1))
    assert metrics[99]["test_accuracy_per_n"] == {"0": 0.5, "1": None}
    assert metrics[-1]["train_loss"] == 1 / EXPORT_ROWS
    assert all(metric["run_id"] == EXPORT_RUN_ID for metric in metrics)

    csv_lines = load_runs.http.get(path, params={"format": "csv"}).text.splitlines()
    assert len(csv_lines) == EXPORT_ROWS + 1

    url = f"ws://127.0.0.1:{load_runs.server.port}/ws/runs/{EXPORT_RUN_ID}"
    with connect(url, max_size=None) as websocket:
        snapshot = json.loads(websocket.recv(timeout=RECEIVE_TIMEOUT_SECONDS))
    assert snapshot["metrics"] == metrics
    assert snapshot["run"]["status"] == "completed"
