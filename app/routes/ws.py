"""Websockets: live events of one run (``/ws/runs/{id}``) and of all runs (``/ws/runs``).

Each connection subscribes to the hub before it reads the snapshot from the store. An
event written to the store before the read is in the snapshot, and one written after it
is published after the subscription and arrives live. Live events that the snapshot
already covers (metrics up to its last step, a status or progress it already shows) are
skipped, so a client gets every metric exactly once, in step order. Log messages are not
stored: a client receives those sent after it connected.

Snapshots are read and encoded in a worker thread, in slices, because a run may have
100,000 metric rows. Each client has a queue of ``Settings.ws_queue_size`` messages; a
client that lets it fill up is closed with code 1013 so that it cannot delay the others.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import anyio
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from app.hub import ALL_RUNS_CHANNEL, Hub, Subscription, run_channel
from app.json_encoding import encode_json
from app.routes.common import RUN_ID_PATTERN
from app.store import Store

logger = logging.getLogger(__name__)

router = APIRouter()

# Application close codes: 4404 for an unknown run; 1013 ("try again later") for a client
# dropped because it read too slowly.
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 1013


@router.websocket("/ws/runs/{run_id}")
async def run_events(websocket: WebSocket, run_id: str) -> None:
    """Send a snapshot of the run and its metrics, then its live events."""
    await websocket.accept()
    store = websocket.app.state.store
    if not RUN_ID_PATTERN.match(run_id):
        await websocket.close(CLOSE_NOT_FOUND, "run id must be 12 lowercase hex characters")
        return
    hub: Hub = websocket.app.state.hub
    subscription = hub.subscribe(run_channel(run_id))
    try:
        snapshot = await anyio.to_thread.run_sync(_run_snapshot, store, run_id)
        if snapshot is None:
            await websocket.close(CLOSE_NOT_FOUND, f"run {run_id} not found")
            return
        run, metrics, logs, text = snapshot
        await _stream(websocket, subscription, text, _RunFilter(run, metrics, logs).is_new)
    finally:
        hub.unsubscribe(subscription)


@router.websocket("/ws/runs")
async def all_run_events(websocket: WebSocket) -> None:
    """Send a snapshot of every run, then status and progress changes of all runs."""
    await websocket.accept()
    hub: Hub = websocket.app.state.hub
    subscription = hub.subscribe(ALL_RUNS_CHANNEL)
    try:
        runs = await anyio.to_thread.run_sync(websocket.app.state.store.list_runs)
        text = await anyio.to_thread.run_sync(_encode_text, {"type": "snapshot", "runs": runs})
        await _stream(websocket, subscription, text, _AllRunsFilter(runs).is_new)
    finally:
        hub.unsubscribe(subscription)


def _encode_text(payload: dict) -> str:
    return encode_json(payload).decode()


def _run_snapshot(store: Store, run_id: str) -> tuple[dict, list[dict], list[dict], str] | None:
    """Return the run, its metrics, its log lines and the snapshot message text.

    Returns None when there is no such run.
    """
    run = store.get_run(run_id)
    if run is None:
        return None
    metrics = store.get_metrics(run_id)
    logs = store.get_logs(run_id)
    snapshot = {"type": "snapshot", "run": run, "metrics": metrics, "logs": logs}
    return run, metrics, logs, _encode_text(snapshot)


class _RunFilter:
    """Skip live events of one run that its snapshot already contains."""

    def __init__(self, run: dict, metrics: list[dict], logs: list[dict]):
        self.last_step = metrics[-1]["step"] if metrics else None
        self.last_log_id = logs[-1]["id"] if logs else None
        self.last_run = run

    def is_new(self, payload: dict) -> bool:
        kind = payload.get("type")
        if kind == "metric":
            if self.last_step is not None and payload["step"] <= self.last_step:
                return False
            self.last_step = payload["step"]
        elif kind == "log" and self.last_log_id is not None and "id" in payload:
            if payload["id"] <= self.last_log_id:
                return False
        elif kind == "status":
            if payload["run"] == self.last_run:
                return False
            self.last_run = payload["run"]
        return True


class _AllRunsFilter:
    """Skip live status and progress messages that the runs snapshot already shows."""

    def __init__(self, runs: list[dict]):
        self.runs = {run["id"]: run for run in runs}
        self.steps = {run["id"]: run["progress"]["step"] for run in runs}

    def is_new(self, payload: dict) -> bool:
        kind = payload.get("type")
        if kind == "status":
            run = payload["run"]
            if self.runs.get(run["id"]) == run:
                return False
            self.runs[run["id"]] = run
        elif kind == "progress":
            run_id = payload["run_id"]
            if payload["step"] <= self.steps.get(run_id, -1):
                return False
            self.steps[run_id] = payload["step"]
        return True


async def _stream(
    websocket: WebSocket,
    subscription: Subscription,
    snapshot: str,
    is_new: Callable[[dict], bool],
) -> None:
    """Send the snapshot, then subscription messages until the client leaves or is dropped.

    The snapshot is sent by the same task as the live messages, so a client that never
    reads it is dropped like one that stops reading later.
    """
    sender = asyncio.create_task(_send_messages(websocket, subscription, snapshot, is_new))
    receiver = asyncio.create_task(_wait_for_disconnect(websocket))
    dropped = asyncio.create_task(subscription.dropped.wait())
    tasks = {sender, receiver, dropped}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if dropped in done:
        logger.warning("closing a slow websocket client of %s", subscription.channel)
        await _close(websocket, CLOSE_TOO_SLOW, "event queue full: the client read too slowly")
    elif sender in done and sender.exception() is not None:
        logger.debug("websocket send on %s failed: %r", subscription.channel, sender.exception())


async def _send_messages(
    websocket: WebSocket, subscription: Subscription, snapshot: str, is_new
) -> None:
    await websocket.send_text(snapshot)
    while True:
        message = await subscription.get()
        if is_new(message.payload):
            await websocket.send_text(message.text)


async def _wait_for_disconnect(websocket: WebSocket) -> None:
    """Read and ignore client messages until the client disconnects."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    # A client that stopped reading may never take the close frame; do not wait for it.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), timeout=1.0)
