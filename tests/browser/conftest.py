"""Headless Chromium through Playwright's sync API, for the browser tests.

The browser is Debian's Chromium at /usr/bin/chromium (Playwright's own browser downloads
are not used). Without it the tests are skipped, except under CI (the ``CI`` environment
variable set), where a missing browser fails the run.
"""

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

# Playwright's timeout for each action and assertion, in milliseconds.
DEFAULT_TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(items):
    browser_tests = Path(__file__).parent
    for item in items:
        if browser_tests in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    """One Chromium with a fresh profile directory for the whole session."""
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM}; install it with `apt-get install chromium`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=tmp_path_factory.mktemp("chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    """A new tab. ``page.js_errors`` collects uncaught script errors and
    ``page.console_errors`` console errors (which include failed requests, such as a 422)."""
    page = browser_context.new_page()
    page.js_errors = []
    page.console_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            page.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    yield page
    page.close()


@pytest.fixture(scope="session")
def artifacts():
    """Folder for screenshots (test-artifacts/browser, ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
