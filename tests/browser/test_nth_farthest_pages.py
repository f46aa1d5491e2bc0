"""N-th farthest in the pages: per-n curves and curriculum on the run page, the projection
and slot attention in the explorer, and the relational preset on the dashboard."""

import re

import numpy as np
import pytest
from playwright.sync_api import expect

TRAINING_TIMEOUT_MS = 90_000
TINY_RMC_NTH = {
    "task": "nth-farthest",
    "task_options": {"num_vectors": 4, "vector_dim": 2},
    "model": "rmc",
    "model_options": {"mem_slots": 2, "head_size": 4, "num_heads": 2},
    "steps": 12,
    "batch_size": 8,
    "eval_interval": 3,
    "eval_size": 64,
    "log_interval": 3,
    "seed": 0,
    "curriculum": [
        {"task_options": {"num_vectors": 2}, "threshold": 0.0},
        {"task_options": {"num_vectors": 3, "allowed_n": [0, 2]}, "threshold": 1.0, "max_steps": 4},
    ],
}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, start_live_server):
    """One server for the tests of this module; each test creates the runs it reads."""
    with start_live_server(tmp_path_factory.mktemp("nth-pages") / "data") as server:
        yield server


def chart_data(page, chart_id, expression):
    return page.evaluate(f"() => document.getElementById('{chart_id}').{expression}")


def test_run_page_and_explorer_show_nth_farthest(live_server, page, artifacts):
    with live_server.client() as http:
        response = http.post("/api/runs", json=TINY_RMC_NTH)
        assert response.status_code == 201, response.text
    run_id = response.json()["id"]

    # Run page: one accuracy curve per n, and the curriculum status.
    page.goto(f"{live_server.url}/runs/{run_id}")
    expect(page.locator("#run-page")).to_have_attribute(
        "data-status", "completed", timeout=TRAINING_TIMEOUT_MS
    )
    expect(page.get_by_test_id("per-n-chart")).to_be_visible()
    names = chart_data(page, "per-n-chart", "data.map((trace) => trace.name)")
    assert names == ["n = 0", "n = 1", "n = 2", "n = 3"]
    steps = chart_data(page, "per-n-chart", "data[0].x")
    assert steps == [3, 6, 9, 12]
    status = page.get_by_test_id("curriculum-status")
    expect(status).to_contain_text("training on the run's own task")
    expect(status).to_contain_text("Ended: stage 1 at step 3; stage 2 after step 6")
    expect(page.get_by_test_id("config-table")).to_contain_text("curriculum.2")
    final_table = page.get_by_test_id("final-table")
    expect(final_table).to_contain_text("final test accuracy, n = 3")
    stop_row = final_table.locator("tr", has_text="stopped by")
    expect(stop_row.locator("td")).to_have_text("all steps done")
    page.screenshot(path=artifacts / "nth-run-page.png", full_page=True)

    # Explorer: the vectors in 2-D, the ranking, and slot attention to each vector.
    page.goto(f"{live_server.url}/explore?run={run_id}&seed=3")
    projection = page.get_by_test_id("nth-projection-chart")
    expect(projection).to_have_attribute("data-timestep", "0")
    assert len(chart_data(page, "nth-projection-chart", "data[0].x")) == 4
    expect(page.get_by_test_id("nth-ranking")).to_contain_text("farthest first")
    expect(page.get_by_test_id("nth-ranking")).to_contain_text("(answer")

    attention = page.get_by_test_id("nth-input-attention-chart")
    expect(attention).to_be_visible()
    z = chart_data(page, "nth-input-attention-chart", "data[0].z")
    assert len(z) == 2 and all(len(row) == 4 for row in z)  # 2 slots x 4 steps
    assert all(0.0 <= value <= 1.0 for row in z for value in row)

    page.keyboard.press("ArrowRight")
    expect(projection).to_have_attribute("data-timestep", "1")
    expect(attention).to_have_attribute("data-timestep", "1")
    assert chart_data(page, "nth-input-attention-chart", "layout.shapes[0].x0") == 0.5
    page.select_option("#head-select", "1")
    expect(attention).to_have_attribute("data-head", "1")
    page.screenshot(path=artifacts / "nth-explorer.png", full_page=True)
    assert page.js_errors == []


def test_relational_preset_launches_pair_and_opens_compare(live_server, page):
    page.goto(f"{live_server.url}/")
    expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
    button = page.get_by_test_id("preset-relational")
    expect(button).to_contain_text("Relational reasoning (RMC paper): launch 2 runs")
    button.click()
    page.wait_for_url(re.compile(r"/compare\?runs=[0-9a-f]{12},[0-9a-f]{12}"))
    run_ids = re.search(r"runs=([0-9a-f,]+)", page.url).group(1).split(",")

    with live_server.client() as http:
        runs = [http.get(f"/api/runs/{run_id}").json() for run_id in run_ids]
        # The recipe runs for many minutes; these are stopped as soon as they are checked.
        for run_id in run_ids:
            http.post(f"/api/runs/{run_id}/cancel")
    assert [run["model"] for run in runs] == ["rmc", "lstm"]
    for run in runs:
        assert run["task"] == "nth-farthest"
        assert run["seed"] == 0
        assert run["config"]["batch_size"] == 512
        assert run["config"]["lr_schedule"] == "constant"
        assert run["config"]["time_limit_minutes"] == 30
    assert runs[0]["config"]["model_options"]["num_heads"] == 4
    assert page.js_errors == []


def test_pca_projection_matches_numpy(live_server, page):
    vectors = np.random.default_rng(4).uniform(-1, 1, size=(6, 5))
    page.goto(f"{live_server.url}/explore")
    projected = page.evaluate(
        """async (vectors) => {
            const module = await import("/static/js/explore_nth.js");
            return module.projectPca(vectors);
        }""",
        vectors.tolist(),
    )

    centred = vectors - vectors.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    expected = u[:, :2] * s[:2]  # (K, 2) coordinates on the first two principal axes
    points = np.array(projected["points"])
    # Each axis is defined up to its sign.
    for axis in range(2):
        sign = np.sign(points[:, axis] @ expected[:, axis])
        np.testing.assert_allclose(sign * points[:, axis], expected[:, axis], atol=1e-6)
    np.testing.assert_allclose(projected["explained"], s[:2] ** 2 / np.sum(s**2), atol=1e-9)
