"""A run request that the API rejects shows each error beside the field it names."""

import httpx
import pytest
from playwright.sync_api import expect


@pytest.mark.parametrize(
    ("field_id", "value"),
    [
        ("field-rmc-mem_slots", "1000"),
        ("field-train-steps", "0"),
    ],
)
def test_rejected_field_shows_error_beside_it(live_server, page, artifacts, field_id, value):
    page.goto(f"{live_server.url}/")
    expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
    page.select_option("#field-model", "rmc")
    page.fill(f"#{field_id}", value)

    with page.expect_response(lambda response: response.url.endswith("/api/runs")) as info:
        page.click("#launch-button")
    assert info.value.status == 422

    error_id = field_id.replace("field-", "error-", 1)
    error = page.locator(f"#{error_id}")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    expect(page.locator(f"#{field_id}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{field_id}")).to_be_focused()
    expect(page.locator(".field-error:visible")).to_have_count(1)
    page.screenshot(path=artifacts / f"validation-{field_id}.png", full_page=True)

    assert httpx.get(f"{live_server.url}/api/runs", timeout=5).json() == []
    assert page.js_errors == []


def test_fixed_field_clears_its_error(live_server, page):
    page.goto(f"{live_server.url}/")
    expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
    page.fill("#field-train-steps", "0")
    page.click("#launch-button")
    expect(page.locator("#error-train-steps")).to_be_visible()

    page.fill("#field-train-steps", "20")
    page.fill("#field-train-batch_size", "4")
    page.click("#launch-button")
    expect(page.get_by_test_id("launched-link")).to_have_count(1)
    expect(page.locator("#error-train-steps")).to_be_hidden()
    expect(page.locator("#field-train-steps")).not_to_have_attribute("aria-invalid", "true")
