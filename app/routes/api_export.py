"""A run's bundle: its config, metrics and checkpoint in one ``.zip``."""

import json
import os
import tempfile
import zipfile

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from app.routes.api_runs import metrics_csv
from app.routes.common import ERROR_RESPONSES, get_store, require_run, safe_file_name
from app.worker import CHECKPOINT_NAME

router = APIRouter(prefix="/api/runs", tags=["runs"])


def write_bundle(path: str, run: dict, metrics: list[dict], checkpoint) -> None:
    """Write the bundle of one run to ``path``.

    Members: ``run.json`` (the run resource, with its resolved training config),
    ``config.json`` (the training config alone), ``metrics.json`` and ``metrics.csv``
    (the metric rows in step order) and, when the run has one, ``checkpoint.npz``.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("run.json", json.dumps(run, indent=2, sort_keys=True))
        archive.writestr("config.json", json.dumps(run["config"], indent=2, sort_keys=True))
        archive.writestr("metrics.json", json.dumps(metrics, indent=2))
        archive.writestr("metrics.csv", metrics_csv(metrics))
        if checkpoint is not None:
            # The checkpoint is already a zip archive; compressing it again gains little.
            archive.write(checkpoint, CHECKPOINT_NAME, compress_type=zipfile.ZIP_STORED)


@router.get(
    "/{run_id}/bundle",
    response_class=FileResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"application/zip": {}}}},
)
def download_bundle(run_id: str, request: Request) -> FileResponse:
    """Send the run's config, metrics (JSON and CSV) and checkpoint, if any, as one ``.zip``."""
    store = get_store(request)
    run = require_run(store, run_id)
    metrics = store.get_metrics(run_id)
    checkpoint = request.app.state.settings.runs_dir / run_id / CHECKPOINT_NAME
    if not (run["has_checkpoint"] and checkpoint.is_file()):
        checkpoint = None

    # A temporary file rather than memory, because a checkpoint may hold tens of megabytes.
    handle = tempfile.NamedTemporaryFile(prefix="relmem-bundle-", suffix=".zip", delete=False)
    handle.close()
    try:
        write_bundle(handle.name, run, metrics, checkpoint)
    except BaseException:
        os.unlink(handle.name)
        raise
    return FileResponse(
        handle.name,
        media_type="application/zip",
        filename=f"{safe_file_name(run['name'])}-bundle.zip",
        background=BackgroundTask(os.unlink, handle.name),
    )
