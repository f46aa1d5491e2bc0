"""A run request that the API rejects shows each error beside the field it names."""

import json

import httpx
import pytest
from playwright.sync_api import expect


def open_launch_form(live_server, page, model=None):
    """Open the dashboard, wait until its launch form is built, and pick ``model`` if given."""
    page.goto(f"{live_server.url}/")
    expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
    if model is not None:
        page.select_option("#field-model", model)


@pytest.mark.parametrize(
    ("field_id", "value"),
    [
        ("field-rmc-mem_slots", "1000"),
        ("field-train-steps", "0"),
    ],
)
def test_rejected_field_shows_error_beside_it(live_server, page, artifacts, field_id, value):
    open_launch_form(live_server, page, model="rmc")
    page.fill(f"#{field_id}", value)

    with page.expect_response(lambda response: response.url.endswith("/api/runs")) as info:
        page.click("#launch-button")
    assert info.value.status == 422

    error_id = field_id.replace("field-", "error-", 1)
    error = page.locator(f"#{error_id}")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    # The message names the value once; the form adds no second "(got …)".
    expect(error).to_contain_text(f"got {value}")
    expect(error).not_to_contain_text("(got")
    expect(page.locator(f"#{field_id}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{field_id}")).to_be_focused()
    expect(page.locator(".field-error:visible")).to_have_count(1)
    page.screenshot(path=artifacts / f"validation-{field_id}.png", full_page=True)

    assert httpx.get(f"{live_server.url}/api/runs", timeout=5).json() == []
    assert page.js_errors == []


def test_fixed_field_clears_its_error(live_server, page):
    open_launch_form(live_server, page)
    page.fill("#field-train-steps", "0")
    page.click("#launch-button")
    expect(page.locator("#error-train-steps")).to_be_visible()

    page.fill("#field-train-steps", "20")
    page.fill("#field-train-batch_size", "4")
    page.click("#launch-button")
    expect(page.get_by_test_id("launched-link")).to_have_count(1)
    expect(page.locator("#error-train-steps")).to_be_hidden()
    expect(page.locator("#field-train-steps")).not_to_have_attribute("aria-invalid", "true")


def test_empty_required_field_not_posted(live_server, page):
    open_launch_form(live_server, page)
    posted = []
    page.on(
        "request", lambda request: posted.append(request.url) if request.method == "POST" else None
    )
    page.fill("#field-train-steps", "")
    page.click("#launch-button")

    expect(page.locator("#error-train-steps")).to_have_text("steps is required")
    expect(page.locator("#field-train-steps")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#field-train-steps")).to_be_focused()
    expect(page.locator(".field-error:visible")).to_have_count(1)
    assert posted == []
    assert httpx.get(f"{live_server.url}/api/runs", timeout=5).json() == []
    assert page.js_errors == []


def test_oversized_model_errors_beside_causes(live_server, page):
    open_launch_form(live_server, page, model="rmc")
    page.fill("#field-rmc-mem_slots", "64")
    page.fill("#field-rmc-num_heads", "4")
    page.fill("#field-rmc-head_size", "512")
    with page.expect_response(lambda response: response.url.endswith("/api/runs")) as info:
        page.click("#launch-button")
    assert info.value.status == 422

    group = page.get_by_test_id("error-group-rmc")
    expect(group).to_be_visible()
    expect(group).to_contain_text("parameters, more than the limit")
    for name in ("mem_slots", "num_heads", "head_size"):
        expect(page.locator(f"#field-rmc-{name}")).to_have_attribute("aria-invalid", "true")
    for field in ("steps", "batch_size"):
        error = page.locator(f"#error-train-{field}")
        expect(error).to_contain_text("steps × batch_size")
        expect(error).not_to_contain_text("(got")
    expect(page.get_by_text("The rmc run was rejected")).to_have_count(0)
    assert httpx.get(f"{live_server.url}/api/runs", timeout=5).json() == []
    assert page.js_errors == []


def test_readout_widths_list_forms(live_server, page):
    open_launch_form(live_server, page, model="rmc")
    page.fill("#field-train-steps", "20")
    page.fill("#field-train-batch_size", "4")

    # "[]", as the help suggests, is the empty list: a linear readout.
    page.fill("#field-rmc-readout_hidden", "[]")
    with page.expect_request(
        lambda request: request.url.endswith("/api/runs") and request.method == "POST"
    ) as info:
        page.click("#launch-button")
    assert json.loads(info.value.post_data)["model_options"]["readout_hidden"] == []
    expect(page.get_by_test_id("launched-link")).to_have_count(1)

    # An empty item is an error beside the field, not a dropped width.
    page.fill("#field-rmc-readout_hidden", "1,,2")
    with page.expect_response(lambda response: response.url.endswith("/api/runs")) as info:
        page.click("#launch-button")
    assert info.value.status == 422
    error = page.locator("#error-rmc-readout_hidden")
    expect(error).to_be_visible()
    expect(error).to_contain_text("1,,2")
    assert len(httpx.get(f"{live_server.url}/api/runs", timeout=5).json()) == 1
    assert page.js_errors == []


def test_hints_use_plain_words(live_server, page):
    open_launch_form(live_server, page, model="rmc")
    key_size = page.locator("#hint-rmc-key_size")
    expect(key_size).to_contain_text("leave empty to use head_size")
    expect(key_size).not_to_contain_text("empty for none")
    expect(page.locator("#hint-train-clip_norm")).to_contain_text("leave empty for no clipping")
    expect(page.locator("#hint-train-clip_norm")).to_contain_text("greater than 0, at most")
    expect(page.locator("#hint-train-learning_rate")).to_contain_text("greater than 0, at most 1")
    expect(page.locator("#hint-train-steps")).to_contain_text("1 to 1,000,000")
    for hint in page.locator("#launch-form .hint").all():
        expect(hint).not_to_contain_text("null")
    page.get_by_test_id("preset-seed").click()
    note = page.locator("#preset-note")
    expect(note).to_contain_text("the original object-tracking experiment")
    expect(note).not_to_contain_text("this tool grew from")
