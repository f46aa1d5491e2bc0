"""The training worker: the function that runs in each spawned child process.

The worker trains one run and sends every event through its end of a pipe as a dict:
``log`` and ``metric`` events as ``models.training.train`` emits them, then one ``finished``
message ``{"type": "finished", "status", "error", "summary", "has_checkpoint",
"param_count"}``. The checkpoint (``checkpoint.npz``) and ``config.json`` are written
before ``finished`` is sent, each to a temporary file that is then renamed.

This module imports NumPy only inside ``run_worker``, after the BLAS thread count is set,
because a spawned child imports it before calling the function.
"""

import json
import logging
import os
import signal
import tempfile
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

import models

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"
# Increment of each worker process's nice value; a higher nice value is a lower CPU priority.
WORKER_NICENESS = 5
CONFIG_NAME = "config.json"

_BLAS_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class ServerGone(Exception):
    """The server process ended, so events can no longer be delivered."""


def run_worker(
    run_id: str,
    config: dict,
    run_dir: str,
    connection: Connection,
    cancel_event,
    blas_threads: int,
) -> None:
    """Train the run described by ``config`` and report through ``connection``.

    Args:
        run_id: the run's id, written to config.json and used in error messages.
        config: a dict that ``models.TrainConfig.from_dict`` accepts.
        run_dir: folder for the checkpoint and config.json; created if missing.
        connection: the write end of the pipe to the server.
        cancel_event: a ``multiprocessing.Event``; training stops between steps once set.
        blas_threads: threads each BLAS call may use in this process.
    """
    for name in _BLAS_THREAD_VARIABLES:
        os.environ[name] = str(blas_threads)
    # Ctrl-C in a terminal reaches the whole process group; the server decides how its
    # workers stop, through the cancel event.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A lower CPU priority lets the server's threads run first when they need a core, so
    # the API and the explorer stay responsive while every core trains.
    try:
        os.nice(WORKER_NICENESS)
    except OSError as exc:
        logger.warning("run %s: could not lower the worker's priority: %s", run_id, exc)
    parent_pid = os.getppid()

    def send(message: dict) -> None:
        try:
            connection.send(message)
        except (BrokenPipeError, ConnectionError, EOFError) as exc:
            raise ServerGone(f"run {run_id}: the server closed the event pipe") from exc

    def should_stop() -> bool:
        return cancel_event.is_set() or os.getppid() != parent_pid

    try:
        _train_and_report(run_id, config, Path(run_dir), send, should_stop, parent_pid)
    except ServerGone:
        pass
    finally:
        connection.close()


def _train_and_report(run_id, config, run_dir, send, should_stop, parent_pid) -> None:
    from models.training import train  # loads NumPy, after run_worker set the BLAS threads

    try:
        train_config = models.TrainConfig.from_dict(config)
        result = train(train_config, on_event=send, should_stop=should_stop)
    except ServerGone:
        raise
    except models.TrainingDiverged as exc:
        send(_finished("failed", error=str(exc)))
        return
    except MemoryError as exc:
        send(_finished("failed", error=f"out of memory while training: {exc}"))
        return
    except Exception as exc:
        send({"type": "log", "message": traceback.format_exc()})
        send(_finished("failed", error=f"{type(exc).__name__}: {exc}"))
        return

    if os.getppid() != parent_pid:
        # The server that started this run is gone; its successor marked it interrupted.
        return
    summary = result.summary
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        models.save_checkpoint(result.model, run_dir / CHECKPOINT_NAME)
        write_json_atomically(
            run_dir / CONFIG_NAME,
            {
                "run_id": run_id,
                "train_config": train_config.to_dict(),
                "model_config": result.model.config,
                "param_count": result.model.param_count,
                "summary": summary,
            },
        )
    except OSError as exc:
        send(_finished("failed", error=f"could not write the checkpoint: {exc}"))
        return
    send(
        _finished(
            result.status,
            summary=summary,
            has_checkpoint=True,
            param_count=result.model.param_count,
        )
    )


def _finished(status, error=None, summary=None, has_checkpoint=False, param_count=None) -> dict:
    return {
        "type": "finished",
        "status": status,
        "error": error,
        "summary": summary,
        "has_checkpoint": has_checkpoint,
        "param_count": param_count,
    }


def write_json_atomically(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to a temporary file beside ``path``, then rename it."""
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}-", suffix=".tmp", delete=False
    )
    try:
        with handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=_json_default)
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def _json_default(value):
    """Convert NumPy scalars and arrays, which the summary may contain."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
