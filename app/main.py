"""The FastAPI application: ``create_app(settings)`` wires the store, runner, hub and routes."""

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import docs_ui
from app.hub import Hub
from app.recorder import Recorder
from app.routes import (
    api_analysis,
    api_explore,
    api_export,
    api_meta,
    api_pairs,
    api_runs,
    api_sweeps,
    ws,
)
from app.routes.api_explore import ExplorerGate
from app.runner import Runner
from app.security import LocalOriginMiddleware, SecurityHeadersMiddleware, document_rejections
from app.settings import Settings
from app.store import Store
from app.validation import FieldErrors, field_errors_handler, request_validation_handler

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
TEMPLATES_DIR = ROOT / "templates"

STALE_RUN_REASON = "the server stopped before the run finished"


def _remove_partial_files(runs_dir: Path, run_ids: list[str]) -> None:
    """Delete temporary files that a worker killed mid-write left in its run folder."""
    for run_id in run_ids:
        for partial in (runs_dir / run_id).glob(".*.tmp"):
            partial.unlink(missing_ok=True)
            logger.info("run %s: removed the partial file %s", run_id, partial.name)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_path)
    stale = store.interrupt_active_runs(STALE_RUN_REASON)
    if stale:
        logger.warning(
            "marked %d run(s) of a previous server as interrupted: %s", len(stale), stale
        )
        _remove_partial_files(settings.runs_dir, stale)

    hub = Hub(queue_size=settings.ws_queue_size)
    hub.bind_loop(asyncio.get_running_loop())
    recorder = Recorder(store, hub)
    runner = _make_runner(settings, recorder)
    # A Dask client connects from a thread of its own, never from the event loop.
    await anyio.to_thread.run_sync(runner.start)
    app.state.store = store
    app.state.hub = hub
    app.state.recorder = recorder
    app.state.runner = runner
    app.state.explorer_gate = ExplorerGate(settings.explorer_threads)
    logger.info(
        "data in %s; up to %d runs at once", settings.data_dir.resolve(), runner.max_concurrent
    )
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(runner.stop)
        store.close()
        logger.info("stopped")


def _make_runner(settings: Settings, recorder: Recorder):
    """Return the runner of ``settings.executor``: local processes or a Dask cluster."""
    if settings.executor == "dask":
        from app.dask_executor import DaskRunner

        return DaskRunner(
            recorder,
            settings.runs_dir,
            settings.dask_scheduler,
            cancel_grace_seconds=settings.cancel_grace_seconds,
        )
    return Runner(
        recorder,
        settings.runs_dir,
        settings.max_concurrent_runs,
        cancel_grace_seconds=settings.cancel_grace_seconds,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; the store and the runner start with its lifespan."""
    settings = settings or Settings()
    app = FastAPI(
        title="Relational Memory Explorer",
        summary="Train relational memory cores and LSTMs in NumPy and look inside them.",
        version=api_meta.VERSION,
        lifespan=lifespan,
        # docs_ui serves /docs without a CDN; ReDoc has no offline copy here.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    # Added first, so it runs inside the Host and Origin checks.
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(LocalOriginMiddleware, host_names=settings.host_names())
    document_rejections(app)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(FieldErrors, field_errors_handler)

    for router in (api_meta.router, api_runs.router, api_explore.router, ws.router, docs_ui.router):
        app.include_router(router)
    for router in (api_analysis.router, api_export.router, api_sweeps.router, api_pairs.router):
        app.include_router(router)
    try:
        from app.routes import pages
    except ModuleNotFoundError as exc:
        if exc.name != "app.routes.pages":
            raise
        logger.warning("app.routes.pages is missing; serving the API without pages")
    else:
        app.include_router(pages.router)
        app.add_exception_handler(StarletteHTTPException, pages.not_found_handler)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
