"""Select two finished runs on the dashboard and compare them."""

import time

from playwright.sync_api import expect

FINISHED = {"completed", "failed", "cancelled", "interrupted"}


def wait_until_finished(client, run_id, timeout_s=90.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in FINISHED:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish within {timeout_s} s")


def test_compare_two_runs(live_server, page, artifacts, tiny_run_request):
    with live_server.client() as client:
        runs = []
        for body in [tiny_run_request("rmc", seed=1), tiny_run_request("lstm", seed=1)]:
            response = client.post("/api/runs", json=body)
            assert response.status_code == 201, response.text
            runs.append(response.json())
        finished = [wait_until_finished(client, run["id"]) for run in runs]
    assert [run["status"] for run in finished] == ["completed", "completed"]
    rmc, lstm = finished

    # Select both on the dashboard and press Compare.
    page.goto(f"{live_server.url}/")
    expect(page.get_by_test_id("compare-button")).to_be_disabled()
    page.get_by_test_id(f"select-{rmc['id']}").check()
    page.get_by_test_id(f"select-{lstm['id']}").check()
    page.get_by_test_id("compare-button").click()
    expect(page.locator("body")).to_have_attribute("data-compared", "2")
    ids_in_url = page.url.split("runs=", 1)[1].split(",")
    assert sorted(ids_in_url) == sorted([rmc["id"], lstm["id"]])

    # One test-loss curve per run, with every evaluation.
    curves = page.evaluate(
        "() => document.getElementById('compare-loss-chart').data"
        ".map((trace) => ({name: trace.name, points: trace.x.length}))"
    )
    assert sorted(curve["name"] for curve in curves) == sorted([rmc["name"], lstm["name"]])
    assert all(curve["points"] == 2 for curve in curves)

    # Final metrics beside the task's baselines.
    final_rows = page.locator("#compare-final-table tbody tr")
    expect(final_rows).to_have_count(2)
    header = page.locator("#compare-final-table thead")
    for name in rmc["final_metrics"]["baselines"]:
        expect(header).to_contain_text(f"{name} baseline")

    # Only the fields that differ: the model and its options, not the shared seed or task.
    config_table = page.locator("#compare-config-table tbody")
    expect(config_table.locator('tr[data-field="model"]')).to_have_count(1)
    expect(config_table.locator('tr[data-field="model_options.mem_slots"]')).to_have_count(1)
    expect(config_table.locator('tr[data-field="seed"]')).to_have_count(0)
    expect(config_table.locator('tr[data-field="task"]')).to_have_count(0)

    # The log-axis toggle switches the loss axis.
    page.get_by_test_id("compare-log-scale").check()
    page.wait_for_function(
        "() => document.getElementById('compare-loss-chart').layout.yaxis.type === 'log'"
    )
    page.screenshot(path=artifacts / "compare.png", full_page=True)
    assert page.js_errors == []
    assert page.console_errors == []
