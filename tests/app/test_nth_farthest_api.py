"""N-th farthest over HTTP and websockets: curriculum validation, per-n accuracy stored and
streamed with the run, and the relational presets."""

import json

import pytest
from websockets.sync.client import connect

from app.store import Store

FINISHED = ("completed", "failed", "cancelled", "interrupted")
TINY_NTH = {
    "task": "nth-farthest",
    "task_options": {"num_vectors": 4, "vector_dim": 2},
    "model": "lstm",
    "model_options": {"hidden_size": 8},
    "steps": 12,
    "batch_size": 8,
    "eval_interval": 3,
    "eval_size": 32,
    "log_interval": 3,
    "seed": 0,
}
TWO_STAGES = [
    {"task_options": {"num_vectors": 2}, "threshold": 0.0},
    {"task_options": {"num_vectors": 3, "allowed_n": [0, 2]}, "threshold": 1.0, "max_steps": 4},
]


def rejected(module_runs, body: dict) -> list[dict]:
    response = module_runs.http.post("/api/runs", json=body)
    assert response.status_code == 422, response.text
    return response.json()["detail"]


@pytest.mark.parametrize(
    ("curriculum", "loc", "fragments"),
    [
        ([{"threshold": 1.5}], ["body", "curriculum", 0, "threshold"], ["1.5"]),
        ([{"threshold": 0.5, "after": 3}], ["body", "curriculum", 0, "after"], ["unknown"]),
        (
            [{"threshold": 0.5}, {"threshold": 0.5, "task_options": {"allowed_n": [7]}}],
            ["body", "curriculum", 1, "task_options"],
            ["curriculum[1].task_options", "'allowed_n'", "got 7"],
        ),
        (
            [{"threshold": 0.5, "task_options": {"vector_dim": 3}}],
            ["body", "curriculum", 0, "task_options"],
            ["input size 15", "must equal the run's 14"],
        ),
    ],
)
def test_curriculum_errors_point_at_stage_field(module_runs, curriculum, loc, fragments):
    errors = rejected(module_runs, {**TINY_NTH, "curriculum": curriculum})
    assert [error["loc"] for error in errors] == [loc]
    for fragment in fragments:
        assert fragment in errors[0]["msg"]


def test_curriculum_rejected_for_regression_task(module_runs, tiny_run_request):
    errors = rejected(module_runs, tiny_run_request(curriculum=[{"threshold": 0.5}]))
    assert errors[0]["loc"] == ["body", "curriculum"]
    assert "classification task, and 'tracking-grid' is not" in errors[0]["msg"]


def test_allowed_n_error_names_option_and_value(module_runs):
    body = {**TINY_NTH, "task_options": {"num_vectors": 4, "allowed_n": [0, 9]}}
    errors = rejected(module_runs, body)
    assert "'allowed_n'" in errors[0]["msg"]
    assert "got 9" in errors[0]["msg"]


def test_per_n_accuracy_and_stages_stored_and_streamed(module_runs):
    run = module_runs.create({**TINY_NTH, "curriculum": TWO_STAGES})
    assert run["config"]["curriculum"][0]["max_steps"] is None
    assert run["config"]["task_options"]["num_labels"] == 4

    url = f"ws://127.0.0.1:{module_runs.server.port}/ws/runs/{run['id']}"
    with connect(url) as socket:
        messages = [json.loads(socket.recv(timeout=30))]
        while not (messages[-1]["type"] == "status" and messages[-1]["run"]["status"] in FINISHED):
            messages.append(json.loads(socket.recv(timeout=30)))
    assert messages[-1]["run"]["status"] == "completed"

    stored = module_runs.http.get(f"/api/runs/{run['id']}/metrics").json()
    assert [row["curriculum_stage"] for row in stored] == [0, 1, 2, 2]
    for row in stored:
        assert set(row["test_accuracy_per_n"]) <= {"0", "1", "2", "3"}
        assert all(0.0 <= value <= 1.0 for value in row["test_accuracy_per_n"].values())
    assert stored[0]["stage_test_accuracy"] is not None
    assert stored[2]["stage_test_accuracy"] is None

    # The snapshot and the live events together carry the same rows as the store.
    streamed = messages[0]["metrics"] + [m for m in messages[1:] if m["type"] == "metric"]
    streamed = [{key: value for key, value in m.items() if key != "type"} for m in streamed]
    assert streamed == stored
    logs = [m["message"] for m in messages if m["type"] == "log"]
    assert any("curriculum: stage 1 of 2 ended at step 3" in line for line in logs)

    final = module_runs.get(run["id"])["final_metrics"]
    assert final["final_test_accuracy_per_n"] == stored[-1]["test_accuracy_per_n"]


def test_store_keeps_per_n_accuracy(tmp_path):
    store = Store(tmp_path / "runs.sqlite3")
    store.create_run(
        {"id": "0123456789ab", "name": "r", "task": "nth-farthest", "model": "rmc", "seed": 0,
         "config": {"steps": 10}}
    )  # fmt: skip
    event = {"step": 5, "test_accuracy": 0.5, "test_accuracy_per_n": {0: 0.25, 3: 1.0}}
    store.add_metric("0123456789ab", event)
    store.close()

    reopened = Store(tmp_path / "runs.sqlite3")
    [row] = reopened.get_metrics("0123456789ab")
    assert row["test_accuracy_per_n"] == {"0": 0.25, "3": 1.0}
    reopened.close()


def test_relational_presets_launch_the_recipe(module_runs):
    presets = {item["name"]: item for item in module_runs.http.get("/api/tasks").json()["presets"]}
    plain, staged = presets["relational"], presets["relational-curriculum"]
    assert plain["title"] == "Relational reasoning (RMC paper)"
    for preset in (plain, staged):
        assert preset["launch_directly"] is True
        assert [body["model"] for body in preset["runs"]] == ["rmc", "lstm"]
        for body in preset["runs"]:
            assert body["task_options"] == {"num_vectors": 4, "vector_dim": 4}
            assert (body["batch_size"], body["learning_rate"], body["clip_norm"]) == (512, 3e-4, 1)
            assert body["seed"] == 0
            assert body["time_limit_minutes"] == 30
    assert plain["runs"][0]["model_options"]["readout_hidden"] == [128, 128]
    assert "curriculum" not in plain["runs"][0]
    assert len(staged["runs"][1]["curriculum"]) == 4
