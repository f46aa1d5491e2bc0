"""Paired runs: one request launches an RMC and an LSTM that see the same data."""

import logging

from fastapi import APIRouter, Request

from app.launch import launch_run
from app.pairs import plan_pair
from app.schemas import Pair, PairCreate

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/pairs", tags=["runs"])


@router.post("", status_code=201, response_model=Pair, responses={422: {}})
def create_pair(body: PairCreate, request: Request) -> dict:
    """Queue an RMC and an LSTM with the same task, training settings and seed.

    Both runs draw the same training batches and held-out set. With ``match_parameters``
    the LSTM's hidden size is chosen so that its parameter count is closest to the
    RMC's. ``url`` is the page that shows both curves and their difference live.
    """
    planned, hidden_size = plan_pair(body)
    runs = [launch_run(request.app.state, run_body, resolved) for run_body, resolved in planned]
    rmc, lstm = runs
    logger.info("pair %s + %s queued (LSTM hidden size %d)", rmc["id"], lstm["id"], hidden_size)
    return {
        "runs": runs,
        "lstm_hidden_size": hidden_size,
        "parameters": {"rmc": planned[0][1].cost.parameters, "lstm": planned[1][1].cost.parameters},
        "url": f"/compare?runs={rmc['id']},{lstm['id']}&live=1",
    }
