"""Launch a small sweep from the sweeps page and watch its heatmap fill as runs finish."""

import json
import re
from pathlib import Path

from playwright.sync_api import expect

SWEEP_TIMEOUT_MS = 120_000


def test_launch_sweep_and_watch_heatmap_fill(live_server, page, artifacts):
    page.goto(f"{live_server.url}/sweeps")
    expect(page.get_by_test_id("sweep-form")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("sweep-task").select_option("tracking-grid")
    page.get_by_test_id("sweep-model").select_option("rmc")
    page.get_by_test_id("sweep-name").fill("browser sweep")
    page.get_by_test_id("sweep-steps").fill("20")
    page.get_by_test_id("sweep-batch").fill("8")
    page.get_by_test_id("sweep-eval-size").fill("16")
    page.get_by_test_id("sweep-seeds").fill("0, 1")
    page.get_by_test_id("sweep-task-options").fill('{"num_objects": 2, "num_steps": 4}')
    page.get_by_test_id("sweep-model-options").fill('{"head_size": 8}')
    page.get_by_test_id("sweep-axis-0").select_option("model_options.mem_slots")
    page.get_by_test_id("sweep-values-0").fill("1, 2")
    page.get_by_test_id("sweep-axis-1").select_option("model_options.num_heads")
    page.get_by_test_id("sweep-values-1").fill("1, 2")
    page.get_by_test_id("sweep-launch").click()

    page.wait_for_url("**/sweeps/*")
    heatmap = page.get_by_test_id("sweep-heatmap")
    expect(heatmap).to_have_attribute("data-cells", "4")
    expect(page.get_by_test_id("sweep-name")).to_have_text("browser sweep")
    # The heatmap fills from the websocket's status messages, without a reload.
    expect(heatmap).to_have_attribute("data-filled", "4", timeout=SWEEP_TIMEOUT_MS)
    expect(page.get_by_test_id("sweep-status")).to_contain_text("completed")
    expect(page.get_by_test_id("sweep-summary")).to_contain_text("8 of 8 runs finished")

    hover = page.evaluate("() => document.getElementById('sweep-heatmap').data[0].text[0][0]")
    assert "± " in hover
    assert "over 2 seeds" in hover
    assert "seed 1:" in hover
    expect(heatmap.locator(".modebar-btn[data-title='Download plot as a PNG']")).to_have_count(1)

    # Click a cell to list its runs.
    box = heatmap.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    expect(page.get_by_test_id("cell-panel")).to_be_visible()
    expect(page.get_by_test_id("cell-runs").locator("li")).to_have_count(2)
    expect(page.get_by_test_id("cell-compare")).to_have_attribute(
        "href", re.compile(r"^/compare\?runs=[0-9a-f]{12},[0-9a-f]{12}$")
    )

    rows = page.get_by_test_id("sweep-cells").locator("tbody tr")
    expect(rows).to_have_count(4)
    with page.expect_download() as download:
        page.get_by_test_id("export-sweep-cells-csv").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == (
        "model_options.mem_slots,model_options.num_heads,runs finished,mean,std,values"
    )
    assert len(lines) == 5
    with page.expect_download() as download:
        page.get_by_test_id("export-sweep-cells-json").click()
    records = json.loads(Path(download.value.path()).read_text())
    assert records[0]["runs finished"] == "2 / 2"
    page.screenshot(path=artifacts / "sweep.png", full_page=True)
    assert page.js_errors == []
    assert page.console_errors == []


def test_sweep_form_errors_beside_fields(live_server, page):
    page.goto(f"{live_server.url}/sweeps")
    expect(page.get_by_test_id("sweep-form")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("sweep-model").select_option("rmc")
    page.get_by_test_id("sweep-model-options").fill("{head_size: 8}")
    page.get_by_test_id("sweep-launch").click()
    model_error = page.get_by_test_id("sweep-model-options-error")
    expect(model_error).to_have_text(
        'Model options must be a JSON object such as {"head_size": 16}, got {head_size: 8}'
    )

    page.get_by_test_id("sweep-model-options").fill("")
    page.get_by_test_id("sweep-axis-0").select_option("model_options.mem_slots")
    page.get_by_test_id("sweep-values-0").fill("")
    page.get_by_test_id("sweep-axis-1").select_option("")
    page.get_by_test_id("sweep-seeds").fill("x")
    page.get_by_test_id("sweep-launch").click()
    expect(model_error).to_have_count(0)
    expect(page.get_by_test_id("sweep-values-0-error")).to_have_text(
        "grid.model_options.mem_slots needs at least 1 value"
    )
    expect(page.get_by_test_id("sweep-seeds-error")).to_have_text(
        "seeds[0] must be an integer, got 'x'"
    )

    page.get_by_test_id("sweep-values-0").fill("two")
    page.get_by_test_id("sweep-seeds").fill("0")
    page.get_by_test_id("sweep-launch").click()
    expect(page.get_by_test_id("sweep-values-0-error")).to_contain_text(
        "grid cell mem_slots=two: model_options.mem_slots must be"
    )
    assert "{" not in page.get_by_test_id("sweep-values-0-error").text_content()
    assert page.js_errors == []
