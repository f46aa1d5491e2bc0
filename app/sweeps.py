"""Sweeps: expand a base run and a grid into runs, launch them, and aggregate their results.

A sweep request names a base run, up to ``MAX_SWEEP_AXES`` axes with their values, and
the seeds. Every combination of axis values is a *cell*, and every cell trains once per
seed, so a sweep has ``prod(len(values)) * len(seeds)`` runs, at most
``app.limits.MAX_SWEEP_RUNS``. Every run is validated before any is stored, so a sweep
starts whole or not at all. The runs are ordinary runs of the store, linked by ``sweep_id``, and the
runner (local or Dask) trains them like any other.

The metric of a cell is the final test loss of its finished runs (the final test accuracy
for classification tasks), as mean and sample standard deviation over the seeds.
"""

import itertools
import math
import secrets
import statistics
from dataclasses import dataclass

from pydantic import ValidationError

import models
from app import limits
from app.schemas import RunCreate, SweepCreate
from app.store import ACTIVE_STATUSES, STATUSES
from app.validation import (
    FieldErrors,
    ResolvedRun,
    describe_pydantic_error,
    field_error,
    resolve_run,
)

# Errors reported for a rejected sweep; the same mistake usually repeats in every cell.
MAX_REPORTED_ERRORS = 10

# Fields of a run request that cannot be an axis: the task is fixed by the base run, the
# option dicts are swept per option, and seeds have their own list.
NOT_AXES = ("task", "task_options", "model_options", "seed")


@dataclass(frozen=True)
class PlannedRun:
    cell: tuple[int, ...]
    seed: int
    body: RunCreate
    resolved: ResolvedRun


@dataclass(frozen=True)
class SweepPlan:
    id: str
    name: str
    spec: dict
    runs: list[PlannedRun]


def new_sweep_id() -> str:
    return secrets.token_hex(6)


def _check_axis(key: str, values: list) -> list[dict]:
    errors = []
    head, _, option = key.partition(".")
    if option:
        valid = head in ("task_options", "model_options") and "." not in option
    else:
        valid = key == "model" or (key in RunCreate.model_fields and key not in NOT_AXES)
    if not valid:
        message = (
            f"grid axis {key!r} is not allowed: use model, task_options.NAME, "
            "model_options.NAME or a training field other than seed (seeds go in seeds)"
        )
        errors.append(field_error(("grid", key), message, key))
    if any(values.count(value) > 1 for value in values):
        errors.append(field_error(("grid", key), f"grid.{key} repeats a value: {values}", values))
    return errors


def _check_request(request: SweepCreate) -> None:
    errors = []
    for key, values in request.grid.items():
        errors += _check_axis(key, values)
    if len(set(request.seeds)) != len(request.seeds):
        message = f"seeds repeats a seed: {request.seeds}"
        errors.append(field_error(("seeds",), message, request.seeds))
    cells = math.prod(len(values) for values in request.grid.values())
    total = cells * len(request.seeds)
    if total > limits.MAX_SWEEP_RUNS:
        message = (
            f"the grid has {cells} cells x {len(request.seeds)} seeds = {total} runs, more "
            f"than the limit of {limits.MAX_SWEEP_RUNS}; remove values or seeds"
        )
        errors.append(field_error(("grid",), message, total))
    if errors:
        raise FieldErrors(errors)


def _cell_body(request: SweepCreate, values: dict, seed: int) -> dict:
    """Return the run body of one cell and seed: the base with the cell's values applied."""
    body = request.base.model_dump()
    kind = values.get("model", body["model"])
    if kind in request.model_options_by_kind:
        body["model_options"] = dict(request.model_options_by_kind[kind])
    elif kind != request.base.model:
        body["model_options"] = {}
    body["model"] = kind
    for key, value in values.items():
        head, _, option = key.partition(".")
        if option:
            body[head] = {**body[head], option: value}
        elif key != "model":
            body[key] = value
    body["seed"] = seed
    return body


def _relocate(error: dict, grid_keys: list[str], cell: dict) -> dict:
    """Point an error of one cell's run at the grid axis or the base field it comes from."""
    loc = [part for part in error.get("loc", []) if part != "body"]
    path = ".".join(str(part) for part in loc)
    located = dict(error)
    if path in grid_keys:
        located["loc"] = ["body", "grid", path]
    else:
        located["loc"] = ["body", "base", *loc]
    located["msg"] = f"grid cell {describe_cell(cell)}: {error.get('msg', 'invalid value')}"
    return located


def describe_cell(cell: dict) -> str:
    """Describe a cell's values as ``mem_slots=2, num_heads=1``, without option prefixes."""
    return ", ".join(f"{key.partition('.')[2] or key}={value}" for key, value in cell.items())


def _resolve_cell(body: dict, grid_keys: list[str], cell: dict) -> tuple[RunCreate, ResolvedRun]:
    try:
        run_request = RunCreate.model_validate(body)
        return run_request, resolve_run(run_request)
    except ValidationError as exc:
        errors = [
            field_error(tuple(error["loc"]), describe_pydantic_error(error), error.get("input"))
            for error in exc.errors()
        ]
    except FieldErrors as exc:
        errors = exc.errors
    raise FieldErrors([_relocate(error, grid_keys, cell) for error in errors])


def plan_sweep(request: SweepCreate) -> SweepPlan:
    """Validate a sweep request and every run it expands to.

    Raises:
        FieldErrors: for a bad axis, repeated values or seeds, too many runs, or a cell
            whose run is invalid; a cell's errors point at its grid axis or base field.
    """
    _check_request(request)
    keys = list(request.grid)
    axes = [{"key": key, "values": request.grid[key]} for key in keys]
    runs, errors = [], []
    ranges = [range(len(request.grid[key])) for key in keys]
    for cell in itertools.product(*ranges):
        values = {key: request.grid[key][index] for key, index in zip(keys, cell, strict=True)}
        for seed in request.seeds:
            try:
                body, resolved = _resolve_cell(_cell_body(request, values, seed), keys, values)
            except FieldErrors as exc:
                errors += [error for error in exc.errors if error not in errors]
                break
            runs.append(PlannedRun(cell, seed, body, resolved))
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    if errors:
        raise FieldErrors(errors[:MAX_REPORTED_ERRORS])

    task = models.make_task(request.base.task, **request.base.task_options)
    metric = "final_test_accuracy" if task.loss == "cross_entropy" else "final_test_loss"
    sweep_id = new_sweep_id()
    name = request.name or f"sweep-{request.base.task}-{'-'.join(keys)}-{sweep_id[:4]}"
    spec = {
        "base": request.base.model_dump(),
        "axes": axes,
        "seeds": list(request.seeds),
        "model_options_by_kind": request.model_options_by_kind,
        "metric": metric,
        "cells": {run.resolved.id: list(run.cell) for run in runs},
    }
    return SweepPlan(sweep_id, name, spec, runs)


def sweep_status(sweep: dict, runs: list[dict]) -> str:
    if sweep["cancelled_at"] is not None:
        return "cancelled"
    if any(run["status"] in ACTIVE_STATUSES for run in runs):
        return "running"
    return "completed"


def summarise_sweep(sweep: dict, runs: list[dict], include_runs: bool = False) -> dict:
    """Return the sweep resource: its grid, counts per status and the metric of every cell.

    A cell's ``metric_values`` are the metric of its completed runs, in seed order. ``mean``
    is their mean, and ``std`` their sample standard deviation (None below two values).
    """
    spec = sweep["spec"]
    metric = spec["metric"]
    by_cell: dict[tuple, list[dict]] = {}
    for run in runs:
        cell = spec["cells"].get(run["id"])
        if cell is not None:
            by_cell.setdefault(tuple(cell), []).append(run)

    axes = spec["axes"]
    cells = []
    for index in itertools.product(*(range(len(axis["values"])) for axis in axes)):
        cell_runs = sorted(by_cell.get(index, []), key=lambda run: run["seed"])
        values = [
            run["final_metrics"][metric]
            for run in cell_runs
            if run["status"] == "completed"
            and run["final_metrics"]
            and run["final_metrics"].get(metric) is not None
        ]
        cells.append(
            {
                "index": list(index),
                "values": {
                    axis["key"]: axis["values"][i] for axis, i in zip(axes, index, strict=True)
                },
                "run_ids": [run["id"] for run in cell_runs],
                "metric_values": values,
                "mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) >= 2 else None,
                "finished": sum(run["status"] not in ACTIVE_STATUSES for run in cell_runs),
            }
        )

    counts = {status: 0 for status in STATUSES}
    for run in runs:
        counts[run["status"]] += 1
    resource = {
        "id": sweep["id"],
        "name": sweep["name"],
        "status": sweep_status(sweep, runs),
        "created_at": sweep["created_at"],
        "cancelled_at": sweep["cancelled_at"],
        "base": spec["base"],
        "axes": axes,
        "seeds": spec["seeds"],
        "metric": metric,
        "counts": counts,
        "cells": cells,
    }
    if include_runs:
        resource["runs"] = runs
    return resource
