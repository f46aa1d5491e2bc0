"""API latency of a real server while two training runs keep the CPU cores busy.

Starts ``python -m app serve`` on 127.0.0.1 with a fresh data folder and trains one small
RMC to completion: the measured requests read that run and predict with it. Then it
starts the seed preset's RMC and LSTM runs, which train until this script cancels them.
While both train, it times ``--requests`` sequential requests of each kind, interleaved:

- ``GET /api/runs``, ``GET /api/runs/{id}``, ``GET /api/runs/{id}/metrics`` (200 rows),
- ``POST /api/runs/{id}/predict`` with a new seed each time (the explorer's request).

A second measurement times ``GET /openapi.json`` and ``GET /api/health`` while another
client keeps downloading the metrics of a run with ``--metric-rows`` rows (written into
the store before the server starts), which shows whether reading and encoding a large
response stalls the event loop or holds up other requests.

Prints a table and then one JSON line. The target is a p99 of at most 50 ms.

    python -m bench.api_latency [--requests 200] [--metric-rows 100000]
"""

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from app.presets import PRESETS
from app.store import Store

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 50.0
STARTUP_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 300.0
BIG_RUN_ID = "b16b16b16b16"
# A small RMC with the seed preset's sizes: 200 metric rows and a checkpoint.
MEASURED_RUN = {
    "task": "tracking-grid",
    "model": "rmc",
    "model_options": {"mem_slots": 4, "head_size": 32, "num_heads": 1},
    "steps": 200,
    "log_interval": 1,
    "eval_interval": 100,
    "eval_size": 64,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(data_dir: Path):
    """Run the server on a free 127.0.0.1 port with two run slots; yield its URL."""
    port = free_port()
    env = {**os.environ, "RELMEM_MAX_CONCURRENT_RUNS": "2"}
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--log-level", "warning"]
    log = open(data_dir.parent / "server.log", "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url, process), STARTUP_TIMEOUT_SECONDS, "server start")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def healthy(url: str, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"server exited with code {process.returncode}")
    try:
        return httpx.get(f"{url}/api/health", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)


def write_big_run(data_dir: Path, rows: int) -> None:
    """Store a completed run with ``rows`` metric rows, before the server opens the store."""
    store = Store(data_dir / "relmem.sqlite3")
    config = {"task": "tracking-grid", "model": "lstm", "steps": rows, "log_interval": 1}
    store.create_run(
        {
            "id": BIG_RUN_ID,
            "name": "metrics-export-probe",
            "task": "tracking-grid",
            "model": "lstm",
            "seed": 0,
            "config": config,
            "param_count": None,
        }
    )
    for step in range(1, rows + 1):
        metric = {"step": step, "train_loss": 1.0 / step, "grad_norm": 1.0, "elapsed": step}
        store.add_metric(BIG_RUN_ID, {**metric, "learning_rate": 1e-3})
    store.finish_run(BIG_RUN_ID, "completed")
    store.close()


def start_run(client: httpx.Client, body: dict) -> str:
    response = client.post("/api/runs", json=body)
    response.raise_for_status()
    return response.json()["id"]


def run_status(client: httpx.Client, run_id: str) -> dict:
    return client.get(f"/api/runs/{run_id}").json()


def timed_requests(client: httpx.Client, requests: dict, count: int) -> dict[str, list[float]]:
    """Send ``count`` rounds of the requests, one of each kind per round; return ms per kind."""
    latencies = {name: [] for name in requests}
    for index in range(count):
        for name, make_request in requests.items():
            method, path, body = make_request(index)
            start = time.perf_counter()
            response = client.request(method, path, json=body)
            latencies[name].append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(latencies: dict[str, list[float]]) -> dict[str, dict]:
    return {
        name: {
            "requests": len(values),
            "p50_ms": round(percentile(values, 0.50), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "max_ms": round(max(values), 2),
        }
        for name, values in latencies.items()
    }


def measure_under_training(client: httpx.Client, count: int) -> tuple[dict, dict]:
    """Time the API while the seed preset's two runs train.

    Returns the latency summary and, per training run, its status at the end and the
    steps per second it trained during the measurement.
    """
    measured_id = start_run(client, {**MEASURED_RUN, "seed": 0})
    wait_until(
        lambda: run_status(client, measured_id)["status"] not in ("queued", "running"),
        RUN_TIMEOUT_SECONDS,
        "the measured run's training",
    )
    measured = run_status(client, measured_id)
    if measured["status"] != "completed":
        raise RuntimeError(f"the measured run ended {measured['status']}: {measured['error']}")
    preset = next(preset for preset in PRESETS if preset["name"] == "seed")
    load_ids = [start_run(client, {**body, "steps": 100_000}) for body in preset["runs"]]
    wait_until(
        lambda: all(run_status(client, i)["progress"]["step"] > 0 for i in load_ids),
        RUN_TIMEOUT_SECONDS,
        "the first metrics of both training runs",
    )

    requests = {
        "GET /api/runs": lambda i: ("GET", "/api/runs", None),
        "GET /api/runs/{id}": lambda i: ("GET", f"/api/runs/{measured_id}", None),
        "GET /api/runs/{id}/metrics": lambda i: ("GET", f"/api/runs/{measured_id}/metrics", None),
        "POST /api/runs/{id}/predict": lambda i: (
            "POST",
            f"/api/runs/{measured_id}/predict",
            {"seed": i},
        ),
    }
    steps_before = {i: run_status(client, i)["progress"]["step"] for i in load_ids}
    started = time.perf_counter()
    summary = summarise(timed_requests(client, requests, count))
    seconds = time.perf_counter() - started
    states = {}
    for index, run_id in enumerate(load_ids):
        run = run_status(client, run_id)
        steps = run["progress"]["step"] - steps_before[run_id]
        states[f"{run['model']}-{index}"] = {
            "status": run["status"],
            "steps_per_second": round(steps / seconds, 1),
        }
    for run_id in load_ids:
        client.post(f"/api/runs/{run_id}/cancel")
    return summary, states


def measure_during_export(url: str, count: int) -> tuple[dict, int]:
    """Time two probes while another client keeps downloading the big run's metrics.

    ``GET /openapi.json`` (cached, served on the event loop) shows event loop stalls;
    ``GET /api/health`` also reads the store, so it shows waits for the store's lock.
    """
    stop = threading.Event()
    downloads = []

    def download() -> None:
        with httpx.Client(base_url=url, timeout=120.0) as exporter:
            while not stop.is_set():
                response = exporter.get(f"/api/runs/{BIG_RUN_ID}/metrics")
                response.raise_for_status()
                downloads.append(len(response.content))

    exporter = threading.Thread(target=download, daemon=True)
    exporter.start()
    probes = {
        "GET /openapi.json during export": "/openapi.json",
        "GET /api/health during export": "/api/health",
    }
    latencies = {name: [] for name in probes}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        time.sleep(0.5)  # let the first download start
        for _ in range(count):
            for name, path in probes.items():
                start = time.perf_counter()
                client.get(path).raise_for_status()
                latencies[name].append((time.perf_counter() - start) * 1000)
            time.sleep(0.01)
    stop.set()
    exporter.join(120)
    return summarise(latencies), len(downloads)


def print_table(summary: dict) -> None:
    print(f"{'request':34} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in summary.items():
        print(
            f"{name:34} {row['requests']:5d} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
            f"{row['max_ms']:8.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="Requests of each kind [200].")
    parser.add_argument(
        "--metric-rows",
        type=int,
        default=100_000,
        help="Metric rows of the run downloaded during the export probes [100000].",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="relmem-latency-") as folder:
        data_dir = Path(folder) / "data"
        data_dir.mkdir()
        write_big_run(data_dir, args.metric_rows)
        with running_server(data_dir) as url, httpx.Client(base_url=url, timeout=60.0) as client:
            summary, states = measure_under_training(client, args.requests)
            probe, downloads = measure_during_export(url, args.requests)

    print_table({**summary, **probe})
    worst = max(row["p99_ms"] for row in summary.values())
    print(f"worst p99 under training load: {worst:.2f} ms (target {TARGET_P99_MS:.0f} ms)")
    print(f"training runs during the measurement: {json.dumps(states, sort_keys=True)}")
    print(f"metrics downloads of {args.metric_rows} rows during the probe: {downloads}")
    record = {
        "benchmark": "api_latency",
        "requests_per_kind": args.requests,
        "latency": summary,
        "health_during_export": probe,
        "export_rows": args.metric_rows,
        "export_downloads": downloads,
        "training_runs": states,
        "worst_p99_ms": worst,
        "target_p99_ms": TARGET_P99_MS,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
