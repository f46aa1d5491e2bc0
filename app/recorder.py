"""Write run events to the store, then publish them to websocket subscribers.

The runner calls a ``Recorder`` from its monitor thread (worker events, process exits)
and from API threads (start of a run, cancel of a queued run). One lock orders every
call, and each message is published only after its store write and in the order of the
writes, so a subscriber that reads the store after subscribing misses nothing.
"""

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping

from app.hub import ALL_RUNS_CHANNEL, Hub, run_channel
from app.store import Store, finite_or_none, utc_now
from models.training import STOP_REASONS

logger = logging.getLogger(__name__)

SUMMARY_FIELDS = (
    "final_test_loss",
    "final_test_accuracy",
    "baselines",
    "steps",
    "seconds",
    # N-th farthest: held-out accuracy per value of n, keyed by n as a string.
    "final_test_accuracy_per_n",
    # What ended the run: "steps", "time_limit" or "cancel".
    "stopped_by",
)


class Recorder:
    """The single writer of run progress: store first, then the hub."""

    def __init__(self, store: Store, hub: Hub):
        self.store = store
        self.hub = hub
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

    def run_created(self, run: dict) -> None:
        """Publish a newly stored (queued) run."""
        with self._lock:
            self._publish_status(run)

    def run_started(self, run_id: str) -> bool:
        """Mark a queued run ``running``; return False if it was no longer queued."""
        with self._lock:
            run = self.store.mark_running(run_id)
            if run is None:
                return False
            self._started[run_id] = time.monotonic()
            logger.info("run %s (%s) started", run_id, run["name"])
            self._publish_status(run)
            return True

    def worker_event(self, run_id: str, event: Mapping) -> None:
        """Record a ``metric`` or ``log`` event from a worker; ignore other types."""
        kind = event.get("type")
        with self._lock:
            if kind == "metric":
                self._record_metric(run_id, event)
            elif kind == "log":
                self._record_log(run_id, str(event.get("message", "")))
            else:
                logger.warning("run %s: ignored a worker event of type %r", run_id, kind)

    def _record_log(self, run_id: str, text: str) -> None:
        message = {"type": "log", "run_id": run_id, "message": text, "time": utc_now()}
        try:
            message["id"] = self.store.add_log(run_id, message["time"], text)
        except sqlite3.IntegrityError:
            logger.warning("run %s: ignored a log line of a run that is not stored", run_id)
            return
        self.hub.publish_threadsafe(run_channel(run_id), message)

    def _record_metric(self, run_id: str, event: Mapping) -> None:
        try:
            row = self.store.add_metric(run_id, dict(event))
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("run %s: ignored a malformed metric event %r: %s", run_id, event, exc)
            return
        self.hub.publish_threadsafe(run_channel(run_id), {"type": "metric", **row})
        run = self.store.get_run(run_id)
        steps = None if run is None else run["progress"]["steps"]
        self.hub.publish_threadsafe(
            ALL_RUNS_CHANNEL,
            {"type": "progress", "run_id": run_id, "step": row["step"], "steps": steps},
        )

    def run_finished(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        summary: Mapping | None = None,
        has_checkpoint: bool = False,
        param_count: int | None = None,
    ) -> bool:
        """Record the end of a run; return False if it had already ended."""
        final_metrics = None if summary is None else final_metrics_of(summary)
        with self._lock:
            run = self.store.finish_run(
                run_id,
                status,
                error=error,
                final_metrics=final_metrics,
                has_checkpoint=has_checkpoint,
                param_count=param_count,
            )
            if run is None:
                return False
            started = self._started.pop(run_id, None)
            seconds = "" if started is None else f" after {time.monotonic() - started:.1f} s"
            if status == "failed":
                logger.error("run %s (%s) failed%s: %s", run_id, run["name"], seconds, error)
            else:
                logger.info("run %s (%s) %s%s", run_id, run["name"], status, seconds)
            self._publish_status(run)
            return True

    def run_deleted(self, run_id: str) -> None:
        """Tell the all-runs channel that a run no longer exists."""
        with self._lock:
            self.hub.publish_threadsafe(ALL_RUNS_CHANNEL, {"type": "deleted", "run_id": run_id})

    def _publish_status(self, run: dict) -> None:
        message = {"type": "status", "run": run}
        self.hub.publish_threadsafe(run_channel(run["id"]), message)
        self.hub.publish_threadsafe(ALL_RUNS_CHANNEL, message)


def final_metrics_of(summary: Mapping) -> dict:
    """Return the summary fields kept with a finished run, with non-finite numbers as None."""
    final = {}
    for name in SUMMARY_FIELDS:
        value = summary.get(name)
        if isinstance(value, Mapping):
            final[name] = {str(key): finite_or_none(item) for key, item in value.items()}
        elif name == "steps" and value is not None:
            final[name] = int(value)
        elif name == "stopped_by":
            final[name] = value if value in STOP_REASONS else None
        else:
            final[name] = finite_or_none(value)
    return final
