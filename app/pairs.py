"""Paired runs: an RMC and an LSTM on the same task, training settings and seed.

Both runs of a pair share ``seed``. ``models.training.train`` draws the training batches from
``default_rng(seed)`` and the held-out set from ``default_rng([seed, 1])`` whatever the
model, so the two models see the same data stream and are scored on the same held-out
sequences. With ``match_parameters`` the LSTM's ``hidden_size`` is the one whose
parameter count is closest to the RMC's.
"""

import models
from app import limits
from app.schemas import PairCreate, RunCreate
from app.validation import FieldErrors, ResolvedRun, field_error, resolve_run

_HIDDEN_SIZE_SPEC = next(
    spec for spec in models.MODEL_SPECS["lstm"]["options"] if spec["name"] == "hidden_size"
)


def lstm_parameters(hidden_size: int, lstm_options: dict, task, config: dict) -> int:
    """Return the parameter count of an LSTM with ``hidden_size`` units for ``task``."""
    hyper = {"readout_hidden": [], **lstm_options, "hidden_size": hidden_size}
    cost = limits.estimate_run_cost(
        "lstm", hyper, task.input_size, task.output_size, task.seq_len, config
    )
    return cost.parameters


def matching_hidden_size(target: int, lstm_options: dict, task, config: dict) -> int:
    """Return the hidden size whose LSTM parameter count is closest to ``target``.

    Ties go to the smaller size. The count grows with the hidden size, so the search
    stops at the first size past the target.
    """
    best, best_gap = _HIDDEN_SIZE_SPEC["min"], None
    for size in range(_HIDDEN_SIZE_SPEC["min"], _HIDDEN_SIZE_SPEC["max"] + 1):
        count = lstm_parameters(size, lstm_options, task, config)
        gap = abs(count - target)
        if best_gap is None or gap < best_gap:
            best, best_gap = size, gap
        if count > target:
            break
    return best


def plan_pair(request: PairCreate) -> tuple[list[tuple[RunCreate, ResolvedRun]], int]:
    """Validate both runs of a pair; return [(request, resolved)] for the RMC and the LSTM.

    Also returns the LSTM's hidden size.

    Raises:
        FieldErrors: when the base run is not an RMC, or either run is invalid.
    """
    if request.base.model != "rmc":
        message = f"base.model must be 'rmc' for a pair, got {request.base.model!r}"
        raise FieldErrors([field_error(("base", "model"), message, request.base.model)])
    rmc_resolved = _resolve(request.base, ("base",))

    lstm_options = dict(request.lstm_options)
    if request.match_parameters:
        task = models.make_task(request.base.task, **request.base.task_options)
        lstm_options["hidden_size"] = matching_hidden_size(
            rmc_resolved.cost.parameters,
            {key: value for key, value in lstm_options.items() if key != "hidden_size"},
            task,
            rmc_resolved.config,
        )
    lstm_body = request.base.model_copy(update={"model": "lstm", "model_options": lstm_options})
    lstm_resolved = _resolve(lstm_body, ())
    hidden_size = lstm_resolved.config["model_options"]["hidden_size"]
    return [(request.base, rmc_resolved), (lstm_body, lstm_resolved)], hidden_size


def _resolve(body: RunCreate, prefix: tuple) -> ResolvedRun:
    """Resolve one run of the pair; the LSTM's option errors point at ``lstm_options``."""
    try:
        return resolve_run(body)
    except FieldErrors as exc:
        errors = []
        for error in exc.errors:
            loc = [part for part in error["loc"] if part != "body"]
            if body.model == "lstm" and loc[:1] == ["model_options"]:
                loc = ["lstm_options", *loc[1:]]
            else:
                loc = [*prefix, *loc]
            errors.append({**error, "loc": ["body", *loc]})
        raise FieldErrors(errors) from exc
