"""Explorer endpoints on a live server: generated sequences and traced predictions."""

import math

import numpy as np
import pytest

# tracking-grid with 2 objects and 4 moves: T = 5 steps of [one-hot id (2), x, y], O = 2.
GRID_OPTIONS = {"num_objects": 2, "num_steps": 4}
GRID_STEPS, GRID_INPUT, GRID_OUTPUT = 5, 4, 2
# nth-farthest with K = 4 vectors of 4 dimensions: T = K, D = 4 + 3K, O = K classes.
NTH_OPTIONS = {"num_vectors": 4, "vector_dim": 4}


def shape(nested) -> tuple[int, ...]:
    """Return the shape of a rectangular nested list."""
    dims = []
    while isinstance(nested, list):
        dims.append(len(nested))
        nested = nested[0]
    return tuple(dims)


@pytest.fixture(scope="module")
def trained(module_runs, tiny_run_request):
    """Return completed runs by label.

    The runs are an RMC and an LSTM on tracking-grid with ``GRID_OPTIONS``, a gateless
    two-block RMC, and an LSTM on nth-farthest.
    """
    make = tiny_run_request
    bodies = {
        "rmc": make("rmc"),
        "lstm": make("lstm"),
        "rmc-plain": make(
            "rmc",
            model_options={"mem_slots": 3, "head_size": 4, "gate_style": None, "num_blocks": 2},
        ),
        "lstm-nth": make("lstm", task="nth-farthest", task_options=NTH_OPTIONS),
    }
    created = {label: module_runs.create(body) for label, body in bodies.items()}
    runs = {label: module_runs.wait_for(run["id"]) for label, run in created.items()}
    for label, run in runs.items():
        assert run["status"] == "completed", (label, run["error"])
    return runs


def predict(module_runs, run, **body):
    return module_runs.http.post(f"/api/runs/{run['id']}/predict", json=body)


def test_sequence_of_tracking_grid(module_runs):
    body = {"task": "tracking-grid", "task_options": GRID_OPTIONS, "seed": 7}
    sequence = module_runs.http.post("/api/sequences", json=body).json()
    assert sequence["task"] == "tracking-grid"
    assert sequence["task_options"] == {"num_objects": 2, "grid_size": 5, "num_steps": 4}
    assert shape(sequence["inputs"]) == (GRID_STEPS, GRID_INPUT)
    assert len(sequence["target"]) == GRID_OUTPUT
    info = sequence["info"]
    assert shape(info["positions"]) == (GRID_STEPS, 2, 2)
    assert len(info["observed_object"]) == GRID_STEPS
    assert info["query_object"] in (0, 1)

    again = module_runs.http.post("/api/sequences", json=body).json()
    assert again == sequence
    other = module_runs.http.post("/api/sequences", json={**body, "seed": 8}).json()
    assert other["inputs"] != sequence["inputs"]


def test_sequence_of_nth_farthest(module_runs):
    body = {"task": "nth-farthest", "task_options": NTH_OPTIONS, "seed": 1}
    sequence = module_runs.http.post("/api/sequences", json=body).json()
    assert shape(sequence["inputs"]) == (4, 4 + 3 * 4)
    assert sequence["target"] in range(4)
    assert shape(sequence["info"]["vectors"]) == (4, 4)
    assert sorted(sequence["info"]["ranking"]) == [0, 1, 2, 3]


def test_sequence_rejects_bad_option(module_runs):
    body = {"task": "tracking", "task_options": {"noise_std": 5.0}}
    response = module_runs.http.post("/api/sequences", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "task_options"]


def test_sequence_rejects_option_called_name(module_runs):
    """An option named like make_task's own argument gets a 422, not a 500."""
    body = {"task": "tracking-grid", "task_options": {"name": 1}, "seed": 1}
    response = module_runs.http.post("/api/sequences", json=body)
    assert response.status_code == 422
    assert "unknown option 'name'" in response.json()["detail"][0]["msg"]


def test_rmc_prediction_and_trace_shapes(module_runs, trained):
    result = predict(module_runs, trained["rmc"], seed=5)
    assert result.status_code == 200, result.text
    result = result.json()
    assert result["model"] == "rmc"
    assert len(result["prediction"]) == GRID_OUTPUT
    assert result["probabilities"] is None
    assert result["loss"] >= 0
    sequence = module_runs.http.post(
        "/api/sequences", json={"task": "tracking-grid", "task_options": GRID_OPTIONS, "seed": 5}
    ).json()
    assert result["inputs"] == sequence["inputs"]
    assert result["target"] == sequence["target"]
    assert result["info"] == sequence["info"]

    trace = result["trace"]
    # [T][L][H][N+1][N+1] with N = 2 slots, H = 2 heads, L = 1 block
    assert shape(trace["attention"]) == (GRID_STEPS, 1, 2, 3, 3)
    for row in trace["attention"][-1][0][1]:
        assert math.isclose(sum(row), 1.0, rel_tol=1e-5)
    for key in ("input_gate", "forget_gate", "memory_norm"):
        assert shape(trace[key]) == (GRID_STEPS, 2), key
    assert all(0.0 < value < 1.0 for step in trace["forget_gate"] for value in step)
    assert all(value >= 0.0 for step in trace["memory_norm"] for value in step)


def test_rmc_without_gates_has_null_gates(module_runs, trained):
    trace = predict(module_runs, trained["rmc-plain"], seed=0).json()["trace"]
    assert shape(trace["attention"]) == (GRID_STEPS, 2, 1, 4, 4)
    assert trace["input_gate"] is None
    assert trace["forget_gate"] is None
    assert shape(trace["memory_norm"]) == (GRID_STEPS, 3)


def test_lstm_prediction_and_trace_shapes(module_runs, trained):
    result = predict(module_runs, trained["lstm"], seed=5).json()
    assert result["model"] == "lstm"
    trace = result["trace"]
    assert set(trace) == {"input_gate", "forget_gate", "output_gate", "cell", "hidden"}
    for key, values in trace.items():
        assert shape(values) == (GRID_STEPS, 8), key


def test_posted_inputs_give_the_seeded_prediction(module_runs, trained):
    seeded = predict(module_runs, trained["rmc"], seed=11).json()
    posted = predict(
        module_runs, trained["rmc"], inputs=seeded["inputs"], target=seeded["target"]
    ).json()
    assert posted["seed"] is None
    assert posted["info"] is None
    assert posted["prediction"] == pytest.approx(seeded["prediction"])
    assert posted["loss"] == pytest.approx(seeded["loss"])
    np.testing.assert_allclose(posted["trace"]["attention"], seeded["trace"]["attention"])


def test_classifier_returns_probabilities(module_runs, trained):
    result = predict(module_runs, trained["lstm-nth"], seed=2).json()
    assert len(result["prediction"]) == 4
    assert math.isclose(sum(result["probabilities"]), 1.0, rel_tol=1e-6)
    assert result["target"] in range(4)
    assert result["loss"] > 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": [[0.0] * 3] * GRID_STEPS}, "inputs"),
        ({"inputs": [[0.0] * 4, [0.0] * 5]}, "inputs"),
        ({"inputs": [[0.0] * 4] * 300}, "inputs"),
        ({"inputs": [[0.0] * 4], "target": [1.0]}, "target"),
        ({"inputs": [[0.0] * 4], "target": 1}, "target"),
        ({"seed": 1, "inputs": [[0.0] * 4]}, None),
        ({"seed": 1, "target": [0.0, 0.0]}, None),
        ({}, None),
        ({"seed": -1}, "seed"),
        ({"seed": 1, "trace": False}, "trace"),
    ],
)
def test_predict_rejects_bad_sequences(module_runs, trained, body, field):
    response = predict(module_runs, trained["rmc"], **body)
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    if field is not None:
        assert any(field in location for location in locations), locations


def test_predict_rejects_non_finite_inputs(module_runs, trained):
    response = module_runs.http.post(
        f"/api/runs/{trained['rmc']['id']}/predict",
        content='{"inputs": [[1.0, 0.0, NaN, 0.2]]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "inputs", 0, 2]


@pytest.mark.parametrize("label", ["rmc", "lstm"])
def test_predict_rejects_overflowing_inputs(module_runs, trained, label):
    response = predict(module_runs, trained[label], inputs=[[1e308] * GRID_INPUT] * 3)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "inputs"]
    assert "the model's output is not finite" in error["msg"]
    assert "largest magnitude is 1e+308" in error["msg"]


def test_classifier_rejects_label_out_of_range(module_runs, trained):
    inputs = predict(module_runs, trained["lstm-nth"], seed=2).json()["inputs"]
    response = predict(module_runs, trained["lstm-nth"], inputs=inputs, target=4)
    assert response.status_code == 422
    assert "from 0 to 3" in response.json()["detail"][0]["msg"]
