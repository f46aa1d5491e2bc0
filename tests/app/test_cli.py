"""The command line: options, environment variables and the start-up log."""

import subprocess
import sys
from pathlib import Path

import httpx

from app.cli import _settings_from, build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_help_lists_options():
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--max-concurrent-runs", "--allowed-host"):
        assert option in result.stdout


def test_invalid_port_is_rejected_with_its_value():
    result = run_cli("serve", "--port", "70000")
    assert result.returncode == 2
    assert "port" in result.stderr
    assert "70000" in result.stderr


def test_options_override_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RELMEM_PORT", "9001")
    monkeypatch.setenv("RELMEM_MAX_CONCURRENT_RUNS", "3")
    monkeypatch.setenv("RELMEM_DATA_DIR", str(tmp_path / "from-env"))
    args = build_parser().parse_args(["serve", "--max-concurrent-runs", "1"])
    settings = _settings_from(args)
    assert settings.port == 9001
    assert settings.max_concurrent_runs == 1
    assert settings.data_dir == tmp_path / "from-env"
    assert settings.host == "127.0.0.1"


def test_live_server_logs_url_and_reads_environment(live_server):
    log = live_server.log()
    assert f"Relational Memory Explorer at {live_server.url}" in log
    assert str(live_server.data_dir) in log
    health = httpx.get(f"{live_server.url}/api/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["max_concurrent_runs"] == 2
    assert (live_server.data_dir / "relmem.sqlite3").is_file()


def test_openapi_lists_every_endpoint(live_server):
    paths = httpx.get(f"{live_server.url}/openapi.json", timeout=10).json()["paths"]
    assert set(paths) >= {
        "/api/health",
        "/api/tasks",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/metrics",
        "/api/runs/{run_id}/checkpoint",
        "/api/sequences",
        "/api/runs/{run_id}/predict",
    }
