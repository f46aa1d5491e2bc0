"""Runs: create, list, inspect, cancel and delete; metrics and checkpoint downloads.

A run can be deleted only once it has finished: a queued or running run must be
cancelled first (409 otherwise), so a worker never writes into a deleted run's folder.
"""

import csv
import io
import logging
import shutil
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse

from app.json_encoding import json_response
from app.launch import launch_run
from app.routes.common import ERROR_RESPONSES, get_store, require_run, safe_file_name
from app.schemas import Metric, Run, RunCreate
from app.store import ACTIVE_STATUSES, METRIC_FIELDS
from app.validation import resolve_run
from app.worker import CHECKPOINT_NAME

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.post("", status_code=201, response_model=Run, responses={422: {}, 503: {}})
def create_run(body: RunCreate, request: Request) -> dict:
    """Validate a run request, store the run as queued and hand it to the runner."""
    run = launch_run(request.app.state, body, resolve_run(body))
    if run["status"] == "interrupted":
        raise HTTPException(503, run["error"])
    return run


@router.get("", response_model=list[Run])
def list_runs(request: Request) -> list[dict]:
    """Return every run, newest first."""
    return get_store(request).list_runs()


@router.get("/{run_id}", response_model=Run, responses=ERROR_RESPONSES)
def get_run(run_id: str, request: Request) -> dict:
    return require_run(get_store(request), run_id)


@router.post("/{run_id}/cancel", status_code=202, response_model=Run, responses=ERROR_RESPONSES)
def cancel_run(run_id: str, request: Request) -> dict:
    """Cancel a queued run at once, or ask a running one to stop between steps.

    The response shows the run as it is now; a running run reports ``cancelled`` on the
    websocket once its worker has stopped.
    """
    store = get_store(request)
    run = require_run(store, run_id)
    if run["status"] in ACTIVE_STATUSES and request.app.state.runner.cancel(run_id):
        return require_run(store, run_id)
    # The run may have finished while this request was handled.
    run = require_run(store, run_id)
    raise HTTPException(
        409, f"run {run_id} is {run['status']}; only queued or running runs can be cancelled"
    )


@router.delete("/{run_id}", status_code=204, responses=ERROR_RESPONSES)
def delete_run(run_id: str, request: Request) -> Response:
    """Delete a finished run, its metrics and its folder (checkpoint and config)."""
    store = get_store(request)
    run = require_run(store, run_id)
    if run["status"] in ACTIVE_STATUSES:
        raise HTTPException(409, f"run {run_id} is {run['status']}; cancel it before deleting it")
    store.delete_run(run_id)
    folder = request.app.state.settings.runs_dir / run_id
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.error(
            "run %s deleted, but its folder %s could not be removed: %s", run_id, folder, exc
        )
    request.app.state.recorder.run_deleted(run_id)
    logger.info("run %s (%s) deleted", run_id, run["name"])
    return Response(status_code=204)


@router.get(
    "/{run_id}/metrics",
    response_model=list[Metric],
    responses={**ERROR_RESPONSES, 200: {"content": {"text/csv": {}}}},
)
def get_metrics(
    run_id: str,
    request: Request,
    format: Literal["json", "csv"] = Query("json", description="json or csv"),
):
    """Return the run's metric rows in step order, as JSON or as a CSV attachment."""
    store = get_store(request)
    run = require_run(store, run_id)
    metrics = store.get_metrics(run_id)
    if format == "json":
        # Encoded here, in the route's worker thread, in slices: a run may have 100,000
        # rows, and one serializer call over all of them would stall the event loop.
        return json_response(metrics)
    file_name = f"{safe_file_name(run['name'])}-metrics.csv"
    return Response(
        content=metrics_csv(metrics),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )


@router.get("/{run_id}/logs", responses=ERROR_RESPONSES)
def get_logs(run_id: str, request: Request) -> list[dict]:
    """Return the run's stored log lines (its last 1,000), oldest first."""
    store = get_store(request)
    require_run(store, run_id)
    return store.get_logs(run_id)


def metrics_csv(metrics: list[dict]) -> str:
    """Format metric rows as CSV: the standard columns first, then any extra fields."""
    columns = ["run_id", *METRIC_FIELDS]
    for metric in metrics:
        columns += [key for key in metric if key not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for metric in metrics:
        writer.writerow(["" if metric.get(name) is None else metric[name] for name in columns])
    return buffer.getvalue()


@router.get(
    "/{run_id}/checkpoint",
    response_class=FileResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"application/octet-stream": {}}}},
)
def download_checkpoint(run_id: str, request: Request) -> FileResponse:
    """Send the run's checkpoint: an ``.npz`` of the parameters plus ``__config__``."""
    run = require_run(get_store(request), run_id)
    path = request.app.state.settings.runs_dir / run_id / CHECKPOINT_NAME
    if not run["has_checkpoint"] or not path.is_file():
        raise HTTPException(409, f"run {run_id} is {run['status']} and has no checkpoint")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"{safe_file_name(run['name'])}-checkpoint.npz",
    )
