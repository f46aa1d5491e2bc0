"""Sweeps on the local worker pool: launch, aggregate, validate and cancel."""

import sqlite3

from sweep_helpers import assert_cells_aggregate_seeds, create_sweep, wait_for_sweep

from app.store import SCHEMA_VERSION, Store


def test_sweep_trains_every_cell_and_seed(module_runs, tiny_run_request):
    http = module_runs.http
    body = {
        "name": "slots",
        "base": tiny_run_request("rmc"),
        "grid": {"model_options.mem_slots": [1, 2]},
        "seeds": [0, 1],
    }
    created = create_sweep(http, body)
    assert created["name"] == "slots"
    assert created["metric"] == "final_test_loss"
    assert created["axes"] == [{"key": "model_options.mem_slots", "values": [1, 2]}]
    assert len(created["runs"]) == 4
    assert {run["sweep_id"] for run in created["runs"]} == {created["id"]}
    slots_and_seeds = sorted(
        (run["config"]["model_options"]["mem_slots"], run["seed"]) for run in created["runs"]
    )
    assert slots_and_seeds == [(1, 0), (1, 1), (2, 0), (2, 1)]

    sweep = wait_for_sweep(http, created["id"])
    assert sweep["status"] == "completed"
    assert sweep["counts"]["completed"] == 4
    assert [cell["values"] for cell in sweep["cells"]] == [
        {"model_options.mem_slots": 1},
        {"model_options.mem_slots": 2},
    ]
    assert_cells_aggregate_seeds(sweep, seeds=2)

    listed = http.get("/api/sweeps").json()
    assert created["id"] in [item["id"] for item in listed]
    assert all(item["runs"] is None for item in listed)
    run = http.get(f"/api/runs/{created['runs'][0]['id']}").json()
    assert run["sweep_id"] == created["id"]


def test_sweep_over_model_kind_uses_options_per_kind(module_runs, tiny_run_request):
    http = module_runs.http
    body = {
        "base": tiny_run_request("rmc", steps=10, eval_interval=10),
        "grid": {"model": ["rmc", "lstm"], "task_options.num_objects": [2, 3]},
        "model_options_by_kind": {"lstm": {"hidden_size": 5}},
    }
    created = create_sweep(http, body)
    models = [(run["model"], run["config"]["model_options"]) for run in created["runs"]]
    assert [kind for kind, _ in models] == ["rmc", "rmc", "lstm", "lstm"]
    assert models[0][1]["mem_slots"] == 2
    assert models[2][1]["hidden_size"] == 5
    objects = [run["config"]["task_options"]["num_objects"] for run in created["runs"]]
    assert objects == [2, 3, 2, 3]
    sweep = wait_for_sweep(http, created["id"])
    assert all(cell["std"] is None and len(cell["metric_values"]) == 1 for cell in sweep["cells"])


def test_sweep_validation_errors(module_runs, tiny_run_request):
    http = module_runs.http
    base = tiny_run_request("rmc")
    runs_before = len(http.get("/api/runs").json())

    cases = [
        ({"grid": {"seed": [0, 1]}}, ["body", "grid", "seed"], "not allowed"),
        (
            {"grid": {"model_options.mem_slots": [2, 0]}},
            ["body", "grid", "model_options.mem_slots"],
            "grid cell mem_slots=0: model_options.mem_slots",
        ),
        ({"grid": {"learning_rate": [0.1, 0.1]}}, ["body", "grid", "learning_rate"], "repeats"),
        (
            {"grid": {"model_options.mem_slots": list(range(1, 10))}, "seeds": list(range(8))},
            ["body", "grid"],
            "72 runs, more than the limit of 64",
        ),
        ({"grid": {"model_options.mem_slots": [1]}, "seeds": [3, 3]}, ["body", "seeds"], "repeats"),
    ]
    for extra, loc, text in cases:
        response = http.post("/api/sweeps", json={"base": base, **extra})
        assert response.status_code == 422, (extra, response.text)
        errors = response.json()["detail"]
        assert errors[0]["loc"] == loc, errors
        assert text in errors[0]["msg"], errors

    response = http.post("/api/sweeps", json={"base": base, "grid": {}})
    assert response.status_code == 422
    assert len(http.get("/api/runs").json()) == runs_before


def test_unknown_sweep_is_404(module_runs):
    for path in ("/api/sweeps/0123456789ab", "/api/sweeps/nope"):
        response = module_runs.http.get(path)
        assert response.status_code == 404
        assert "not found" in response.json()["detail"]
    assert module_runs.http.post("/api/sweeps/0123456789ab/cancel").status_code == 404


def test_cancel_sweep_stops_queued_and_running_runs(module_runs, tiny_run_request):
    http = module_runs.http
    base = tiny_run_request(
        "lstm", steps=1_000_000, log_interval=50, eval_interval=1_000_000, eval_size=8
    )
    created = create_sweep(http, {"base": base, "grid": {"model_options.hidden_size": [4, 5, 6]}})
    module_runs.wait_for_step(created["runs"][0]["id"], 50)

    response = http.post(f"/api/sweeps/{created['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["cancelled_at"] is not None
    sweep = wait_for_sweep(http, created["id"])
    assert sweep["status"] == "cancelled"
    assert sweep["counts"]["cancelled"] == 3
    assert all(cell["mean"] is None for cell in sweep["cells"])


def test_store_adds_sweep_column_to_old_database(tmp_path):
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path)
    connection.executescript(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, task TEXT NOT NULL,"
        " model TEXT NOT NULL, seed INTEGER NOT NULL, config TEXT NOT NULL,"
        " status TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,"
        " error TEXT, param_count INTEGER, final_metrics TEXT,"
        " progress_step INTEGER NOT NULL DEFAULT 0, has_checkpoint INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO runs (id, name, task, model, seed, config, status, created_at)"
        " VALUES ('0123456789ab', 'old', 'tracking', 'rmc', 0, '{\"steps\": 5}', 'completed',"
        " '2026-01-01T00:00:00+00:00');"
        "PRAGMA user_version=1;"
    )
    connection.close()

    store = Store(path)
    try:
        run = store.get_run("0123456789ab")
        assert run["name"] == "old"
        assert run["sweep_id"] is None
        assert store.list_sweeps() == []
        version = store._conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION
    finally:
        store.close()
    # Opening the migrated file again changes nothing.
    Store(path).close()


def test_sweep_pages(module_runs, tiny_run_request):
    http = module_runs.http
    assert http.get("/sweeps").status_code == 200
    created = create_sweep(
        http,
        {"base": tiny_run_request("lstm", steps=10, eval_interval=10), "grid": {"steps": [10]}},
    )
    page = http.get(f"/sweeps/{created['id']}")
    assert page.status_code == 200
    assert f'data-sweep-id="{created["id"]}"' in page.text
    assert http.get("/sweeps/0123456789ab").status_code == 404
    wait_for_sweep(http, created["id"])
