"""SQLite run store: runs and their metric rows, shared by the API threads and the runner.

All SQL of the application lives here. One connection in WAL mode serves every thread,
guarded by a lock, so readers and the single event consumer never interleave statements.
A run's status only moves forward: ``queued -> running -> completed | failed | cancelled
| interrupted`` (``queued`` may also end directly); updates of a finished run are ignored.
"""

import json
import logging
import math
import numbers
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

ACTIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "interrupted")
STATUSES = ACTIVE_STATUSES + FINISHED_STATUSES

# Metric fields with their own column; any other numeric field of a metric event is kept
# in the ``extra`` JSON column and returned beside them.
METRIC_FIELDS = (
    "step",
    "train_loss",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
    "grad_norm",
    "learning_rate",
    "elapsed",
)

# Version 2 added the sweeps table and runs.sweep_id; ``_migrate`` upgrades older files.
# Metric rows read per lock acquisition by ``Store.get_metrics``.
METRIC_PAGE_ROWS = 2000

SCHEMA_VERSION = 3

# Log lines kept per run; older lines are deleted as new ones arrive.
MAX_LOG_LINES = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    param_count INTEGER,
    final_metrics TEXT,
    progress_step INTEGER NOT NULL DEFAULT 0,
    has_checkpoint INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    train_loss REAL,
    test_loss REAL,
    train_accuracy REAL,
    test_accuracy REAL,
    grad_norm REAL,
    learning_rate REAL,
    elapsed REAL,
    extra TEXT,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    time TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_run ON logs (run_id, id);
CREATE TABLE IF NOT EXISTS imports (
    run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    checkpoint_sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS imports_by_checkpoint ON imports (checkpoint_sha256);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at TEXT NOT NULL,
    cancelled_at TEXT
);
"""


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def finite_or_none(value):
    """Return ``value`` as a float, or None when it is missing, not a number or not finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Store:
    """Runs and metrics in one SQLite file; every method is safe to call from any thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL survives a crash of the process (not of the machine).
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(SCHEMA)
            self._migrate()
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _migrate(self) -> None:
        """Add the columns that newer versions need to a database of an older version."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
        if "sweep_id" not in columns:
            self._conn.execute("ALTER TABLE runs ADD COLUMN sweep_id TEXT")
            # A fresh file has user_version 0, and its new table is no migration to report.
            if self._conn.execute("PRAGMA user_version").fetchone()[0]:
                logger.info("added the column runs.sweep_id to %s", self.path)
        self._conn.execute("CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # Runs

    def create_run(self, run: dict) -> dict:
        """Insert a new run with status ``queued`` and return it as the API shows it.

        ``run`` has ``id``, ``name``, ``task``, ``model``, ``seed``, ``config`` (a dict)
        and ``param_count``, and optionally ``sweep_id``.
        """
        with self._lock:
            self._conn.execute(
                "INSERT INTO runs (id, name, task, model, seed, config, status, created_at,"
                " param_count, sweep_id) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                (
                    run["id"],
                    run["name"],
                    run["task"],
                    run["model"],
                    run["seed"],
                    json.dumps(run["config"], sort_keys=True),
                    utc_now(),
                    run.get("param_count"),
                    run.get("sweep_id"),
                ),
            )
            return self._get_run(run["id"])

    def get_run(self, run_id: str) -> dict | None:
        with self._lock:
            return self._get_run(run_id)

    def _get_run(self, run_id: str) -> dict | None:
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run_from_row(row)

    def list_runs(self) -> list[dict]:
        """Return every run, newest first."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM runs ORDER BY rowid DESC").fetchall()
        return [_run_from_row(row) for row in rows]

    def count_by_status(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
            counts = dict(rows.fetchall())
        return {status: counts.get(status, 0) for status in STATUSES}

    def mark_running(self, run_id: str) -> dict | None:
        """Move a queued run to ``running``; return the run, or None if it was not queued."""
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE runs SET status = 'running', started_at = ? "
                "WHERE id = ? AND status = 'queued'",
                (utc_now(), run_id),
            )
            return self._get_run(run_id) if cursor.rowcount else None

    def finish_run(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        final_metrics: dict | None = None,
        has_checkpoint: bool = False,
        param_count: int | None = None,
    ) -> dict | None:
        """Record the end of an active run; return it, or None if it had already ended."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"status must be one of {FINISHED_STATUSES}, got {status!r}")
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ?, final_metrics = ?,"
                " has_checkpoint = ?, param_count = COALESCE(?, param_count)"
                " WHERE id = ? AND status IN ('queued', 'running')",
                (
                    status,
                    utc_now(),
                    error,
                    None if final_metrics is None else json.dumps(final_metrics, sort_keys=True),
                    int(has_checkpoint),
                    param_count,
                    run_id,
                ),
            )
            return self._get_run(run_id) if cursor.rowcount else None

    def interrupt_active_runs(self, reason: str) -> list[str]:
        """Mark every queued or running run ``interrupted``; return their ids.

        Called at start-up: no worker of a previous server process survives it.
        """
        with self._lock, self._conn:
            ids = [
                row[0]
                for row in self._conn.execute(
                    "SELECT id FROM runs WHERE status IN ('queued', 'running')"
                )
            ]
            self._conn.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ?, error = ?"
                " WHERE status IN ('queued', 'running')",
                (utc_now(), reason),
            )
        return ids

    # Imports

    def add_import(self, run_id: str, checkpoint_sha256: str) -> None:
        """Record that the run ``run_id`` was imported from a checkpoint with this SHA-256."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO imports (run_id, checkpoint_sha256) VALUES (?, ?)",
                (run_id, checkpoint_sha256),
            )

    def runs_imported_from(self, checkpoint_sha256: str) -> list[str]:
        """Return the ids of the stored runs imported from a checkpoint with this SHA-256."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT run_id FROM imports WHERE checkpoint_sha256 = ? ORDER BY rowid",
                (checkpoint_sha256,),
            ).fetchall()
        return [row["run_id"] for row in rows]

    def delete_run(self, run_id: str) -> bool:
        """Delete a run, its metric rows, log lines and import record; return whether it existed."""
        with self._lock, self._conn:
            cursor = self._conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            return cursor.rowcount > 0

    # Sweeps

    def create_sweep(self, sweep_id: str, name: str, spec: dict) -> dict:
        """Insert a sweep; ``spec`` is its JSON-ready request and run layout."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO sweeps (id, name, spec, created_at) VALUES (?, ?, ?, ?)",
                (sweep_id, name, json.dumps(spec, sort_keys=True), utc_now()),
            )
            return self._get_sweep(sweep_id)

    def get_sweep(self, sweep_id: str) -> dict | None:
        with self._lock:
            return self._get_sweep(sweep_id)

    def _get_sweep(self, sweep_id: str) -> dict | None:
        row = self._conn.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        return None if row is None else _sweep_from_row(row)

    def list_sweeps(self) -> list[dict]:
        """Return every sweep, newest first."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM sweeps ORDER BY rowid DESC").fetchall()
        return [_sweep_from_row(row) for row in rows]

    def mark_sweep_cancelled(self, sweep_id: str) -> dict | None:
        """Record that a sweep was cancelled (the first time only); return the sweep."""
        with self._lock:
            self._conn.execute(
                "UPDATE sweeps SET cancelled_at = ? WHERE id = ? AND cancelled_at IS NULL",
                (utc_now(), sweep_id),
            )
            return self._get_sweep(sweep_id)

    def list_sweep_runs(self, sweep_id: str) -> list[dict]:
        """Return the runs of a sweep in the order they were created."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,)
            ).fetchall()
        return [_run_from_row(row) for row in rows]

    # Metrics

    def add_metric(self, run_id: str, event: dict) -> dict:
        """Store one metric event, advance the run's progress and return the metric row."""
        row = metric_row(run_id, event)
        extra = {key: row[key] for key in row if key not in METRIC_FIELDS and key != "run_id"}
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO metrics (run_id, step, train_loss, test_loss,"
                " train_accuracy, test_accuracy, grad_norm, learning_rate, elapsed, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    *(row[name] for name in METRIC_FIELDS),
                    json.dumps(extra) if extra else None,
                ),
            )
            self._conn.execute(
                "UPDATE runs SET progress_step = MAX(progress_step, ?) WHERE id = ?",
                (row["step"], run_id),
            )
        return row

    # Log lines

    def add_log(self, run_id: str, time: str, message: str) -> int:
        """Store one log line of a run and return its id, which grows with every line.

        Only the run's last ``MAX_LOG_LINES`` lines are kept.

        Raises:
            sqlite3.IntegrityError: when no run has the id ``run_id``.
        """
        with self._lock, self._conn:
            cursor = self._conn.execute(
                "INSERT INTO logs (run_id, time, message) VALUES (?, ?, ?)",
                (run_id, time, message),
            )
            self._conn.execute(
                "DELETE FROM logs WHERE run_id = ? AND id <= (SELECT id FROM logs"
                " WHERE run_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (run_id, run_id, MAX_LOG_LINES),
            )
            return cursor.lastrowid

    def get_logs(self, run_id: str) -> list[dict]:
        """Return the run's stored log lines, oldest first, as ``{"id", "time", "message"}``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, time, message FROM logs WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        return [dict(row) for row in rows]

    def get_metrics(self, run_id: str) -> list[dict]:
        """Return the run's metric rows in step order.

        Rows are read in pages of ``METRIC_PAGE_ROWS``, taking the lock once per page, so
        a run with 100,000 rows does not hold up every other reader and writer of the
        store. Rows that a running run adds meanwhile may be included, still in order.
        """
        rows = []
        last_step = -(2**63)  # the smallest SQLite integer
        while True:
            with self._lock:
                page = self._conn.execute(
                    "SELECT * FROM metrics WHERE run_id = ? AND step > ? ORDER BY step LIMIT ?",
                    (run_id, last_step, METRIC_PAGE_ROWS),
                ).fetchall()
            rows += page
            if len(page) < METRIC_PAGE_ROWS:
                return [_metric_from_row(row) for row in rows]
            last_step = page[-1]["step"]


def metric_row(run_id: str, event: dict) -> dict:
    """Return the metric row for a metric event: its fields without ``type``, plus ``run_id``.

    Values that are not finite numbers become None, because JSON has no NaN or infinity.
    Fields beyond the standard ones are kept when they are numbers or lists of numbers.
    """
    row = {"run_id": run_id, "step": int(event["step"])}
    for name in METRIC_FIELDS[1:]:
        row[name] = finite_or_none(event.get(name))
    for key, value in event.items():
        if key in row or key == "type":
            continue
        if isinstance(value, list):
            row[key] = [finite_or_none(item) for item in value]
        elif isinstance(value, dict):
            row[key] = {str(k): finite_or_none(v) for k, v in value.items()}
        else:
            row[key] = finite_or_none(value)
    return row


def _metric_from_row(row: sqlite3.Row) -> dict:
    metric = {"run_id": row["run_id"]}
    metric.update({name: row[name] for name in METRIC_FIELDS})
    if row["extra"]:
        metric.update(json.loads(row["extra"]))
    return metric


def _run_from_row(row: sqlite3.Row) -> dict:
    config = json.loads(row["config"])
    return {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "task": row["task"],
        "model": row["model"],
        "seed": row["seed"],
        "config": config,
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "error": row["error"],
        "param_count": row["param_count"],
        "progress": {"step": row["progress_step"], "steps": config.get("steps")},
        "final_metrics": None if row["final_metrics"] is None else json.loads(row["final_metrics"]),
        "has_checkpoint": bool(row["has_checkpoint"]),
        "sweep_id": row["sweep_id"],
    }


def _sweep_from_row(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "spec": json.loads(row["spec"]),
        "created_at": row["created_at"],
        "cancelled_at": row["cancelled_at"],
    }
