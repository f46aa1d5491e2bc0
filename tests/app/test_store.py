"""The SQLite run store on a real file: status transitions, metrics, log lines, recovery."""

import math
import sqlite3
import threading

import pytest

import app.store
from app.store import Store


def new_run(run_id="0123456789ab", steps=100) -> dict:
    return {
        "id": run_id,
        "name": f"rmc-tracking-grid-s0-{run_id[:4]}",
        "task": "tracking-grid",
        "model": "rmc",
        "seed": 0,
        "config": {"steps": steps, "task": "tracking-grid", "model": "rmc"},
        "param_count": 810,
    }


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "relmem.sqlite3")
    yield store
    store.close()


def metric(step, **fields) -> dict:
    event = {"type": "metric", "step": step, "train_loss": 0.5, "grad_norm": 1.0}
    event.update(fields)
    return event


def test_new_run_is_queued(store):
    run = store.create_run(new_run())
    assert run["status"] == "queued"
    assert run["progress"] == {"step": 0, "steps": 100}
    assert run["has_checkpoint"] is False
    assert run["final_metrics"] is None
    assert store.get_run("0123456789ab") == run
    assert store.get_run("ffffffffffff") is None


def test_database_uses_wal(store):
    connection = sqlite3.connect(store.path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_status_moves_forward_only(store):
    store.create_run(new_run())
    assert store.mark_running("0123456789ab")["status"] == "running"
    assert store.mark_running("0123456789ab") is None
    finished = store.finish_run(
        "0123456789ab",
        "completed",
        final_metrics={"final_test_loss": 0.01},
        has_checkpoint=True,
        param_count=811,
    )
    assert finished["status"] == "completed"
    assert finished["param_count"] == 811
    assert finished["final_metrics"] == {"final_test_loss": 0.01}
    assert store.finish_run("0123456789ab", "failed", error="late") is None
    assert store.get_run("0123456789ab")["status"] == "completed"


def test_finish_rejects_unknown_status(store):
    store.create_run(new_run())
    with pytest.raises(ValueError, match="status must be one of"):
        store.finish_run("0123456789ab", "paused")


def test_metrics_round_trip_and_advance_progress(store):
    store.create_run(new_run())
    store.add_metric("0123456789ab", metric(10, test_loss=0.2))
    store.add_metric("0123456789ab", metric(20, per_class_accuracy=[0.5, float("nan")]))
    rows = store.get_metrics("0123456789ab")
    assert [row["step"] for row in rows] == [10, 20]
    assert rows[0]["test_loss"] == 0.2
    assert rows[0]["run_id"] == "0123456789ab"
    assert "type" not in rows[0]
    assert rows[1]["per_class_accuracy"] == [0.5, None]
    assert store.get_run("0123456789ab")["progress"]["step"] == 20


def test_non_finite_metric_values_become_null(store):
    store.create_run(new_run())
    store.add_metric("0123456789ab", metric(1, train_loss=math.inf, grad_norm=math.nan))
    row = store.get_metrics("0123456789ab")[0]
    assert row["train_loss"] is None
    assert row["grad_norm"] is None


def test_repeated_step_replaces_row(store):
    store.create_run(new_run())
    store.add_metric("0123456789ab", metric(5, train_loss=1.0))
    store.add_metric("0123456789ab", metric(5, train_loss=2.0))
    assert [row["train_loss"] for row in store.get_metrics("0123456789ab")] == [2.0]


def test_delete_removes_metrics(store):
    store.create_run(new_run())
    store.add_metric("0123456789ab", metric(1))
    assert store.delete_run("0123456789ab") is True
    assert store.get_run("0123456789ab") is None
    assert store.get_metrics("0123456789ab") == []
    assert store.delete_run("0123456789ab") is False


def test_interrupt_marks_only_active_runs(store):
    for run_id in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"):
        store.create_run(new_run(run_id))
    store.mark_running("bbbbbbbbbbbb")
    store.mark_running("cccccccccccc")
    store.finish_run("cccccccccccc", "completed")
    interrupted = store.interrupt_active_runs("server stopped")
    assert sorted(interrupted) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert store.get_run("aaaaaaaaaaaa")["error"] == "server stopped"
    assert store.get_run("cccccccccccc")["status"] == "completed"
    assert store.count_by_status()["interrupted"] == 2


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "relmem.sqlite3"
    first = Store(path)
    first.create_run(new_run())
    first.add_metric("0123456789ab", metric(1))
    first.close()
    second = Store(path)
    assert second.get_run("0123456789ab")["name"] == "rmc-tracking-grid-s0-0123"
    assert len(second.get_metrics("0123456789ab")) == 1
    second.close()


def test_concurrent_writers_lose_nothing(store):
    store.create_run(new_run())

    def write(offset):
        for step in range(offset, 400, 4):
            store.add_metric("0123456789ab", metric(step))

    threads = [threading.Thread(target=write, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [row["step"] for row in store.get_metrics("0123456789ab")] == list(range(400))


def test_list_is_newest_first(store):
    for run_id in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"):
        store.create_run(new_run(run_id))
    assert [run["id"] for run in store.list_runs()] == [
        "cccccccccccc",
        "bbbbbbbbbbbb",
        "aaaaaaaaaaaa",
    ]


def test_logs_keep_last_lines_in_order(store, monkeypatch):
    monkeypatch.setattr(app.store, "MAX_LOG_LINES", 5)
    store.create_run(new_run())
    other = store.create_run(new_run("ba9876543210"))
    store.add_log(other["id"], "2026-01-01T00:00:00.000+00:00", "other run")
    ids = [store.add_log("0123456789ab", f"t{i}", f"line {i}") for i in range(8)]

    logs = store.get_logs("0123456789ab")
    assert [line["message"] for line in logs] == [f"line {i}" for i in range(3, 8)]
    assert [line["time"] for line in logs] == [f"t{i}" for i in range(3, 8)]
    assert [line["id"] for line in logs] == ids[3:]
    assert ids == sorted(ids)
    assert [line["message"] for line in store.get_logs(other["id"])] == ["other run"]


def test_logs_deleted_with_run(store):
    store.create_run(new_run())
    store.add_log("0123456789ab", "t0", "hello")
    store.finish_run("0123456789ab", "completed")
    assert store.delete_run("0123456789ab")
    assert store.get_logs("0123456789ab") == []


def test_log_of_unknown_run_rejected(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.add_log("0123456789ab", "t0", "no such run")


def test_logs_survive_reopening(tmp_path):
    path = tmp_path / "relmem.sqlite3"
    first = Store(path)
    first.create_run(new_run())
    first.add_log("0123456789ab", "t0", "kept")
    first.close()
    second = Store(path)
    try:
        assert [line["message"] for line in second.get_logs("0123456789ab")] == ["kept"]
    finally:
        second.close()
