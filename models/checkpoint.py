"""Model checkpoints: one ``.npz`` of the parameters plus the model config as JSON.

The archive contains every parameter under its name and the key ``__config__``,
a 0-d unicode array with ``model.config`` as JSON. Loading never unpickles:
``np.load`` runs with ``allow_pickle=False``.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from models.factory import make_model
from models.readout import packed_params

CONFIG_KEY = "__config__"


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable or does not match its model config."""


def save_checkpoint(model, path):
    """Write the model's parameters and config to ``path`` atomically.

    The archive is written to a temporary file in the same folder and renamed
    over ``path``, so a reader sees either the old file or the whole new one.
    """
    path = os.fspath(path)
    if CONFIG_KEY in model.params:
        raise ValueError(f"parameter name {CONFIG_KEY!r} is reserved for the config")
    arrays = dict(model.params)
    arrays[CONFIG_KEY] = np.array(json.dumps(model.config, sort_keys=True))
    folder = os.path.dirname(os.path.abspath(path))
    handle = tempfile.NamedTemporaryFile(
        dir=folder, prefix=".checkpoint-", suffix=".tmp", delete=False
    )
    try:
        with handle:
            np.savez(handle, **arrays)
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def _read_arrays(path):
    """Return every array in the archive, raising CheckpointError for an unreadable file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted and cannot be read: {exc}"
        ) from exc


def _read_config(path, arrays):
    if CONFIG_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} has no {CONFIG_KEY!r} entry with the config")
    try:
        config = json.loads(str(arrays.pop(CONFIG_KEY)))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid JSON config: {exc}") from exc
    if not isinstance(config, dict) or "kind" not in config:
        raise CheckpointError(f"checkpoint {path} config must be an object with 'kind'")
    return config


def load_checkpoint(path):
    """Return the model saved at ``path``, ready to predict or train further.

    Raises:
        CheckpointError: when the file is missing, truncated or corrupted, or its
            parameters do not match the names, shapes or sizes that its config implies.
    """
    path = os.fspath(path)
    arrays = _read_arrays(path)
    config = _read_config(path, arrays)
    try:
        model = make_model(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from exc

    missing = sorted(set(model.params) - set(arrays))
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing parameters: {', '.join(missing)}")
    unexpected = sorted(set(arrays) - set(model.params))
    if unexpected:
        raise CheckpointError(
            f"checkpoint {path} has parameters its config does not define: {', '.join(unexpected)}"
        )
    for name, expected in model.params.items():
        if arrays[name].shape != expected.shape:
            raise CheckpointError(
                f"checkpoint {path} parameter {name!r} has shape {arrays[name].shape}, "
                f"expected {expected.shape} from the config"
            )
        if not np.issubdtype(arrays[name].dtype, np.floating):
            raise CheckpointError(
                f"checkpoint {path} parameter {name!r} has dtype {arrays[name].dtype}, "
                "expected a floating-point array"
            )
    model.params = packed_params({name: arrays[name].astype(model.dtype) for name in model.params})
    return model
