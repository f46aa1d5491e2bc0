"""The OpenAPI docs render in Chromium from this server alone, under its Content-Security-Policy."""

from urllib.parse import urlsplit

from playwright.sync_api import expect


def test_docs_render_without_other_hosts(live_server, page):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/docs")

    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() >= 5
    expect(page.locator(".opblock-summary-path").filter(has_text="/api/runs").first).to_be_visible()

    origins = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
    assert origins == {f"127.0.0.1:{live_server.port}"}
    assert page.js_errors == []
    assert not [error for error in page.console_errors if "Content Security Policy" in error]


def test_pages_run_under_content_security_policy(live_server, page, tiny_run_request):
    with live_server.client() as client:
        response = client.post("/api/runs", json=tiny_run_request("rmc"))
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]

    # The run page streams the run over its websocket and plots the loss with Plotly.
    page.goto(f"{live_server.url}/runs/{run_id}")
    expect(page.get_by_test_id("progress-text")).to_contain_text("40 / 40 steps")
    expect(page.locator("#run-page .js-plotly-plot").first).to_be_visible()

    page.goto(f"{live_server.url}/explore?run={run_id}&seed=1")
    expect(page.locator("#attention-chart")).to_have_attribute("data-timestep", "0")

    page.goto(f"{live_server.url}/")
    expect(page.get_by_test_id(f"run-row-{run_id}")).to_be_visible()

    assert page.js_errors == []
    assert not [error for error in page.console_errors if "Content Security Policy" in error]
