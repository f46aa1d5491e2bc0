"""The explorer's batch analysis: an RMC beside an LSTM on the same sequences."""

from playwright.sync_api import expect
from test_compare import wait_until_finished


def test_analysis_panel_compares_connectivity(live_server, page, artifacts, tiny_run_request):
    with live_server.client() as client:
        created = []
        for body in (tiny_run_request("rmc", seed=2), tiny_run_request("lstm", seed=2)):
            response = client.post("/api/runs", json=body)
            assert response.status_code == 201, response.text
            created.append(response.json())
        rmc, lstm = (wait_until_finished(client, run["id"]) for run in created)
    assert rmc["status"] == lstm["status"] == "completed"

    page.goto(f"{live_server.url}/explore?run={rmc['id']}&seed=3")
    expect(page.get_by_test_id("analysis-form")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("trace-download")).to_have_attribute(
        "href", f"/api/runs/{rmc['id']}/trace.npz?seed=3"
    )
    page.get_by_test_id("analysis-other").select_option(lstm["id"])
    page.get_by_test_id("analysis-batch").fill("16")
    page.get_by_test_id("analysis-button").click()

    expect(page.get_by_test_id("analysis-panel")).to_have_attribute("data-analysed", rmc["id"])
    expect(page.get_by_test_id("connectivity-chart")).to_have_attribute("data-runs", "2")
    expect(page.get_by_test_id("analysis-summary")).to_contain_text("RMC over 16 sequences")
    expect(page.get_by_test_id("slot-table").locator("tbody tr")).to_have_count(2)
    for chart in ("slot-usage-chart", "received-chart", "entropy-chart", "object-attention-chart"):
        expect(page.get_by_test_id(chart).locator(".main-svg").first).to_be_visible()
    shares = page.evaluate(
        "() => document.getElementById('connectivity-chart').data"
        ".map((trace) => trace.y.reduce((sum, value) => sum + value, 0))"
    )
    assert [round(total, 6) for total in shares] == [1.0, 1.0]
    names = page.evaluate(
        "() => document.getElementById('connectivity-chart').data.map((trace) => trace.name)"
    )
    assert names == [f"{rmc['name']} (rmc)", f"{lstm['name']} (lstm)"]
    entropy_labels = page.evaluate(
        "() => document.getElementById('entropy-chart').layout.annotations.map((a) => a.text)"
    )
    assert entropy_labels == ["max entropy (uniform attention)"]
    expect(page.get_by_test_id("analysis-block")).to_be_visible()

    # Sequence 0 of the batch: the same sequence for both runs.
    page.get_by_test_id("analysis-connectivity").select_option("first")
    hover = page.evaluate("() => document.getElementById('connectivity-chart').data[1].customdata")
    response = page.request.post(
        f"{live_server.url}/api/runs/{lstm['id']}/analysis", data={"seed": 3, "batch_size": 16}
    )
    assert hover == response.json()["connectivity"]["first"]

    trace = page.request.get(f"{live_server.url}/api/runs/{rmc['id']}/trace.npz?seed=3")
    assert trace.status == 200
    page.screenshot(path=artifacts / "explorer-analysis.png", full_page=True)
    page.get_by_test_id("analysis-panel").screenshot(path=artifacts / "analysis-panel.png")

    # An LSTM has no memory slots, blocks or heads: the panel hides what is about them.
    page.goto(f"{live_server.url}/explore?run={lstm['id']}&seed=3")
    expect(page.get_by_test_id("analysis-form")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("analysis-batch").fill("16")
    page.get_by_test_id("analysis-button").click()
    expect(page.get_by_test_id("analysis-panel")).to_have_attribute("data-analysed", lstm["id"])
    expect(page.get_by_test_id("analysis-block")).to_be_hidden()
    expect(page.get_by_test_id("analysis-head")).to_be_hidden()
    expect(page.get_by_test_id("slot-usage-chart")).to_be_hidden()
    expect(page.get_by_test_id("analysis-panel").get_by_text("A slot is unused")).to_be_hidden()
    page.get_by_test_id("analysis-panel").screenshot(path=artifacts / "analysis-panel-lstm.png")
    assert page.js_errors == []
    assert page.console_errors == []
