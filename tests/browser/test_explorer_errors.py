"""The explorer reports a run it cannot open in its message box."""

from playwright.sync_api import expect


def test_unknown_run_shows_message(live_server, page):
    page.goto(f"{live_server.url}/explore?run=0123456789ab&seed=2")

    message = page.get_by_test_id("message-box")
    expect(message).to_be_visible()
    expect(message.locator("p")).to_have_text("No run has the id 0123456789ab.")
    expect(page.get_by_test_id("explore-results")).to_be_hidden()
    assert page.js_errors == []


def test_run_without_checkpoint_not_offered(live_server, page, tiny_run_request):
    with live_server.client() as client:
        response = client.post("/api/runs", json=tiny_run_request("rmc", steps=100_000))
        assert response.status_code == 201, response.text
        run = response.json()

        # A run without a checkpoint is not offered; asking for it by URL shows why.
        page.goto(f"{live_server.url}/explore?run={run['id']}")
        message = page.get_by_test_id("message-box")
        expect(message).to_be_visible()
        expect(message).to_contain_text(f"Run {run['id']} is ")
        expect(message).to_contain_text("has no checkpoint yet. It saves one when training ends.")
        options = page.locator("#explore-run option").all_inner_texts()
        assert all(run["name"] not in option for option in options)

        client.post(f"/api/runs/{run['id']}/cancel")
