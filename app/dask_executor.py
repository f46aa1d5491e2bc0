"""Train runs on an existing Dask distributed cluster instead of local worker processes.

``DaskRunner`` has the interface of ``app.runner.Runner`` (``start``, ``submit``,
``cancel``, ``stop``, ``counts``, ``max_concurrent``), so the routes do not know which
one trains their runs. Each run is one Dask task, ``train_on_dask_worker``, which the
cluster schedules on any worker thread:

- Events. The task puts ``{"run_id", "event"}`` records into a distributed ``Queue``
  named after this server: ``started`` when it begins, then every ``log`` and ``metric``
  event of ``models.training.train``, then ``finished``. One monitor thread drains the queue into
  the ``Recorder``, so the store and the websockets see the same events as with local
  workers, in the order the task sent them.
- Checkpoint. The task returns the checkpoint's bytes as its result, because a worker on
  another machine cannot write into this server's data folder. The ``finished`` record
  arrives before the scheduler marks the task done, so the monitor keeps it until the
  future is done (at most ``CALL_TIMEOUT_SECONDS``) and goes on draining other runs'
  events meanwhile. Then it writes ``checkpoint.npz`` and ``config.json`` into the run's
  folder and records the run's end.
- Cancel. A queued task is cancelled in the scheduler. A running task polls a distributed
  ``Event`` at most every ``CANCEL_POLL_SECONDS`` and stops between steps once it is set.
  Dask cannot interrupt a running thread, so a task that keeps running past the grace
  period is recorded as cancelled and left to finish on its worker. A run that the user
  cancelled is recorded as cancelled however its task ends.

Workers must be able to import this project (``pip install relmem-explorer`` in the
workers' environment). Every scheduler call has a timeout, and the monitor thread logs
and survives any error of a single run.

NOTE: a server that is killed (SIGKILL) never sets the cancel events, so its tasks train
to the end on their workers and put their events into a queue that no server drains.
"""

import json
import logging
import os
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.recorder import Recorder
from app.worker import CHECKPOINT_NAME, CONFIG_NAME

logger = logging.getLogger(__name__)

# Seconds between polls of the event queue when it is empty.
POLL_SECONDS = 0.1
# Seconds between the task's checks of its cancel event; each check is a scheduler call.
CANCEL_POLL_SECONDS = 0.5
# Seconds to connect to the scheduler, and for any single scheduler call.
CONNECT_TIMEOUT_SECONDS = 15.0
CALL_TIMEOUT_SECONDS = 30.0
# Seconds a task may have ended (error, lost worker) without a finished record before its
# run is recorded as failed. Records put before the task ended arrive well within this.
UNREPORTED_GRACE_SECONDS = 5.0

try:
    import distributed
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    distributed = None


def require_distributed():
    if distributed is None:
        raise RuntimeError(
            "the dask executor needs the optional dependency dask[distributed]: "
            "pip install 'relmem-explorer[dask]'"
        )
    return distributed


# --- the task, run on a Dask worker ----------------------------------------------------


def _plain(event: dict) -> dict:
    """Return ``event`` with NumPy scalars turned into plain numbers, for msgpack."""
    return json.loads(json.dumps(event, default=lambda value: value.tolist()))


def train_on_dask_worker(run_id: str, config: dict, queue_name: str, cancel_name: str) -> dict:
    """Train one run on a Dask worker and report through the server's event queue.

    Returns ``{"checkpoint": bytes | None, "config": dict | None}``: the checkpoint file
    and the record that the server writes as the run's ``config.json``.
    """
    import models  # imported here so that only workers that train load the models

    dask = require_distributed()
    queue = dask.Queue(queue_name)
    cancel = dask.Event(cancel_name)
    last_check = [0.0, False]

    def send(event: dict) -> None:
        queue.put({"run_id": run_id, "event": _plain(event)}, timeout=CALL_TIMEOUT_SECONDS)

    def should_stop() -> bool:
        now = time.monotonic()
        if not last_check[1] and now - last_check[0] >= CANCEL_POLL_SECONDS:
            last_check[0] = now
            last_check[1] = bool(cancel.is_set())
        return last_check[1]

    send({"type": "started"})
    try:
        return _train_and_report(models, run_id, config, send, should_stop)
    finally:
        queue.close()


def _train_and_report(models, run_id, config, send, should_stop) -> dict:
    nothing = {"checkpoint": None, "config": None}
    try:
        train_config = models.TrainConfig.from_dict(config)
        # The training function, not the ``models.train`` command-line module: once that
        # module is imported, the attribute ``models.train`` names it.
        from models.training import train

        result = train(train_config, on_event=send, should_stop=should_stop)
    except models.TrainingDiverged as exc:
        send({"type": "finished", "status": "failed", "error": str(exc)})
        return nothing
    except MemoryError as exc:
        send({"type": "finished", "status": "failed", "error": f"out of memory: {exc}"})
        return nothing
    except Exception as exc:
        send({"type": "log", "message": traceback.format_exc()})
        send({"type": "finished", "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return nothing

    with tempfile.TemporaryDirectory(prefix="relmem-") as folder:
        path = Path(folder) / CHECKPOINT_NAME
        models.save_checkpoint(result.model, path)
        checkpoint = path.read_bytes()
    record = {
        "run_id": run_id,
        "train_config": train_config.to_dict(),
        "model_config": result.model.config,
        "param_count": result.model.param_count,
        "summary": result.summary,
    }
    send(
        {
            "type": "finished",
            "status": result.status,
            "summary": result.summary,
            "param_count": result.model.param_count,
        }
    )
    return {"checkpoint": checkpoint, "config": _plain(record)}


# --- the server side -------------------------------------------------------------------


@dataclass(eq=False)
class _DaskJob:
    run_id: str
    future: object
    cancel_name: str
    started: bool = False
    reported: bool = False
    cancel_reason: str | None = None
    cancel_requested_at: float | None = None
    ended_at: float | None = None
    # The task's finished record, kept until its future is done, and its arrival time.
    finished_event: dict | None = None
    finished_at: float | None = None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}-", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(data)
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


class DaskRunner:
    """Submit runs to a Dask scheduler and feed their events to a ``Recorder``."""

    def __init__(
        self,
        recorder: Recorder,
        runs_dir: Path,
        scheduler_address: str,
        cancel_grace_seconds: float = 3.0,
    ):
        self.recorder = recorder
        self.runs_dir = Path(runs_dir)
        self.scheduler_address = scheduler_address
        self.cancel_grace_seconds = cancel_grace_seconds
        self.max_concurrent = 1
        self.client = None
        self.queue = None
        self.queue_name = f"relmem-events-{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._jobs: dict[str, _DaskJob] = {}
        self._stopping = False
        self._stopped = threading.Event()
        self._monitor = threading.Thread(
            target=self._monitor_loop, name="relmem-dask-runner", daemon=True
        )

    def start(self) -> None:
        """Connect to the scheduler and start draining events; raise if it is unreachable."""
        dask = require_distributed()
        try:
            self.client = dask.Client(
                self.scheduler_address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise RuntimeError(
                f"cannot reach the Dask scheduler at {self.scheduler_address}: {exc}"
            ) from exc
        self.queue = dask.Queue(self.queue_name, client=self.client)
        threads = sum(self.client.nthreads().values())
        self.max_concurrent = max(1, threads)
        logger.info(
            "training on the Dask cluster at %s: %d workers, %d threads",
            self.scheduler_address,
            len(self.client.nthreads()),
            threads,
        )
        self._monitor.start()

    def counts(self) -> dict[str, int]:
        with self._lock:
            running = sum(job.started for job in self._jobs.values())
            return {"running": running, "queued": len(self._jobs) - running}

    def submit(self, run_id: str, config: dict) -> None:
        """Submit a run stored as ``queued``; it becomes ``running`` when a worker starts it."""
        with self._lock:
            if self._stopping or self.client is None:
                raise RuntimeError("the runner is shutting down and accepts no new runs")
            cancel_name = f"relmem-cancel-{run_id}-{uuid.uuid4().hex[:8]}"
            future = self.client.submit(
                train_on_dask_worker,
                run_id,
                config,
                self.queue_name,
                cancel_name,
                key=f"relmem-run-{run_id}-{uuid.uuid4().hex[:8]}",
                pure=False,
            )
            self._jobs[run_id] = _DaskJob(run_id, future, cancel_name)

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued run at once, or ask a running one to stop between steps."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or job.reported:
                return False
            self._request_cancel(job, "user")
            if not job.started:
                job.future.cancel()
                job.reported = True
                self._jobs.pop(run_id, None)
                self.recorder.run_finished(run_id, "cancelled", error="cancelled before it started")
            return True

    def stop(self) -> None:
        """Ask every task to stop, wait up to the grace period for them, then disconnect."""
        with self._lock:
            self._stopping = True
            for job in list(self._jobs.values()):
                self._request_cancel(job, "shutdown")
                if not job.started:
                    job.future.cancel()
                    self._end_unreported(job, "the server stopped before the run started")
        deadline = time.monotonic() + self.cancel_grace_seconds + 2.0
        while time.monotonic() < deadline and self.counts()["running"]:
            time.sleep(POLL_SECONDS)
        self._stopped.set()
        if self._monitor.is_alive():
            self._monitor.join(CALL_TIMEOUT_SECONDS)
        with self._lock:
            for job in list(self._jobs.values()):
                self._end_unreported(job, "the server stopped during training")
        if self.client is not None:
            try:
                self.queue.close()
                self.client.close(timeout=CALL_TIMEOUT_SECONDS)
            except (OSError, TimeoutError, RuntimeError) as exc:
                logger.warning("closing the Dask client failed: %s", exc)

    # Called with the lock held.

    def _request_cancel(self, job: _DaskJob, reason: str) -> None:
        if job.cancel_requested_at is not None:
            return
        job.cancel_reason = reason
        job.cancel_requested_at = time.monotonic()
        try:
            distributed.Event(job.cancel_name, client=self.client).set()
        except (OSError, TimeoutError, RuntimeError) as exc:
            logger.warning("run %s: could not signal the Dask task to stop: %s", job.run_id, exc)
        logger.info("run %s: cancel requested (%s)", job.run_id, reason)

    def _end_unreported(self, job: _DaskJob, error: str) -> None:
        """Record the end of a job whose task will send no finished record."""
        job.reported = True
        self._jobs.pop(job.run_id, None)
        status = "interrupted" if job.cancel_reason == "shutdown" else "failed"
        if job.cancel_reason == "user":
            status = "cancelled"
        self.recorder.run_finished(job.run_id, status, error=error)
        self._forget_cancel_event(job)

    def _forget_cancel_event(self, job: _DaskJob) -> None:
        if job.cancel_requested_at is None or self.client is None:
            return
        try:
            distributed.Event(job.cancel_name, client=self.client).clear()
        except (OSError, TimeoutError, RuntimeError) as exc:
            logger.debug("run %s: clearing its cancel event failed: %s", job.run_id, exc)

    # The monitor thread

    def _monitor_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                records = self.queue.get(batch=True, timeout=CALL_TIMEOUT_SECONDS)
            except (OSError, TimeoutError, RuntimeError) as exc:
                logger.error("reading run events from the Dask scheduler failed: %s", exc)
                records = []
            for record in records:
                try:
                    self._handle(record)
                except Exception:
                    logger.exception("handling the Dask record %r failed", record)
            self._check_futures()
            if not records:
                time.sleep(POLL_SECONDS)

    def _handle(self, record) -> None:
        if not isinstance(record, dict) or not isinstance(record.get("event"), dict):
            logger.warning("ignored a malformed Dask queue record %r", record)
            return
        run_id, event = record.get("run_id"), record["event"]
        with self._lock:
            job = self._jobs.get(run_id)
        if job is None or job.reported:
            logger.debug("run %s: ignored a %s event of an ended run", run_id, event.get("type"))
            return
        kind = event.get("type")
        if kind == "started":
            job.started = True
            self.recorder.run_started(run_id)
        elif kind == "finished":
            job.finished_event, job.finished_at = event, time.monotonic()
            self._finish_when_done(job)
        else:
            self.recorder.worker_event(run_id, event)

    def _finish_when_done(self, job: _DaskJob) -> None:
        """Record the run's end once its future is done, or once waiting for it timed out.

        Waiting here instead of in ``future.result`` keeps the monitor draining the events
        of every other run while the scheduler catches up with this task's end.
        """
        waited = time.monotonic() - job.finished_at
        if job.future.done() or waited >= CALL_TIMEOUT_SECONDS:
            self._finish(job, job.finished_event)

    def _finish(self, job: _DaskJob, event: dict) -> None:
        status, error = event.get("status"), event.get("error")
        if status == "cancelled" and job.cancel_reason == "shutdown":
            status, error = "interrupted", "the server stopped during training"
        has_checkpoint = False
        if event.get("summary") is not None:
            try:
                has_checkpoint = self._save_result(job)
            except Exception as exc:
                logger.exception("run %s: fetching its checkpoint from Dask failed", job.run_id)
                status, error = "failed", f"could not fetch the checkpoint from Dask: {exc}"
        if job.cancel_reason == "user" and status == "failed":
            # The user's cancel decides the status, and the error says how the task ended.
            status = "cancelled"
        with self._lock:
            job.reported = True
            self._jobs.pop(job.run_id, None)
        self.recorder.run_finished(
            job.run_id,
            status,
            error=error,
            summary=event.get("summary"),
            has_checkpoint=has_checkpoint,
            param_count=event.get("param_count"),
        )
        self._forget_cancel_event(job)

    def _save_result(self, job: _DaskJob) -> bool:
        if not job.future.done():
            raise TimeoutError(f"the task was not done {CALL_TIMEOUT_SECONDS:.0f} s after it ended")
        result = job.future.result(timeout=CALL_TIMEOUT_SECONDS)
        if not result or result.get("checkpoint") is None:
            return False
        run_dir = self.runs_dir / job.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir / CHECKPOINT_NAME, result["checkpoint"])
        config = json.dumps(result["config"], indent=2, sort_keys=True).encode()
        write_atomically(run_dir / CONFIG_NAME, config)
        return True

    def _check_futures(self) -> None:
        """End runs whose task ended without a finished record or ignored a cancel."""
        now = time.monotonic()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.finished_event is not None:
                if not job.reported:
                    self._finish_when_done(job)
                continue
            state = job.future.status
            if state in ("error", "cancelled", "lost") or (
                state == "finished" and not job.reported
            ):
                job.ended_at = job.ended_at or now
                if now - job.ended_at >= UNREPORTED_GRACE_SECONDS:
                    with self._lock:
                        self._end_unreported(job, self._describe_end(job, state))
            elif job.cancel_reason == "user" and job.cancel_requested_at is not None:
                waited = now - job.cancel_requested_at
                if waited >= self.cancel_grace_seconds + UNREPORTED_GRACE_SECONDS:
                    job.future.cancel()
                    with self._lock:
                        self._end_unreported(
                            job,
                            f"the Dask task did not stop within {waited:.0f} s; it may still "
                            "run on its worker",
                        )

    def _describe_end(self, job: _DaskJob, state: str) -> str:
        if state == "error":
            try:
                exception = job.future.exception(timeout=CALL_TIMEOUT_SECONDS)
            except Exception as exc:  # the scheduler may have forgotten the task
                exception = exc
            return f"the Dask task failed: {type(exception).__name__}: {exception}"
        if state == "cancelled":
            return "the Dask scheduler cancelled the task"
        return f"the Dask task ended ({state}) without a result"
