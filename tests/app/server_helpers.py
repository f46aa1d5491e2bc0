"""Helpers for tests against a live server: run polling and worker process lookup."""

import os
import time
from pathlib import Path

RUN_TIMEOUT_SECONDS = 60.0
FINISHED = ("completed", "failed", "cancelled", "interrupted")


class RunsClient:
    """HTTP helpers for one live server: create runs and wait for their status."""

    def __init__(self, server):
        self.server = server
        self.http = server.client()

    def create(self, body: dict) -> dict:
        response = self.http.post("/api/runs", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, run_id: str) -> dict:
        response = self.http.get(f"/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, run_id: str, statuses=FINISHED, timeout=RUN_TIMEOUT_SECONDS) -> dict:
        """Poll the run until its status is one of ``statuses``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(run_id)
            if run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} still {run['status']} after {timeout} s, "
                    f"expected {statuses}:\n{self.server.log()[-3000:]}"
                )
            time.sleep(0.05)

    def wait_for_step(self, run_id: str, step: int, timeout=RUN_TIMEOUT_SECONDS) -> dict:
        """Poll until the run has reached ``step`` (or finished); return the run."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(run_id)
            if run["progress"]["step"] >= step or run["status"] in FINISHED:
                return run
            assert time.monotonic() < deadline, f"run {run_id} did not reach step {step}"
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        return worker_pids(self.server.process.pid)


def worker_pids(server_pid: int) -> list[int]:
    """Return the pids of the spawned training workers of a server process (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # The parent pid is the second field after the parenthesised command name.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server_pid and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited but has not been reaped by its parent yet.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
