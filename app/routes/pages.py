"""HTML pages (dashboard, run, explorer, compare, sweeps) and the local Plotly.js bundle.

The pages are thin Jinja2 shells: each one loads its module from ``static/js``,
which reads the JSON API and the websockets. The server only checks what it
can cheaply know up front, such as whether a run id exists.
"""

import functools
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import plotly
from fastapi import APIRouter, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import limits
from app.routes.common import RUN_ID_PATTERN

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PLOTLY_URL = "/vendor/plotly.min.js"

# The URL carries the Plotly version, so a browser may keep the file for a year and
# still fetches the new bundle after an upgrade of the `plotly` package.
PLOTLY_CACHE_CONTROL = "public, max-age=31536000, immutable"


@functools.cache
def _plotly_bundle_path() -> Path:
    """Locate ``plotly.min.js`` inside the installed ``plotly`` Python package."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def _render(
    request: Request, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    context.setdefault("plotly_src", f"{PLOTLY_URL}?v={plotly.__version__}")
    return request.app.state.templates.TemplateResponse(
        request, template, context, status_code=status_code
    )


async def not_found_handler(request: Request, exc: StarletteHTTPException) -> Response:
    """Answer a browser's 404 outside ``/api/`` and ``/ws/`` with the HTML page.

    Every other error, and every request of an API client, gets FastAPI's JSON body.
    """
    wants_html = "text/html" in request.headers.get("accept", "")
    api_path = request.url.path.startswith(("/api/", "/ws/"))
    if exc.status_code != 404 or not wants_html or api_path:
        return await http_exception_handler(request, exc)
    return _render(
        request,
        "not_found.html",
        status_code=404,
        page="not-found",
        message=f"No page at {request.url.path!r}.",
    )


def _run_exists(request: Request, run_id: str) -> bool:
    if not RUN_ID_PATTERN.match(run_id):
        return False
    return request.app.state.store.get_run(run_id) is not None


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    return _render(request, "dashboard.html", page="dashboard")


@router.api_route("/runs/{run_id}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> HTMLResponse:
    if not _run_exists(request, run_id):
        return _render(
            request,
            "not_found.html",
            status_code=404,
            page="not-found",
            message=f"Run {run_id!r} not found. It may have been deleted.",
        )
    return _render(request, "run.html", page="run", run_id=run_id)


@router.api_route("/explore", methods=["GET", "HEAD"], response_class=HTMLResponse)
def explore_page(request: Request) -> HTMLResponse:
    return _render(request, "explore.html", page="explore", max_seed=limits.MAX_SEED)


@router.api_route("/compare", methods=["GET", "HEAD"], response_class=HTMLResponse)
def compare_page(request: Request) -> HTMLResponse:
    return _render(request, "compare.html", page="compare")


@router.api_route("/sweeps", methods=["GET", "HEAD"], response_class=HTMLResponse)
def sweeps_page(request: Request) -> HTMLResponse:
    return _render(request, "sweeps.html", page="sweeps")


@router.api_route("/sweeps/{sweep_id}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: str) -> HTMLResponse:
    sweep = None
    if RUN_ID_PATTERN.match(sweep_id):
        sweep = request.app.state.store.get_sweep(sweep_id)
    if sweep is None:
        return _render(
            request,
            "not_found.html",
            status_code=404,
            page="not-found",
            message=f"Sweep {sweep_id!r} not found.",
        )
    return _render(request, "sweep.html", page="sweep", sweep_id=sweep_id)


@router.api_route(PLOTLY_URL, methods=["GET", "HEAD"])
def plotly_bundle() -> Response:
    """Serve the Plotly.js bundle shipped with the installed ``plotly`` package."""
    path = _plotly_bundle_path()
    if not path.is_file():
        logger.error("Plotly.js bundle not found at %s", path)
        return PlainTextResponse(
            f"Plotly.js bundle not found at {path}; reinstall the plotly package.",
            status_code=404,
        )
    return FileResponse(
        path,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": PLOTLY_CACHE_CONTROL},
    )
