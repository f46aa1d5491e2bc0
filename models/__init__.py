"""Relational Memory Core and LSTM in pure NumPy, with their tasks and training loop.

The public names are listed in ``_EXPORTS`` and imported on first use, so that
``import models`` stays cheap and a script can use one part without the rest.
"""

import importlib

_EXPORTS = {
    "make_task": "models.tasks",
    "TASK_SPECS": "models.tasks",
    "Task": "models.tasks",
    "make_model": "models.factory",
    "MODEL_SPECS": "models.factory",
    "save_checkpoint": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "CheckpointError": "models.checkpoint",
    "accuracy": "models.losses",
    "Adam": "models.optim",
    "TrainConfig": "models.training",
    "TrainResult": "models.training",
    "TrainingDiverged": "models.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
