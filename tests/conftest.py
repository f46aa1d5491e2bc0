"""Fixtures shared by the whole suite: a real server process and a small run request.

``live_server`` starts ``python -m app serve`` on a free 127.0.0.1 port with its own data
folder and at most two concurrent runs, and stops it after the test. ``start_server`` is
the same as a context manager, for tests that restart a server on one data folder.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# pytest puts tests/ on sys.path for this file, and tests/models/ (a folder without
# __init__.py) would then shadow the models package unless the repository root comes first.
if sys.path[:1] != [str(REPO_ROOT)]:
    sys.path.insert(0, str(REPO_ROOT))
STARTUP_TIMEOUT_SECONDS = 30.0
SHUTDOWN_TIMEOUT_SECONDS = 15.0


@dataclass
class LiveServer:
    """A running ``relmem serve`` process."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(server: LiveServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with code {server.process.returncode}:\n{server.log()}"
            )
        try:
            if httpx.get(f"{server.url}/api/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {STARTUP_TIMEOUT_SECONDS} s:\n{server.log()}")


def stop_server(server: LiveServer, sig: int = signal.SIGTERM) -> None:
    """Stop the server with ``sig``; kill it if it has not exited in time."""
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(SHUTDOWN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(SHUTDOWN_TIMEOUT_SECONDS)


@contextlib.contextmanager
def start_server(data_dir: Path, max_concurrent_runs: int = 2, extra_env: dict | None = None):
    """Run ``python -m app serve`` on 127.0.0.1 and a free port until the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir.parent / f"server-{port}.log"
    env = {
        **os.environ,
        "RELMEM_MAX_CONCURRENT_RUNS": str(max_concurrent_runs),
        **(extra_env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "app",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, data_dir, process, log_path)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def start_live_server():
    """Return ``start_server``, for tests that start, kill and restart servers themselves."""
    return start_server


@pytest.fixture
def live_server(tmp_path):
    """A fresh server on 127.0.0.1 with an empty data folder and two run slots."""
    with start_server(tmp_path / "data") as server:
        yield server


@pytest.fixture(scope="session")
def tiny_run_request():
    """Return a function that builds a valid run body which trains in about a second.

    ``tiny_run_request("lstm", steps=100)`` gives an LSTM body with 100 steps; keyword
    arguments override top-level fields, and ``model_options`` replaces the defaults.
    """

    def make(model: str = "rmc", **overrides) -> dict:
        model_options = {
            "rmc": {"mem_slots": 2, "head_size": 8, "num_heads": 2},
            "lstm": {"hidden_size": 8},
        }[model]
        body = {
            "task": "tracking-grid",
            "task_options": {"num_objects": 2, "num_steps": 4},
            "model": model,
            "model_options": model_options,
            "steps": 40,
            "batch_size": 8,
            "eval_interval": 20,
            "eval_size": 16,
            "log_interval": 10,
            "seed": 0,
        }
        body.update(overrides)
        return body

    return make
