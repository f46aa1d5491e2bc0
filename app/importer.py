"""Import a run trained on the command line into the store, so the pages can show it.

``python -m models.train`` and ``bench/nth_farthest.py`` write a run folder with
``config.json`` (the ``TrainConfig``), ``metrics.jsonl`` (one metric event per line),
``summary.json`` and ``checkpoint.npz``. ``import_run`` checks all four, with the same
rules and limits as ``POST /api/runs``, before it writes anything. It then stores the run
with its metrics and final metrics, and copies the checkpoint into the data folder as a
worker would have written it. The run page, the explorer and the compare page then treat
it like a run trained by the server.
"""

import hashlib
import json
import logging
import shutil
from pathlib import Path

from pydantic import ValidationError

import models
from app import limits
from app.launch import run_record
from app.recorder import final_metrics_of
from app.schemas import RunCreate
from app.store import Store, metric_row, utc_now
from app.validation import FieldErrors, describe_pydantic_error, resolve_run
from app.worker import CHECKPOINT_NAME, CONFIG_NAME, write_json_atomically

logger = logging.getLogger(__name__)

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.npz")
# Status in summary.json -> status of the stored run. A diverged run has no checkpoint to
# import: ``python -m models.train`` writes one only when training ends normally.
STATUS_OF_SUMMARY = {"completed": "completed", "cancelled": "cancelled"}


class RunImportError(ValueError):
    """A run folder that cannot be imported; the message names the file and the problem.

    The message leaves out the folder itself; the caller adds it.
    """


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunImportError(f"{path.name}: not readable as JSON: {exc}") from exc


def _check_request(config: dict) -> tuple[RunCreate, object]:
    """Validate the training config as a run request; return it and its ``ResolvedRun``."""
    try:
        body = RunCreate.model_validate(config)
        return body, resolve_run(body)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, error['loc']))}: {describe_pydantic_error(error)}"
            for error in exc.errors()
        ]
    except FieldErrors as exc:
        problems = [
            f"{'.'.join(map(str, error['loc'][1:]))}: {error['msg']}" for error in exc.errors
        ]
    raise RunImportError(f"config.json: {'; '.join(problems)}")


def _read_metrics(path: Path, run_id: str) -> list[dict]:
    """Return the metric events of ``metrics.jsonl``, each checked as the store will store it."""
    events = []
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            where = f"metrics.jsonl line {number}"
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunImportError(f"{where}: not valid JSON: {exc}") from exc
            if not isinstance(event, dict) or "step" not in event:
                raise RunImportError(f"{where}: must be a JSON object with a step, got {line!r}")
            try:
                metric_row(run_id, event)
            except (TypeError, ValueError) as exc:
                raise RunImportError(f"{where}: not a metric event: {exc}") from exc
            events.append(event)
            if len(events) > limits.MAX_METRIC_ROWS:
                raise RunImportError(
                    f"metrics.jsonl: more than {limits.MAX_METRIC_ROWS} metric rows"
                )
    return events


def _load_checkpoint(path: Path, body: RunCreate):
    try:
        model = models.load_checkpoint(path)
    except models.CheckpointError as exc:
        raise RunImportError(f"checkpoint.npz: {exc}") from exc
    if model.config["kind"] != body.model:
        raise RunImportError(
            f"checkpoint.npz contains a model of kind {model.config['kind']!r}, but "
            f"config.json trains {body.model!r}"
        )
    return model


def _checkpoint_digest(path: Path) -> str:
    """Return the SHA-256 of a checkpoint file as hex, read in chunks of 1 MiB."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_run(folder: Path, store: Store, runs_dir: Path, again: bool = False) -> dict:
    """Check the run folder ``folder``, then store it as a finished run; return the run.

    The stored run gets a new id and name, a log line that names ``folder``, and a
    record of its checkpoint's SHA-256. Its creation and finish times are those of the
    import; ``seconds`` in its ``final_metrics`` is the training time. A checkpoint that
    an earlier import stored is rejected unless ``again`` is True.

    Raises:
        RunImportError: naming the file and the problem; nothing was written then.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunImportError("not a folder")
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise RunImportError(f"missing {', '.join(missing)}")

    summary = _read_json(folder / "summary.json")
    status = STATUS_OF_SUMMARY.get(summary.get("status") if isinstance(summary, dict) else None)
    if status is None:
        raise RunImportError(
            f"summary.json: status must be one of {', '.join(STATUS_OF_SUMMARY)}, "
            f"got {summary.get('status') if isinstance(summary, dict) else summary!r}"
        )
    config = _read_json(folder / "config.json")
    if not isinstance(config, dict):
        raise RunImportError(f"config.json: must hold a JSON object, got {type(config).__name__}")
    body, resolved = _check_request(config)
    events = _read_metrics(folder / "metrics.jsonl", resolved.id)
    model = _load_checkpoint(folder / "checkpoint.npz", body)
    digest = _checkpoint_digest(folder / "checkpoint.npz")
    # NOTE: runs imported before the imports table existed (schema version 3) have no
    # record, and two imports of the same checkpoint running at once both pass.
    earlier = store.runs_imported_from(digest)
    if earlier and not again:
        raise RunImportError(
            f"checkpoint.npz: already imported as run {', '.join(earlier)}; "
            "pass --again to import another copy"
        )

    run_dir = Path(runs_dir) / resolved.id
    # Created before the try, so that the cleanup never removes a folder it did not create.
    run_dir.mkdir(parents=True)
    try:
        shutil.copyfile(folder / "checkpoint.npz", run_dir / CHECKPOINT_NAME)
        record = {
            "run_id": resolved.id,
            "train_config": resolved.config,
            "model_config": model.config,
            "param_count": model.param_count,
            "summary": summary,
        }
        write_json_atomically(run_dir / CONFIG_NAME, record)
        run = _store_run(store, body, resolved, events, status, summary, model, folder, digest)
    except BaseException:
        store.delete_run(resolved.id)
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    logger.info("imported %s as run %s (%s)", folder, run["id"], run["name"])
    return run


def _store_run(store, body, resolved, events, status, summary, model, folder, digest) -> dict:
    store.create_run(run_record(body, resolved, model.param_count))
    store.add_import(resolved.id, digest)
    for event in events:
        store.add_metric(resolved.id, event)
    store.add_log(resolved.id, utc_now(), f"imported from {folder.resolve()} (sha256 {digest})")
    store.mark_running(resolved.id)
    return store.finish_run(
        resolved.id,
        status,
        final_metrics=final_metrics_of(summary),
        has_checkpoint=True,
        param_count=model.param_count,
    )
