"""Job runner: trains runs in spawned worker processes, at most ``max_concurrent`` at once.

Runs wait in a FIFO queue until a slot is free. Each worker gets its own one-way pipe for
events and its own cancel ``Event``. A single monitor thread waits on every pipe and every
process sentinel, hands events to the ``Recorder`` and notices when a process ends. A pipe
per worker, rather than one shared queue, means that a worker killed in the middle of a
write (SIGKILL, out of memory) truncates only its own stream and never holds a lock that
the other workers need.

Cancel is cooperative: the worker checks its event between steps. A worker that is still
alive ``cancel_grace_seconds`` after the request is terminated (SIGTERM), and killed
(SIGKILL) if it survives that too. A worker that ends without reporting a result is
recorded as ``failed`` with its exit code or signal.
"""

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from app import worker
from app.recorder import Recorder

logger = logging.getLogger(__name__)

# Seconds between checks of the cancel deadlines when no event arrives.
POLL_SECONDS = 0.1
# Seconds a terminated (SIGTERM) worker gets before it is killed (SIGKILL).
KILL_AFTER_TERMINATE_SECONDS = 2.0
# Events read from one worker per pass of the monitor, so a chatty worker cannot delay
# the others; an exited worker's pipe is always read to the end.
EVENTS_PER_PASS = 500

USER_CANCEL = "user"
SHUTDOWN_CANCEL = "shutdown"


@dataclass(eq=False)
class _Job:
    run_id: str
    config: dict
    process: multiprocessing.process.BaseProcess | None = None
    connection: Connection | None = None
    cancel_event: object | None = None
    cancel_reason: str | None = None
    cancel_requested_at: float | None = None
    terminated_at: float | None = None
    reported: bool = False


class Runner:
    """Start, watch and stop worker processes; report everything to a ``Recorder``."""

    def __init__(
        self,
        recorder: Recorder,
        runs_dir: Path,
        max_concurrent: int,
        cancel_grace_seconds: float = 3.0,
    ):
        self.recorder = recorder
        self.runs_dir = Path(runs_dir)
        self.max_concurrent = max_concurrent
        self.cancel_grace_seconds = cancel_grace_seconds
        self.blas_threads = max(1, (os.cpu_count() or 1) // max_concurrent)
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, _Job] = OrderedDict()
        self._active: dict[str, _Job] = {}
        self._stopping = False
        self._monitor = threading.Thread(
            target=self._monitor_loop, name="relmem-runner", daemon=True
        )

    def start(self) -> None:
        self._monitor.start()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"running": len(self._active), "queued": len(self._pending)}

    def submit(self, run_id: str, config: dict) -> None:
        """Queue a run that is stored as ``queued``; it starts when a slot is free."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("the runner is shutting down and accepts no new runs")
            self._pending[run_id] = _Job(run_id, config)
            self._start_pending()

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued run at once, or ask a running one to stop.

        Returns False when the runner has no such queued or running run.
        """
        with self._lock:
            job = self._pending.pop(run_id, None)
            if job is not None:
                self.recorder.run_finished(run_id, "cancelled", error="cancelled before it started")
                return True
            job = self._active.get(run_id)
            if job is None:
                return False
            self._request_cancel(job, USER_CANCEL)
            return True

    def stop(self) -> None:
        """Interrupt queued runs, stop running ones and wait for the monitor thread.

        Running workers get the cancel grace period, then are terminated; their runs
        become ``interrupted``.
        """
        with self._lock:
            self._stopping = True
            for run_id in list(self._pending):
                self.recorder.run_finished(
                    run_id, "interrupted", error="the server stopped before the run started"
                )
            self._pending.clear()
            for job in self._active.values():
                self._request_cancel(job, SHUTDOWN_CANCEL)
        if self._monitor.is_alive():
            self._monitor.join(self.cancel_grace_seconds + KILL_AFTER_TERMINATE_SECONDS + 5.0)

    # Starting workers (called with the lock held)

    def _start_pending(self) -> None:
        while self._pending and len(self._active) < self.max_concurrent and not self._stopping:
            _, job = self._pending.popitem(last=False)
            if self.recorder.run_started(job.run_id):
                self._spawn(job)

    def _spawn(self, job: _Job) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        job.cancel_event = self._context.Event()
        job.process = self._context.Process(
            target=worker.run_worker,
            args=(
                job.run_id,
                job.config,
                str(self.runs_dir / job.run_id),
                writer,
                job.cancel_event,
                self.blas_threads,
            ),
            name=f"relmem-run-{job.run_id}",
            daemon=True,
        )
        try:
            job.process.start()
        except OSError as exc:
            reader.close()
            self.recorder.run_finished(
                job.run_id, "failed", error=f"could not start a worker process: {exc}"
            )
            return
        finally:
            # Only the child may hold the write end, so the pipe reports EOF when it ends.
            writer.close()
        job.connection = reader
        self._active[job.run_id] = job
        logger.debug("run %s: worker process %d started", job.run_id, job.process.pid)

    def _request_cancel(self, job: _Job, reason: str) -> None:
        if job.cancel_requested_at is not None:
            return
        job.cancel_reason = reason
        job.cancel_requested_at = time.monotonic()
        job.cancel_event.set()
        logger.info("run %s: cancel requested (%s)", job.run_id, reason)

    # The monitor thread

    def _monitor_loop(self) -> None:
        while True:
            with self._lock:
                jobs = list(self._active.values())
                if self._stopping and not jobs:
                    return
            waitables = [job.process.sentinel for job in jobs]
            waitables += [job.connection for job in jobs if job.connection is not None]
            try:
                ready = set(wait(waitables, timeout=POLL_SECONDS)) if waitables else set()
            except OSError:
                logger.exception("waiting on worker pipes failed")
                ready = set()
            if not waitables:
                time.sleep(POLL_SECONDS)
            for job in jobs:
                try:
                    self._service(job, ready)
                except Exception:
                    # The monitor must outlive any one run, or no run would ever end.
                    logger.exception("run %s: handling its worker failed", job.run_id)

    def _service(self, job: _Job, ready: set) -> None:
        if job.connection is not None and job.connection in ready:
            self._read_events(job, EVENTS_PER_PASS)
        if job.process.sentinel in ready:
            self._reap(job)
        else:
            self._enforce_cancel_deadline(job)

    def _read_events(self, job: _Job, limit: int | None = None) -> None:
        """Pass up to ``limit`` waiting events (all when None) from the pipe to the recorder."""
        connection = job.connection
        count = 0
        while connection is not None and (limit is None or count < limit) and connection.poll():
            count += 1
            try:
                event = connection.recv()
            except (EOFError, OSError):
                # EOF, or a message cut short by the worker's death.
                connection.close()
                job.connection = connection = None
                return
            self._handle_event(job, event)

    def _handle_event(self, job: _Job, event) -> None:
        if not isinstance(event, dict):
            logger.warning("run %s: ignored a worker message of type %s", job.run_id, type(event))
            return
        if event.get("type") != "finished":
            self.recorder.worker_event(job.run_id, event)
            return
        job.reported = True
        status = event.get("status")
        if status == "cancelled" and job.cancel_reason == SHUTDOWN_CANCEL:
            status = "interrupted"
        error = event.get("error")
        if status == "interrupted" and error is None:
            error = "the server stopped during training"
        self.recorder.run_finished(
            job.run_id,
            status,
            error=error,
            summary=event.get("summary"),
            has_checkpoint=bool(event.get("has_checkpoint")),
            param_count=event.get("param_count"),
        )

    def _reap(self, job: _Job) -> None:
        """Record the end of a worker whose process has exited, and start the next run."""
        # Everything the worker wrote is in the pipe before its process ends.
        self._read_events(job)
        job.process.join()
        if job.connection is not None:
            job.connection.close()
            job.connection = None
        if not job.reported:
            status, error = self._status_without_report(job)
            self.recorder.run_finished(job.run_id, status, error=error)
        with self._lock:
            self._active.pop(job.run_id, None)
            self._start_pending()

    def _status_without_report(self, job: _Job) -> tuple[str, str]:
        exitcode = job.process.exitcode
        if job.terminated_at is not None:
            waited = f"{self.cancel_grace_seconds:g} s"
            if job.cancel_reason == SHUTDOWN_CANCEL:
                return (
                    "interrupted",
                    f"the server stopped; the worker was terminated after {waited}",
                )
            return "cancelled", f"the worker did not stop within {waited} and was terminated"
        if exitcode is not None and exitcode < 0:
            try:
                name = signal.Signals(-exitcode).name
            except ValueError:
                name = str(-exitcode)
            reason = f"the worker process was killed by signal {name}"
            if -exitcode == signal.SIGKILL:
                reason += " (possibly by the out-of-memory killer)"
            return "failed", reason
        return "failed", f"the worker process exited with code {exitcode} without a result"

    def _enforce_cancel_deadline(self, job: _Job) -> None:
        if job.cancel_requested_at is None:
            return
        now = time.monotonic()
        if job.terminated_at is None:
            if now - job.cancel_requested_at >= self.cancel_grace_seconds:
                logger.warning(
                    "run %s: worker ignored the cancel request for %g s; terminating it",
                    job.run_id,
                    self.cancel_grace_seconds,
                )
                job.terminated_at = now
                job.process.terminate()
        elif now - job.terminated_at >= KILL_AFTER_TERMINATE_SECONDS:
            logger.warning("run %s: worker survived SIGTERM; killing it", job.run_id)
            job.process.kill()
