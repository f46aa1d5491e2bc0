"""Launch a small run from the dashboard, watch it train, then scrub it in the explorer."""

import json
import re

from playwright.sync_api import expect

# A run small enough to finish in seconds on one core, with a metric row every 10 steps.
STEPS = 600
LOG_INTERVAL = 10
SMALL_RMC = {
    "field-task-num_steps": "6",
    "field-rmc-mem_slots": "2",
    "field-rmc-head_size": "8",
    "field-rmc-num_heads": "2",
    "field-train-steps": str(STEPS),
    "field-train-batch_size": "8",
    "field-train-eval_interval": "200",
    "field-train-eval_size": "256",
    "field-train-log_interval": str(LOG_INTERVAL),
    "field-train-seed": "0",
}

TRAINING_TIMEOUT_MS = 90_000


def attention_matrix(page):
    return page.evaluate(
        "() => JSON.stringify(document.getElementById('attention-chart').data[0].z)"
    )


def wait_for_timestep(page, t):
    expect(page.locator("#attention-chart")).to_have_attribute("data-timestep", str(t))
    expect(page).to_have_url(re.compile(rf"[?&]t={t}(&|$)"))


def test_launch_train_and_explore(live_server, page, artifacts):
    # Dashboard: fill the launch form and press Launch.
    page.goto(f"{live_server.url}/")
    expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
    page.select_option("#field-task", "tracking-grid")
    page.select_option("#field-model", "rmc")
    for field_id, value in SMALL_RMC.items():
        page.fill(f"#{field_id}", value)
    page.screenshot(path=artifacts / "1-dashboard-form.png", full_page=True)
    page.click("#launch-button")
    launched = page.get_by_test_id("launched-link")
    expect(launched).to_have_count(1)
    run_id = launched.get_attribute("href").rsplit("/", 1)[-1]
    expect(page.get_by_test_id(f"run-row-{run_id}")).to_be_visible()
    page.screenshot(path=artifacts / "2-dashboard-launched.png", full_page=True)

    # Run page: loss points arrive over the websocket, then the run completes.
    launched.click()
    expect(page).to_have_url(f"{live_server.url}/runs/{run_id}")
    page.wait_for_function(
        "() => document.getElementById('loss-chart').data?.[0]?.x.length > 0",
        timeout=TRAINING_TIMEOUT_MS,
    )
    page.screenshot(path=artifacts / "3-run-training.png", full_page=True)
    expect(page.locator("#run-page")).to_have_attribute(
        "data-status", "completed", timeout=TRAINING_TIMEOUT_MS
    )
    # Every metric row arrives once, whether in the snapshot or live: one train point per
    # log interval and one test point per evaluation (steps 200, 400 and 600).
    train_steps = page.evaluate("() => document.getElementById('loss-chart').data[0].x")
    test_steps = page.evaluate("() => document.getElementById('loss-chart').data[1].x")
    assert train_steps == list(range(LOG_INTERVAL, STEPS + 1, LOG_INTERVAL))
    assert test_steps == [200, 400, 600]
    expect(page.get_by_test_id("progress-text")).to_contain_text(f"{STEPS} / {STEPS} steps")
    expect(page.get_by_test_id("download-checkpoint")).to_be_visible()
    page.screenshot(path=artifacts / "4-run-completed.png", full_page=True)

    # The mode bar's PNG download is named after the run.
    run_name = page.locator("#run-name").inner_text()
    camera = page.locator("#loss-chart .modebar-btn[data-title^='Download plot']")
    with page.expect_download() as download:
        camera.click()
    assert download.value.suggested_filename == f"{run_name}-loss.png"

    # After a reload, the Log panel shows the finished run's stored lines from the snapshot.
    page.reload()
    expect(page.locator("#run-page")).to_have_attribute("data-status", "completed")
    log_lines = page.get_by_test_id("run-log").locator("li")
    expect(log_lines.filter(has_text="training completed")).to_have_count(1)
    expect(log_lines.filter(has_text="; baselines: ")).to_have_count(1)
    expect(page.locator("#log-empty")).to_be_hidden()

    # Explorer: opened from the run page, it predicts on seed 0 at once.
    page.get_by_test_id("explore-link").click()
    expect(page).to_have_url(re.compile(rf"/explore\?run={run_id}"))
    wait_for_timestep(page, 0)
    expect(page.get_by_test_id("trajectory-chart")).to_be_visible()

    # The seed box reads numbers as typed, "1e1" as 10, and rejects what is out of range.
    page.fill("#explore-seed", "1e1")
    with page.expect_response(
        lambda response: f"/api/runs/{run_id}/predict" in response.url
    ) as info:
        page.click("#generate-button")
    assert json.loads(info.value.request.post_data) == {"seed": 10}
    expect(page).to_have_url(re.compile(r"[?&]seed=10(&|$)"))
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.fill("#explore-seed", "1e30")
    page.click("#generate-button")
    message = page.get_by_test_id("message-box")
    expect(message).to_contain_text("seed must be a whole number from 0 to 4294967295, got '1e30'")
    assert not [url for url in requests if "/predict" in url]

    # Generate another sequence from a new seed.
    page.fill("#explore-seed", "3")
    with page.expect_response(
        lambda response: f"/api/runs/{run_id}/predict" in response.url
    ) as info:
        page.click("#generate-button")
    assert info.value.status == 200
    assert json.loads(info.value.request.post_data) == {"seed": 3}
    expect(page).to_have_url(re.compile(r"[?&]seed=3(&|$)"))
    expect(page.get_by_test_id("sequence-summary")).to_contain_text("Loss on this sequence")
    at_start = attention_matrix(page)
    page.screenshot(path=artifacts / "5-explorer-t0.png", full_page=True)

    # The slider moves the heatmap to another timestep.
    page.fill("#timestep", "4")
    wait_for_timestep(page, 4)
    at_four = attention_matrix(page)
    assert at_four != at_start
    expect(page.get_by_test_id("timestep-value")).to_have_text("4 of 6")

    # The right arrow key, pressed outside any input, steps forward once.
    page.locator("#sequence-heading").click()
    page.keyboard.press("ArrowRight")
    wait_for_timestep(page, 5)
    assert attention_matrix(page) != at_four
    page.screenshot(path=artifacts / "6-explorer-t5.png", full_page=True)

    # Space starts and stops playback.
    play = page.get_by_test_id("play-button")
    page.keyboard.press(" ")
    expect(play).to_have_attribute("aria-pressed", "true")
    page.keyboard.press(" ")
    expect(play).to_have_attribute("aria-pressed", "false")
    page.fill("#timestep", "5")
    wait_for_timestep(page, 5)

    # The head selector switches the heatmap to the other head.
    page.select_option("#head-select", "1")
    expect(page.locator("#attention-chart")).to_have_attribute("data-head", "1")
    expect(page).to_have_url(re.compile(r"[?&]head=1(&|$)"))

    # Reloading the URL restores the same view.
    before_reload = attention_matrix(page)
    page.reload()
    wait_for_timestep(page, 5)
    expect(page.locator("#explore-seed")).to_have_value("3")
    expect(page.locator("#timestep")).to_have_value("5")
    expect(page.locator("#head-select")).to_have_value("1")
    assert attention_matrix(page) == before_reload

    # For a link with values the view cannot show, a note names the values shown instead.
    page.goto(f"{live_server.url}/explore?run={run_id}&seed=-5&t=999&head=9")
    wait_for_timestep(page, 6)
    message = page.get_by_test_id("message-box")
    expect(message).to_contain_text("seed=-5 is not a whole number from 0, so seed=0 is shown")
    expect(message).to_contain_text("t=999 is out of range (7 in all), so t=6 is shown")
    expect(message).to_contain_text("head=9 is out of range (2 in all), so head=1 is shown")
    expect(page.locator("#head-select")).to_have_value("1")

    assert page.js_errors == []
    assert page.console_errors == []
