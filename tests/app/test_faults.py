"""Faults beyond those of the lifecycle and restart tests: a failing worker next to a healthy
run, an exception inside training, cancel of a normal configuration, damaged checkpoints.
"""

import io
import json
import multiprocessing
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app import worker
from app.presets import PRESETS

RUN_TIMEOUT_SECONDS = 30.0


def long_request(tiny_run_request, **overrides) -> dict:
    """A tiny LSTM run that trains until it is cancelled."""
    return tiny_run_request(
        "lstm", steps=1_000_000, log_interval=50, eval_interval=1_000_000, **overrides
    )


def test_failing_worker_leaves_other_run_training(module_runs, tiny_run_request):
    healthy = module_runs.create(long_request(tiny_run_request))
    failing = module_runs.create(long_request(tiny_run_request, seed=1))
    module_runs.wait_for_step(failing["id"], 50)
    # A file where the run's folder belongs makes the worker's checkpoint write raise.
    (module_runs.server.data_dir / "runs" / failing["id"]).write_text("in the way")
    module_runs.http.post(f"/api/runs/{failing['id']}/cancel")
    failed = module_runs.wait_for(failing["id"], timeout=RUN_TIMEOUT_SECONDS)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("could not write the checkpoint")

    # The other run keeps training and the server keeps responding.
    step = module_runs.get(healthy["id"])["progress"]["step"]
    running = module_runs.wait_for_step(healthy["id"], step + 100)
    assert running["status"] == "running"
    assert module_runs.http.get("/api/health").json()["status"] == "ok"

    module_runs.http.post(f"/api/runs/{healthy['id']}/cancel")
    cancelled = module_runs.wait_for(healthy["id"], timeout=RUN_TIMEOUT_SECONDS)
    assert cancelled["status"] == "cancelled"
    assert cancelled["has_checkpoint"] is True


def test_exception_in_training_reported(tmp_path, tiny_run_request):
    # The server validates options, so the worker is given a config whose task cannot be
    # built: models.training.train raises ValueError inside the real worker process.
    config = {
        key: value
        for key, value in tiny_run_request("lstm").items()
        if key not in ("model_options",)
    }
    config["task_options"] = {"num_objects": 0}
    config["model_options"] = {"hidden_size": 4}
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    # Kept in a name: the child process opens the event's semaphore after start() returns.
    cancel_event = context.Event()
    process = context.Process(
        target=worker.run_worker,
        args=("0123456789ab", config, str(tmp_path / "run"), writer, cancel_event, 1),
    )
    process.start()
    writer.close()
    events = []
    while True:
        try:
            events.append(reader.recv())
        except EOFError:
            break
    process.join(RUN_TIMEOUT_SECONDS)

    assert process.exitcode == 0
    finished = events[-1]
    assert finished["type"] == "finished"
    assert finished["status"] == "failed"
    assert finished["error"].startswith("ValueError: ")
    assert "num_objects" in finished["error"]
    assert finished["has_checkpoint"] is False
    tracebacks = [event["message"] for event in events if event["type"] == "log"]
    assert any("Traceback" in message for message in tracebacks)
    assert not (tmp_path / "run").exists()


def test_seed_preset_stops_within_grace(module_runs):
    preset = next(preset for preset in PRESETS if preset["name"] == "seed")
    body = next(run for run in preset["runs"] if run["model"] == "rmc")
    run = module_runs.create(body)
    module_runs.wait_for_step(run["id"], 1)

    response = module_runs.http.post(f"/api/runs/{run['id']}/cancel")
    assert response.status_code == 202
    cancelled = module_runs.wait_for(run["id"], timeout=RUN_TIMEOUT_SECONDS)
    assert cancelled["status"] == "cancelled"
    # The worker stopped by itself between steps: a terminated worker reports an error.
    assert cancelled["error"] is None
    assert cancelled["has_checkpoint"] is True
    assert cancelled["progress"]["step"] < body["steps"]


# Damaged checkpoints. Each writer replaces a valid checkpoint's bytes.


class WritesMarker:
    """Unpickling this object creates the file ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def with_pickled_object(original: bytes, marker: Path) -> bytes:
    """Return the original archive plus an entry whose .npy contains a pickled object."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        entry = io.BytesIO()
        np.save(entry, np.array([WritesMarker(marker)], dtype=object), allow_pickle=True)
        target.writestr("extra.npy", entry.getvalue())
    return buffer.getvalue()


def with_config(original: bytes, config) -> bytes:
    with np.load(io.BytesIO(original), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["__config__"] = np.array(json.dumps(config) if config is not None else "{not json")
    return npz_bytes(**arrays)


DAMAGE = {
    "empty": (lambda original, marker: b"", "truncated or corrupted"),
    "garbage": (lambda original, marker: b"PK\x03\x04" + b"\x00" * 100, "truncated or corrupted"),
    "no config": (lambda original, marker: npz_bytes(weights=np.zeros(3)), "no '__config__'"),
    "invalid json": (lambda original, marker: with_config(original, None), "invalid JSON config"),
    "unknown kind": (
        lambda original, marker: with_config(original, {"kind": "transformer"}),
        "invalid model config",
    ),
    "pickled object": (with_pickled_object, "allow_pickle=False"),
}


@pytest.fixture(scope="module")
def trained_checkpoint(module_runs, tiny_run_request) -> tuple[dict, Path, bytes]:
    run = module_runs.wait_for(module_runs.create(tiny_run_request("lstm"))["id"])
    assert run["status"] == "completed", run["error"]
    path = module_runs.server.data_dir / "runs" / run["id"] / "checkpoint.npz"
    return run, path, path.read_bytes()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_gives_clear_error(module_runs, trained_checkpoint, tmp_path, damage):
    run, path, original = trained_checkpoint
    write, expected = DAMAGE[damage]
    marker = tmp_path / "unpickled"
    path.write_bytes(write(original, marker))
    try:
        response = module_runs.http.post(f"/api/runs/{run['id']}/predict", json={"seed": 0})
    finally:
        path.write_bytes(original)

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail.startswith(f"run {run['id']}: the checkpoint cannot be used")
    assert expected in detail
    assert str(path.parent) not in detail
    assert not marker.exists()
    assert (
        module_runs.http.post(f"/api/runs/{run['id']}/predict", json={"seed": 0}).status_code == 200
    )


def test_worker_module_loads_without_numpy():
    """A spawned worker imports app.worker before run_worker sets its BLAS threads."""
    import subprocess
    import sys

    probe = "import sys, app.worker; print('numpy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"
