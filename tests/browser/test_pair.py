"""Launch a parameter-matched RMC + LSTM pair from the dashboard and watch both live."""

from playwright.sync_api import expect

TRAINING_TIMEOUT_MS = 90_000
SMALL_PAIR = {
    "field-task-num_objects": "2",
    "field-task-num_steps": "4",
    "field-rmc-mem_slots": "2",
    "field-rmc-head_size": "8",
    "field-rmc-num_heads": "2",
    "field-train-steps": "60",
    "field-train-batch_size": "8",
    "field-train-eval_interval": "20",
    "field-train-eval_size": "16",
    "field-train-log_interval": "10",
    "field-train-seed": "4",
}


def test_pair_launch_shows_both_curves_and_difference(live_server, page, artifacts):
    page.goto(f"{live_server.url}/")
    expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
    page.select_option("#field-task", "tracking-grid")
    expect(page.get_by_test_id("match-parameters-checkbox")).to_be_hidden()
    page.get_by_test_id("pair-checkbox").check()
    page.get_by_test_id("match-parameters-checkbox").check()
    for field_id, value in SMALL_PAIR.items():
        page.fill(f"#{field_id}", value)
    page.click("#launch-button")

    expect(page.get_by_test_id("launched-link")).to_have_count(2)
    expect(page.get_by_test_id("launch-status")).to_contain_text("LSTM hidden size")
    page.get_by_test_id("pair-link").click()

    expect(page).to_have_url(f"{live_server.url}/compare?" + page.url.split("?", 1)[1])
    assert page.url.endswith("&live=1")
    expect(page.get_by_test_id("compare-connection")).to_have_text("Live")
    # Both curves and their difference fill in from the websockets: evaluations at 20, 40, 60.
    expect(page.get_by_test_id("compare-difference-chart")).to_have_attribute(
        "data-points", "3", timeout=TRAINING_TIMEOUT_MS
    )
    names = page.evaluate(
        "() => document.getElementById('compare-loss-chart').data.map((trace) => trace.name)"
    )
    assert [name.split("-")[0] for name in names] == ["rmc", "lstm"]
    expect(page.locator("#compare-final-table tbody tr")).to_have_count(2)
    expect(page.locator("#compare-final-table tbody")).not_to_contain_text("running")

    # Smoothing changes the plotted values but not the steps.
    raw = page.evaluate("() => document.getElementById('compare-loss-chart').data[0].y")
    page.get_by_test_id("compare-smoothing").fill("0.5")
    smoothed = page.evaluate("() => document.getElementById('compare-loss-chart').data[0].y")
    assert len(smoothed) == len(raw) == 3
    assert smoothed[0] == raw[0]
    assert smoothed[1] != raw[1]

    page.screenshot(path=artifacts / "pair-compare.png", full_page=True)
    assert page.js_errors == []
    assert page.console_errors == []
