"""The HTML pages, their scripts and the local Plotly bundle, on a real server."""

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "static"


@pytest.fixture
def client(live_server):
    with live_server.client() as client:
        yield client


def assert_html(response):
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("path", "expected_ids", "script"),
    [
        ("/", ["runs-table", "launch-form", "compare-button", "launch-button"], "dashboard.js"),
        (
            "/explore",
            [
                "explore-run",
                "explore-seed",
                "generate-button",
                "timestep",
                "play-button",
                "head-select",
                "attention-chart",
            ],
            "explore.js",
        ),
        (
            "/compare?runs=a,b",
            [
                "compare-loss-chart",
                "compare-final-table",
                "compare-config-table",
                "compare-log-scale",
            ],
            "compare.js",
        ),
    ],
)
def test_page_renders_its_elements(client, path, expected_ids, script):
    response = client.get(path)
    assert_html(response)
    for element_id in expected_ids:
        assert f'id="{element_id}"' in response.text
    assert f'src="/static/js/{script}"' in response.text
    assert 'id="message-box"' in response.text


@pytest.mark.parametrize("path", ["/", "/explore", "/compare", "/sweeps", "/docs"])
def test_page_responds_to_head(client, path):
    response = client.head(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == b""


def test_run_page_renders_for_existing_run(client, tiny_run_request):
    created = client.post("/api/runs", json=tiny_run_request("lstm"))
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    response = client.get(f"/runs/{run_id}")
    assert_html(response)
    assert f'data-run-id="{run_id}"' in response.text
    for element_id in [
        "loss-chart",
        "run-progress",
        "cancel-button",
        "config-table",
        "download-csv",
        "download-json",
        "download-checkpoint",
    ]:
        assert f'id="{element_id}"' in response.text
    assert f'href="/api/runs/{run_id}/metrics?format=csv"' in response.text


@pytest.mark.parametrize("run_id", ["0123456789ab", "not-a-run-id", "ABCDEF012345"])
def test_unknown_run_page_is_404(client, run_id):
    response = client.get(f"/runs/{run_id}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-testid="not-found"' in response.text
    assert "not found" in response.text


@pytest.mark.parametrize("path", ["/nope", "/runs", "/explore/extra"])
def test_unknown_page_is_html_404(client, path):
    response = client.get(path, headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-testid="not-found"' in response.text
    assert f"No page at &#39;{path}&#39;." in response.text


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/api/nope", "text/html"),
        ("/ws/nope", "text/html"),
        ("/nope", "application/json"),
        ("/nope", "*/*"),
    ],
)
def test_unknown_api_path_is_json_404(client, path, accept):
    response = client.get(path, headers={"Accept": accept})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "Not Found"}


def test_plotly_bundle_is_served_locally(client):
    page = client.get("/explore")
    match = re.search(r'<script defer src="([^"]+)"></script>', page.text)
    assert match, "the explorer page has no Plotly script tag"
    src = match.group(1)
    assert src.startswith("/"), f"Plotly must come from this server, not {src}"

    response = client.get(src)
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert int(response.headers["content-length"]) > 1_000_000
    assert "max-age=31536000" in response.headers["cache-control"]
    assert b"plotly" in response.content[:2000].lower()


def test_stylesheet_and_scripts_are_served(client):
    assert client.get("/static/css/app.css").status_code == 200
    for script in sorted(STATIC.glob("js/*.js")):
        response = client.get(f"/static/js/{script.name}")
        assert response.status_code == 200, script.name
        assert "javascript" in response.headers["content-type"], script.name


def test_every_module_import_resolves():
    """Every relative import in static/js names a file that exists and exports the name."""
    import_pattern = re.compile(r'import\s*\{([^}]*)\}\s*from\s*"(\./[^"]+)"', re.S)
    for script in sorted(STATIC.glob("js/*.js")):
        for names, target in import_pattern.findall(script.read_text()):
            module = (script.parent / target).resolve()
            assert module.exists(), f"{script.name} imports missing {target}"
            source = module.read_text()
            for name in (part.strip() for part in names.split(",")):
                if not name:
                    continue
                exported = re.search(
                    rf"export\s+(?:async\s+)?(?:function|class|const|let)\s+{name}\b", source
                )
                assert exported, f"{script.name} imports {name!r}, which {target} does not export"
