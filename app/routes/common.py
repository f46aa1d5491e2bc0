"""Helpers shared by the route modules: run lookup and the standard error responses."""

import re

from fastapi import HTTPException, Request

from app.schemas import ErrorBody
from app.store import Store

RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{12}$")

ERROR_RESPONSES = {
    404: {"model": ErrorBody, "description": "No run with this id."},
    409: {"model": ErrorBody, "description": "The run's state does not allow this action."},
}


def get_store(request: Request) -> Store:
    return request.app.state.store


def require_run(store: Store, run_id: str) -> dict:
    """Return the run, or raise 404 for an id that is malformed or unknown."""
    if not RUN_ID_PATTERN.match(run_id):
        raise HTTPException(
            404,
            f"run {run_id!r} not found: run ids are 12 lowercase hexadecimal characters",
        )
    run = store.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id!r} not found")
    return run


def safe_file_name(text: str) -> str:
    """Return ``text`` with every character outside [A-Za-z0-9._-] replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:100] or "run"
