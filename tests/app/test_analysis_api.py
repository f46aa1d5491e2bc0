"""Batch analysis, trace downloads, run bundles and paired runs on a live server."""

import csv
import io
import math
import zipfile

import numpy as np
import pytest

import models
from models.analysis import input_gradient_norms


@pytest.fixture(scope="module")
def trained(module_runs, tiny_run_request):
    """A completed RMC and LSTM on the same task and seed."""
    created = [module_runs.create(tiny_run_request(kind)) for kind in ("rmc", "lstm")]
    finished = [module_runs.wait_for(run["id"]) for run in created]
    assert [run["status"] for run in finished] == ["completed", "completed"]
    return dict(zip(("rmc", "lstm"), finished, strict=True))


def test_rmc_analysis_shapes_and_definitions(module_runs, trained):
    run = trained["rmc"]
    response = module_runs.http.post(
        f"/api/runs/{run['id']}/analysis", json={"seed": 2, "batch_size": 16}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    steps, slots, heads = 5, 2, 2  # tracking-grid with 4 steps plus the query
    assert result["steps"] == steps
    assert result["num_slots"] == slots
    assert np.shape(result["attention_received"]) == (steps, 1, heads, slots + 1)
    assert np.shape(result["input_attention"]) == (steps, 1, heads, slots)
    assert np.shape(result["input_gate"]) == (steps, slots)
    assert np.shape(result["memory_change"]) == (steps, slots)
    assert np.shape(result["object_attention_correlation"]) == (slots, 2)
    # Every query row's weights sum to 1, so the mean received over N+1 keys is 1/(N+1).
    received = np.asarray(result["attention_received"]).sum(axis=-1)
    np.testing.assert_allclose(received, 1.0, rtol=1e-5)
    assert result["max_entropy"] == pytest.approx(math.log(slots + 1))
    assert np.all(np.asarray(result["entropy"]) <= result["max_entropy"] + 1e-6)
    assert set(result["unused_slots"]) <= set(range(slots))
    assert len(result["connectivity"]["mean"]) == steps
    assert result["output_gate"] is None


def test_same_seed_gives_same_sequences_for_both_models(module_runs, trained):
    results = {}
    for kind, run in trained.items():
        response = module_runs.http.post(
            f"/api/runs/{run['id']}/analysis", json={"seed": 5, "batch_size": 4}
        )
        assert response.status_code == 200, response.text
        results[kind] = response.json()
    lstm = results["lstm"]
    assert lstm["model"] == "lstm"
    assert len(lstm["output_gate"]) == 5
    assert lstm["attention_received"] is None
    assert lstm["unused_slots"] is None
    assert results["rmc"]["task_options"] == lstm["task_options"]

    # The LSTM trace of seed 5 matches its connectivity on the first sequence of the batch.
    task = models.make_task("tracking-grid", num_objects=2, num_steps=4)
    x, _, _ = task.sample_with_info(4, np.random.default_rng(5))
    checkpoint = module_runs.server.data_dir / "runs" / trained["lstm"]["id"] / "checkpoint.npz"
    expected = input_gradient_norms(models.load_checkpoint(checkpoint), x)[0]
    np.testing.assert_allclose(lstm["connectivity"]["first"], expected, rtol=1e-5)


def test_analysis_rejects_bad_batch_and_runs(module_runs, trained, tiny_run_request):
    http = module_runs.http
    path = f"/api/runs/{trained['rmc']['id']}/analysis"
    for size in (0, 257):
        response = http.post(path, json={"batch_size": size})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "batch_size"]
        assert "batch_size" in response.json()["detail"][0]["msg"]
    assert http.post("/api/runs/0123456789ab/analysis", json={}).status_code == 404

    queued = module_runs.create(
        tiny_run_request("lstm", steps=1_000_000, eval_interval=1_000_000, log_interval=50)
    )
    response = http.post(f"/api/runs/{queued['id']}/analysis", json={})
    assert response.status_code == 409
    assert "no checkpoint" in response.json()["detail"]
    http.post(f"/api/runs/{queued['id']}/cancel")
    module_runs.wait_for(queued["id"])


def test_trace_npz_matches_prediction(module_runs, trained):
    run = trained["rmc"]
    http = module_runs.http
    response = http.get(f"/api/runs/{run['id']}/trace.npz", params={"seed": 4})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert f"{run['name']}-trace-seed4.npz" in response.headers["content-disposition"]
    archive = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert archive["trace.attention"].shape == (5, 1, 2, 3, 3)
    assert archive["trace.memory"].shape == (5, 2, 16)
    assert archive["connectivity"].shape == (5,)
    assert archive["info.positions"].shape[0] == 5

    predicted = http.post(f"/api/runs/{run['id']}/predict", json={"seed": 4}).json()
    np.testing.assert_allclose(archive["trace.attention"], predicted["trace"]["attention"])
    np.testing.assert_allclose(archive["prediction"], predicted["prediction"])

    posted = http.post(f"/api/runs/{run['id']}/trace.npz", json={"inputs": predicted["inputs"][:3]})
    assert posted.status_code == 200, posted.text
    archive = np.load(io.BytesIO(posted.content), allow_pickle=False)
    assert archive["inputs"].shape == (3, 4)
    assert "target" not in archive.files
    bad = http.post(f"/api/runs/{run['id']}/trace.npz", json={"inputs": [[1.0, 2.0]]})
    assert bad.status_code == 422
    overflow = http.post(f"/api/runs/{run['id']}/trace.npz", json={"inputs": [[1e308] * 4] * 2})
    assert overflow.status_code == 422, overflow.text
    assert overflow.json()["detail"][0]["loc"] == ["body", "inputs"]


def test_bundle_contains_config_metrics_and_checkpoint(module_runs, trained, tmp_path):
    run = trained["lstm"]
    response = module_runs.http.get(f"/api/runs/{run['id']}/bundle")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    bundle = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(bundle.namelist()) == [
        "checkpoint.npz",
        "config.json",
        "metrics.csv",
        "metrics.json",
        "run.json",
    ]
    rows = list(csv.DictReader(io.StringIO(bundle.read("metrics.csv").decode())))
    assert [int(row["step"]) for row in rows] == [10, 20, 30, 40]
    bundle.extract("checkpoint.npz", tmp_path)
    model = models.load_checkpoint(tmp_path / "checkpoint.npz")
    assert model.param_count == run["param_count"]
    assert module_runs.http.get("/api/runs/0123456789ab/bundle").status_code == 404


def test_pair_matches_lstm_parameters_to_rmc(module_runs, tiny_run_request):
    http = module_runs.http
    base = tiny_run_request("rmc", seed=7, steps=10, eval_interval=10)
    response = http.post("/api/pairs", json={"base": base, "match_parameters": True})
    assert response.status_code == 201, response.text
    pair = response.json()
    rmc, lstm = pair["runs"]
    assert (rmc["model"], lstm["model"]) == ("rmc", "lstm")
    assert rmc["seed"] == lstm["seed"] == 7
    assert lstm["config"]["model_options"]["hidden_size"] == pair["lstm_hidden_size"]
    assert pair["url"] == f"/compare?runs={rmc['id']},{lstm['id']}&live=1"

    # The exact parameter counts after training: the LSTM is the closest size to the RMC.
    rmc, lstm = (module_runs.wait_for(run["id"]) for run in pair["runs"])
    assert rmc["param_count"] == pair["parameters"]["rmc"]
    assert lstm["param_count"] == pair["parameters"]["lstm"]
    task = models.make_task("tracking-grid", num_objects=2, num_steps=4)

    def lstm_count(units):
        return models.make_model(
            "lstm", input_size=task.input_size, output_size=2, hidden_size=units
        ).param_count

    gap = abs(lstm["param_count"] - rmc["param_count"])
    for neighbour in (pair["lstm_hidden_size"] - 1, pair["lstm_hidden_size"] + 1):
        assert gap <= abs(lstm_count(neighbour) - rmc["param_count"])

    rejected = http.post("/api/pairs", json={"base": tiny_run_request("lstm")})
    assert rejected.status_code == 422
    assert rejected.json()["detail"][0]["loc"] == ["body", "base", "model"]
    bad_lstm = http.post("/api/pairs", json={"base": base, "lstm_options": {"hidden_size": 0}})
    assert bad_lstm.status_code == 422
    assert bad_lstm.json()["detail"][0]["loc"] == ["body", "lstm_options", "hidden_size"]
