"""Helpers shared by the sweep tests of both executors."""

import statistics
import time

SWEEP_TIMEOUT_SECONDS = 120.0


def create_sweep(http, body: dict) -> dict:
    response = http.post("/api/sweeps", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_sweep(http, sweep_id: str, timeout=SWEEP_TIMEOUT_SECONDS) -> dict:
    """Poll the sweep until none of its runs is queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"/api/sweeps/{sweep_id}")
        assert response.status_code == 200, response.text
        sweep = response.json()
        if sweep["counts"]["queued"] == 0 and sweep["counts"]["running"] == 0:
            return sweep
        assert time.monotonic() < deadline, f"sweep {sweep_id} still running: {sweep['counts']}"
        time.sleep(0.1)


def assert_cells_aggregate_seeds(sweep: dict, seeds: int) -> None:
    """Every cell has one completed run per seed, and its mean and std match them."""
    runs = {run["id"]: run for run in sweep["runs"]}
    for cell in sweep["cells"]:
        assert len(cell["run_ids"]) == seeds
        losses = [runs[run_id]["final_metrics"]["final_test_loss"] for run_id in cell["run_ids"]]
        assert cell["metric_values"] == losses
        assert cell["finished"] == seeds
        assert abs(cell["mean"] - statistics.fmean(losses)) < 1e-12
        assert abs(cell["std"] - statistics.stdev(losses)) < 1e-12
