"""Held-out evaluation in bounded chunks, with accuracy per group of sequences.

Shapes: ``B`` held-out sequences, ``T`` time steps, ``D`` input size, ``O`` outputs or
classes.
"""

import numpy as np

from models.losses import accuracy, loss_and_gradient

# Held-out sequences go through the model in chunks of this many, so the activations of
# one forward pass stay the size of a training batch or smaller whatever eval_size is.
EVAL_CHUNK = 1024


def predict_in_chunks(model, x: np.ndarray, chunk: int = EVAL_CHUNK) -> np.ndarray:
    """Return the model's predictions for ``x`` (B, T, D), computed ``chunk`` rows at a time.

    The result has the shape ``model.predict`` gives for the whole of ``x``: (B, O), or
    (B, T, O) for per-step targets.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    parts = [model.predict(x[start : start + chunk])[0] for start in range(0, len(x), chunk)]
    return np.concatenate(parts, axis=0)


def score_predictions(
    loss: str, predictions: np.ndarray, y: np.ndarray
) -> tuple[float, float | None]:
    """Return the mean loss of ``predictions`` on ``y`` and, for "cross_entropy", the accuracy."""
    value, _ = loss_and_gradient(loss, predictions, y)
    return value, accuracy(predictions, y) if loss == "cross_entropy" else None


def evaluate(model, loss: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
    """Return the mean loss on ``(x, y)`` and, for "cross_entropy", the accuracy."""
    return score_predictions(loss, predict_in_chunks(model, x), y)


def accuracy_by_group(predictions: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """Return the accuracy of each group of rows, keyed by the group value as a string.

    Args:
        predictions: logits of shape (B, O).
        y: integer labels of shape (B,).
        groups: one integer group value per row, shape (B,); for N-th farthest, the n of
            each question. Groups without rows have no key.
    """
    correct = np.argmax(predictions, axis=-1) == y  # (B,)
    groups = np.asarray(groups)
    return {
        str(int(value)): float(np.mean(correct[groups == value])) for value in np.unique(groups)
    }
