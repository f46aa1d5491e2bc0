"""Sweeps: launch a grid of runs, list and inspect sweeps, cancel a whole sweep."""

import logging
import re

from fastapi import APIRouter, HTTPException, Request

from app.launch import launch_run
from app.routes.common import get_store
from app.schemas import ErrorBody, Sweep, SweepCreate
from app.store import ACTIVE_STATUSES
from app.sweeps import plan_sweep, summarise_sweep

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])

SWEEP_ID_PATTERN = re.compile(r"^[0-9a-f]{12}$")
SWEEP_ERRORS = {404: {"model": ErrorBody, "description": "No sweep with this id."}}


def require_sweep(request: Request, sweep_id: str) -> dict:
    """Return the stored sweep, or raise 404 for an id that is malformed or unknown."""
    sweep = None
    if SWEEP_ID_PATTERN.match(sweep_id):
        sweep = get_store(request).get_sweep(sweep_id)
    if sweep is None:
        raise HTTPException(
            404, f"sweep {sweep_id!r} not found: sweep ids are 12 lowercase hexadecimal characters"
        )
    return sweep


@router.post("", status_code=201, response_model=Sweep, responses={422: {}})
def create_sweep(body: SweepCreate, request: Request) -> dict:
    """Validate every run of the grid, store the sweep and queue its runs.

    Runs are queued cell by cell, with every seed of a cell before the next cell, so the
    heatmap fills in cells rather than seeds.
    """
    plan = plan_sweep(body)
    store = get_store(request)
    sweep = store.create_sweep(plan.id, plan.name, plan.spec)
    logger.info("sweep %s (%s): queuing %d runs", plan.id, plan.name, len(plan.runs))
    runs = [
        launch_run(request.app.state, planned.body, planned.resolved, sweep_id=plan.id)
        for planned in plan.runs
    ]
    return summarise_sweep(sweep, runs, include_runs=True)


@router.get("", response_model=list[Sweep])
def list_sweeps(request: Request) -> list[dict]:
    """Return every sweep, newest first, without its runs."""
    store = get_store(request)
    return [
        summarise_sweep(sweep, store.list_sweep_runs(sweep["id"])) for sweep in store.list_sweeps()
    ]


@router.get("/{sweep_id}", response_model=Sweep, responses=SWEEP_ERRORS)
def get_sweep(sweep_id: str, request: Request) -> dict:
    """Return the sweep with its runs and the mean and std of the metric in every cell."""
    sweep = require_sweep(request, sweep_id)
    return summarise_sweep(sweep, get_store(request).list_sweep_runs(sweep_id), include_runs=True)


@router.post("/{sweep_id}/cancel", status_code=202, response_model=Sweep, responses=SWEEP_ERRORS)
def cancel_sweep(sweep_id: str, request: Request) -> dict:
    """Cancel every queued or running run of the sweep; finished runs keep their results."""
    require_sweep(request, sweep_id)
    store = get_store(request)
    sweep = store.mark_sweep_cancelled(sweep_id)
    cancelled = 0
    for run in store.list_sweep_runs(sweep_id):
        if run["status"] in ACTIVE_STATUSES and request.app.state.runner.cancel(run["id"]):
            cancelled += 1
    logger.info("sweep %s cancelled: %d runs were queued or running", sweep_id, cancelled)
    return summarise_sweep(sweep, store.list_sweep_runs(sweep_id), include_runs=True)
