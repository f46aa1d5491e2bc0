"""Validation of run requests on a live server: 422 bodies name the field, rule and value."""

import pytest

from app import limits
from app.presets import PRESETS
from app.schemas import RunCreate
from app.validation import resolve_run


def post_run(module_runs, body):
    return module_runs.http.post("/api/runs", json=body)


def only_error(response) -> dict:
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert len(errors) == 1, errors
    return errors[0]


def test_unknown_field_rejected(module_runs, tiny_run_request):
    error = only_error(post_run(module_runs, tiny_run_request(favourite_colour="red")))
    assert error["loc"] == ["body", "favourite_colour"]
    assert "favourite_colour" in error["msg"]


def test_steps_over_limit(module_runs, tiny_run_request):
    error = only_error(post_run(module_runs, tiny_run_request(steps=limits.MAX_STEPS + 1)))
    assert error["loc"] == ["body", "steps"]
    assert str(limits.MAX_STEPS) in error["msg"]
    assert str(limits.MAX_STEPS + 1) in error["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("learning_rate", 0.0),
        ("learning_rate", 2.0),
        ("eval_interval", 0),
        ("seed", -1),
        ("steps", "many"),
        ("dtype", "float16"),
        ("clip_norm", -1.0),
        ("time_limit_minutes", 0.0),
        ("time_limit_minutes", 1e6),
    ],
)
def test_out_of_range_training_field(module_runs, tiny_run_request, field, value):
    error = only_error(post_run(module_runs, tiny_run_request(**{field: value})))
    assert error["loc"] == ["body", field]
    assert field in error["msg"]
    assert repr(value) in error["msg"]


def test_task_option_out_of_range(module_runs, tiny_run_request):
    body = tiny_run_request(task_options={"num_objects": 50})
    error = only_error(post_run(module_runs, body))
    assert error["loc"] == ["body", "task_options", "num_objects"]
    assert "from 1 to 10" in error["msg"]
    assert "50" in error["msg"]


def test_unknown_task_option(module_runs, tiny_run_request):
    error = only_error(post_run(module_runs, tiny_run_request(task_options={"speed": 1})))
    assert error["loc"] == ["body", "task_options", "speed"]
    assert "num_objects" in error["msg"]


def test_option_of_another_task_rejected(module_runs, tiny_run_request):
    body = tiny_run_request(task="nth-farthest", task_options={"num_objects": 3})
    error = only_error(post_run(module_runs, body))
    assert error["loc"] == ["body", "task_options", "num_objects"]
    assert "nth-farthest" in error["msg"]


def test_model_option_errors_per_option(module_runs, tiny_run_request):
    body = tiny_run_request(model_options={"mem_slots": 0, "gate_style": "diagonal", "depth": 3})
    response = post_run(module_runs, body)
    assert response.status_code == 422
    by_field = {tuple(error["loc"][2:]): error["msg"] for error in response.json()["detail"]}
    assert set(by_field) == {("mem_slots",), ("gate_style",), ("depth",)}
    assert "from 1 to 64" in by_field[("mem_slots",)]
    assert "'diagonal'" in by_field[("gate_style",)]
    assert "unknown option 'depth'" in by_field[("depth",)]


def test_per_step_targets_rejected(module_runs, tiny_run_request):
    body = tiny_run_request("lstm", model_options={"per_step_targets": True})
    error = only_error(post_run(module_runs, body))
    assert error["loc"] == ["body", "model_options", "per_step_targets"]
    assert "one target per sequence" in error["msg"]


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"key_size": True}, "key_size"),
        ({"readout_hidden": "wide"}, "readout_hidden"),
        ({"readout_hidden": [64, 0]}, "readout_hidden"),
        ({"gate_style": ["unit"]}, "gate_style"),
        ({"gate_style": {"kind": "unit"}}, "gate_style"),
        ({"num_heads": 2.5}, "num_heads"),
    ],
)
def test_model_option_of_wrong_type(module_runs, tiny_run_request, options, option):
    error = only_error(post_run(module_runs, tiny_run_request(model_options=options)))
    assert error["loc"] == ["body", "model_options", option]
    assert option in error["msg"]


def test_non_finite_task_option_rejected(module_runs, tiny_run_request):
    text = '{"task": "tracking", "model": "lstm", "task_options": {"noise_std": Infinity}}'
    response = module_runs.http.post(
        "/api/runs", content=text, headers={"content-type": "application/json"}
    )
    error = only_error(response)
    assert error["loc"] == ["body", "task_options", "noise_std"]
    assert "finite" in error["msg"]


def test_lstm_rejects_rmc_option(module_runs, tiny_run_request):
    body = tiny_run_request("lstm", model_options={"mem_slots": 4})
    error = only_error(post_run(module_runs, body))
    assert error["loc"] == ["body", "model_options", "mem_slots"]


def test_unknown_task_and_model_rejected(module_runs, tiny_run_request):
    body = {**tiny_run_request(), "task": "sorting", "model": "gru"}
    response = post_run(module_runs, body)
    assert response.status_code == 422
    fields = {error["loc"][-1] for error in response.json()["detail"]}
    assert fields == {"task", "model"}


def test_non_finite_number_rejected(module_runs, tiny_run_request):
    text = '{"task": "tracking-grid", "model": "lstm", "steps": 10, "learning_rate": NaN}'
    response = module_runs.http.post(
        "/api/runs", content=text, headers={"content-type": "application/json"}
    )
    error = only_error(response)
    assert error["loc"] == ["body", "learning_rate"]


def test_warmup_longer_than_training(module_runs, tiny_run_request):
    error = only_error(post_run(module_runs, tiny_run_request(steps=10, warmup_steps=20)))
    assert error["loc"] == ["body", "warmup_steps"]
    assert "at most steps (10)" in error["msg"]


def test_too_many_metric_rows(module_runs, tiny_run_request):
    body = tiny_run_request(steps=limits.MAX_STEPS, log_interval=1)
    error = only_error(post_run(module_runs, body))
    assert error["loc"] == ["body", "log_interval"]
    assert str(limits.MAX_METRIC_ROWS) in error["msg"]


def test_memory_width_over_model_limit(module_runs, tiny_run_request):
    body = tiny_run_request(model_options={"head_size": 512, "num_heads": 8})
    response = post_run(module_runs, body)
    assert response.status_code == 422
    assert "4096" in response.text


PAPER_RMC = {
    "mem_slots": 8,
    "head_size": 32,
    "num_heads": 8,
    "readout_hidden": [256, 256, 256, 256],
}


def errors_by_location(response) -> dict[tuple, dict]:
    assert response.status_code == 422, response.text
    return {tuple(error["loc"]): error for error in response.json()["detail"]}


def test_estimated_memory_over_limit(module_runs, tiny_run_request):
    body = tiny_run_request(
        task="nth-farthest", task_options={}, model_options=PAPER_RMC, batch_size=4096
    )
    errors = errors_by_location(post_run(module_runs, body))
    assert set(errors) == {("body", "batch_size"), ("body", "model_options")}
    message = errors[("body", "batch_size")]["msg"]
    assert errors[("body", "model_options")]["msg"] == message
    assert "GiB" in message
    assert "4096" in message
    assert "mem_slots, num_heads, head_size or readout_hidden" in message


def test_estimated_compute_over_limit(module_runs, tiny_run_request):
    body = tiny_run_request(
        task="nth-farthest",
        task_options={},
        model_options=PAPER_RMC,
        batch_size=1600,
        steps=limits.MAX_STEPS,
        log_interval=1000,
    )
    errors = errors_by_location(post_run(module_runs, body))
    assert set(errors) == {("body", "steps"), ("body", "batch_size")}
    message = errors[("body", "steps")]["msg"]
    assert errors[("body", "batch_size")]["msg"] == message
    assert errors[("body", "steps")]["input"] == limits.MAX_STEPS
    assert errors[("body", "batch_size")]["input"] == 1600
    assert "floating-point operations" in message
    assert "steps × batch_size = 1,000,000 × 1600 = 1,600,000,000" in message
    assert "fewer steps or a smaller batch_size" in message


def test_parameter_count_blames_model_options(module_runs, tiny_run_request):
    body = tiny_run_request(
        model_options={"mem_slots": 64, "num_heads": 4, "head_size": 512}, steps=10
    )
    errors = errors_by_location(post_run(module_runs, body))
    assert set(errors) == {("body", "model_options")}
    message = errors[("body", "model_options")]["msg"]
    assert "parameters, more than the limit of 16,000,000" in message
    assert "reduce mem_slots, num_heads, head_size or readout_hidden" in message


@pytest.mark.parametrize("path", ["/api/runs", "/api/pairs", "/api/sweeps", "/api/sequences"])
def test_body_not_json_rejected(module_runs, path):
    response = module_runs.http.post(
        path, content=b"notjson", headers={"content-type": "application/json"}
    )
    error = only_error(response)
    assert error["loc"] == ["body"]
    assert error["type"] == "json_invalid"
    assert error["msg"] == ("request body is not valid JSON: Expecting value at line 1 column 1")
    assert error["input"] == "notjson"


def test_json_error_names_line_and_column(module_runs):
    response = module_runs.http.post(
        "/api/runs",
        content=b'{"task": "tracking-grid",\n  "model": rmc}',
        headers={"content-type": "application/json"},
    )
    error = only_error(response)
    assert error["msg"] == "request body is not valid JSON: Expecting value at line 2 column 12"


def test_rejected_requests_store_nothing(module_runs, tiny_run_request):
    post_run(module_runs, tiny_run_request(steps=0))
    post_run(module_runs, tiny_run_request(task_options={"grid_size": 1}))
    assert module_runs.http.get("/api/runs").json() == []


def test_oversized_body_rejected(module_runs):
    body = b'{"task": "' + b"x" * (3 * 2**20) + b'"}'
    response = module_runs.http.post(
        "/api/runs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["detail"]


def test_tasks_lists_specs_and_presets(module_runs):
    specs = module_runs.http.get("/api/tasks").json()
    tasks = {task["name"]: task for task in specs["tasks"]}
    assert set(tasks) == {"tracking-grid", "tracking", "nth-farthest"}
    grid_options = {option["name"]: option for option in tasks["tracking-grid"]["options"]}
    assert grid_options["num_objects"]["max"] == 10
    assert {model["kind"] for model in specs["models"]} == {"rmc", "lstm"}
    training = {option["name"]: option for option in specs["training"]}
    assert training["steps"]["max"] == limits.MAX_STEPS
    assert training["batch_size"]["min"] == 1
    names = [preset["name"] for preset in specs["presets"]]
    assert names == ["seed", "paper", "relational", "relational-curriculum"]
    assert specs["presets"][1]["too_slow_for_laptop"] is True


def all_preset_requests():
    for preset in PRESETS:
        for body in preset["runs"]:
            yield preset["name"], body
        for body in preset.get("alternative", {}).get("runs", []):
            yield preset["alternative"]["name"], body


@pytest.mark.parametrize(("preset", "body"), list(all_preset_requests()))
def test_preset_requests_are_valid(preset, body):
    resolved = resolve_run(RunCreate.model_validate(body))
    assert resolved.config["model"] == body["model"]
    assert resolved.cost.parameters <= limits.MAX_PARAMETERS
