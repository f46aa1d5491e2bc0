"""Explorer endpoints: generate a task sequence, and run a trained model on one with a trace.

Predictions load the checkpoint, run NumPy and encode the JSON response in a worker
thread, so the event loop only sends the finished bytes. At most
``Settings.explorer_threads`` run at once, and beyond ``limits.MAX_PENDING_PREDICTIONS``
waiting requests the server responds with 503, so the event loop and the training workers keep
their CPU time.
"""

import anyio
from fastapi import APIRouter, HTTPException, Request, Response

from app import limits
from app.explorer import ExplorerError, generate_sequence, predict_run
from app.json_encoding import encode_json
from app.routes.common import ERROR_RESPONSES, get_store, require_run
from app.schemas import Prediction, PredictRequest, Sequence, SequenceRequest
from app.worker import CHECKPOINT_NAME

router = APIRouter(prefix="/api", tags=["explorer"])


class ExplorerGate:
    """Run blocking explorer work in threads, a bounded number at a time."""

    def __init__(self, threads: int, max_pending: int = limits.MAX_PENDING_PREDICTIONS):
        self.limiter = anyio.CapacityLimiter(threads)
        self.max_pending = max_pending
        self.pending = 0

    async def run(self, function, *args):
        if self.pending >= self.max_pending:
            raise HTTPException(
                503, f"the explorer is busy with {self.pending} requests; retry in a moment"
            )
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self.limiter)
        finally:
            self.pending -= 1


@router.post("/sequences", response_model=Sequence, responses={422: {}})
async def create_sequence(body: SequenceRequest, request: Request) -> Response:
    """Generate one sequence of a task: inputs, target and the task's ground truth."""
    gate: ExplorerGate = request.app.state.explorer_gate
    content = await gate.run(_encoded, generate_sequence, body.task, body.task_options, body.seed)
    return Response(content, media_type="application/json")


@router.post(
    "/runs/{run_id}/predict",
    response_model=Prediction,
    responses={**ERROR_RESPONSES, 422: {}, 503: {}},
)
async def predict(run_id: str, body: PredictRequest, request: Request) -> Response:
    """Run a run's checkpoint on a sequence with tracing on.

    Send ``seed`` to draw the sequence from the run's task (the same sequence that
    ``POST /api/sequences`` returns for that task, options and seed), or ``inputs``
    ([T][D]) and optionally ``target``.
    """
    # In a thread: the store's lock may be held by a long query of another request.
    run = await anyio.to_thread.run_sync(require_run, get_store(request), run_id)
    checkpoint = request.app.state.settings.runs_dir / run_id / CHECKPOINT_NAME
    if not run["has_checkpoint"] or not checkpoint.is_file():
        raise HTTPException(
            409, f"run {run_id} is {run['status']} and has no checkpoint to predict with"
        )
    gate: ExplorerGate = request.app.state.explorer_gate
    arguments = (run, checkpoint, body.seed, body.inputs, body.target)
    try:
        content = await gate.run(_encoded, predict_run, *arguments)
    except ExplorerError as exc:
        raise HTTPException(409, f"run {run_id}: {exc}") from exc
    return Response(content, media_type="application/json")


def _encoded(function, *args) -> bytes:
    """Call ``function`` and return its result as JSON bytes (a trace can be millions of values)."""
    return encode_json(function(*args))
