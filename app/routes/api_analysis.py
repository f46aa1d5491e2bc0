"""Analysis of a trained run over a batch, and one sequence's full trace as ``.npz``.

Both load the run's checkpoint and run NumPy in the explorer's thread pool, with the same
bound on concurrent and waiting requests as predictions.
"""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from app import limits
from app.analysis import analyse_run, trace_archive
from app.explorer import ExplorerError
from app.routes.api_explore import ExplorerGate
from app.routes.common import ERROR_RESPONSES, get_store, require_run, safe_file_name
from app.schemas import Analysis, AnalysisRequest, PredictRequest
from app.worker import CHECKPOINT_NAME

router = APIRouter(prefix="/api/runs", tags=["analysis"])

NPZ_RESPONSE = {200: {"content": {"application/octet-stream": {}}}}


def _checkpoint_of(request: Request, run_id: str) -> tuple[dict, Path]:
    """Return the run and its checkpoint path, or raise 404 or 409."""
    run = require_run(get_store(request), run_id)
    checkpoint = request.app.state.settings.runs_dir / run_id / CHECKPOINT_NAME
    if not run["has_checkpoint"] or not checkpoint.is_file():
        raise HTTPException(
            409, f"run {run_id} is {run['status']} and has no checkpoint to analyse"
        )
    return run, checkpoint


async def _run_in_gate(request: Request, run_id: str, function, *args):
    gate: ExplorerGate = request.app.state.explorer_gate
    try:
        return await gate.run(function, *args)
    except ExplorerError as exc:
        raise HTTPException(409, f"run {run_id}: {exc}") from exc


@router.post(
    "/{run_id}/analysis",
    response_model=Analysis,
    responses={**ERROR_RESPONSES, 422: {}, 503: {}},
)
async def analyse(run_id: str, body: AnalysisRequest, request: Request) -> dict:
    """Analyse the run's checkpoint on a batch drawn from its task.

    Returns batch means per timestep: the attention each slot receives, each slot's
    weight on the input row, the entropy of every query row, and gate openness and memory
    change per slot. Also returns each slot's usage, the unused slots and, for tracking
    tasks, the correlation of each slot with each observed object. ``connectivity`` is the
    norm of the prediction's gradient with respect to each input step. The definitions are
    in ``models.analysis``.
    """
    run, checkpoint = _checkpoint_of(request, run_id)
    return await _run_in_gate(
        request, run_id, analyse_run, run, checkpoint, body.seed, body.batch_size
    )


def _npz_response(run: dict, data: bytes, seed: int | None) -> Response:
    suffix = f"-seed{seed}" if seed is not None else ""
    file_name = f"{safe_file_name(run['name'])}-trace{suffix}.npz"
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )


@router.get("/{run_id}/trace.npz", responses={**ERROR_RESPONSES, **NPZ_RESPONSE, 503: {}})
async def download_trace(
    run_id: str,
    request: Request,
    seed: Annotated[int, Query(ge=0, le=limits.MAX_SEED, description="Sequence seed.")] = 0,
) -> Response:
    """Send the full trace of the sequence that ``seed`` draws from the run's task."""
    run, checkpoint = _checkpoint_of(request, run_id)
    data = await _run_in_gate(request, run_id, trace_archive, run, checkpoint, seed, None, None)
    return _npz_response(run, data, seed)


@router.post("/{run_id}/trace.npz", responses={**ERROR_RESPONSES, **NPZ_RESPONSE, 422: {}, 503: {}})
async def post_trace(run_id: str, body: PredictRequest, request: Request) -> Response:
    """Send the full trace of a seeded sequence or of posted ``inputs`` [T][D].

    The archive contains ``inputs``, ``target`` (when known), ``prediction``,
    ``connectivity`` (T,), ``trace.<name>`` for each trace array without its batch axis,
    ``info.<name>`` for a seeded sequence's ground truth, and ``__meta__`` (JSON).
    """
    run, checkpoint = _checkpoint_of(request, run_id)
    data = await _run_in_gate(
        request, run_id, trace_archive, run, checkpoint, body.seed, body.inputs, body.target
    )
    return _npz_response(run, data, body.seed)
