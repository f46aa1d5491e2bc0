"""Store a validated run as queued and hand it to the runner: shared by runs, pairs and sweeps."""

import logging

from app.schemas import RunCreate
from app.store import Store
from app.validation import ResolvedRun

logger = logging.getLogger(__name__)


def run_record(
    body: RunCreate, resolved: ResolvedRun, param_count: int, sweep_id: str | None = None
) -> dict:
    """Return the fields ``Store.create_run`` takes for a validated run request."""
    return {
        "id": resolved.id,
        "name": resolved.name,
        "task": body.task,
        "model": body.model,
        "seed": body.seed,
        "config": resolved.config,
        "param_count": param_count,
        "sweep_id": sweep_id,
    }


def launch_run(state, body: RunCreate, resolved: ResolvedRun, sweep_id: str | None = None) -> dict:
    """Store a validated run as queued, publish it and submit it; return the stored run.

    ``state`` is the application's ``app.state`` (store, recorder, runner). A run that the
    runner rejects, because the server is stopping, is stored as "interrupted" with the
    error "run not started: ..." and returned; the caller decides how to respond.
    """
    store: Store = state.store
    # NOTE: an analytic parameter count, equal to make_model's for the current layer
    # layout; the worker's exact count replaces it when the run finishes.
    run = store.create_run(run_record(body, resolved, resolved.cost.parameters, sweep_id))
    logger.info("run %s (%s) queued", run["id"], run["name"])
    state.recorder.run_created(run)
    try:
        state.runner.submit(run["id"], resolved.config)
    except RuntimeError as exc:
        state.recorder.run_finished(run["id"], "interrupted", error=f"run not started: {exc}")
        logger.warning("run %s not started: %s", run["id"], exc)
    return store.get_run(run["id"]) or run
