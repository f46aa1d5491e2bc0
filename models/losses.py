"""Losses with their gradients, and classification accuracy.

Each loss returns ``(value, d_predictions)``: the mean over every target
(every batch entry, every step for per-step targets and, for MSE, every
output) and its gradient with respect to the predictions.
"""

import numpy as np

from models.layers import softmax, sum_of_squares

LOSS_NAMES = ("mse", "cross_entropy")


def mse(predictions, targets):
    """Mean squared error over all entries of predictions and targets of the same shape."""
    targets = np.asarray(targets, dtype=predictions.dtype)
    if targets.shape != predictions.shape:
        raise ValueError(
            f"mse targets must have the predictions' shape {predictions.shape}, got {targets.shape}"
        )
    diff = predictions - targets
    # Chunked BLAS dot products: np.mean's Python wrapper took about 25 microseconds
    # of a tracking training step in bench/compare.py, against 3 for these.
    return sum_of_squares(diff) / diff.size, (2.0 / diff.size) * diff


def _check_labels(logits, labels):
    labels = np.asarray(labels)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels must have shape {logits.shape[:-1]} to match logits {logits.shape}, "
            f"got {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    num_classes = logits.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got values from {labels.min()} "
            f"to {labels.max()}"
        )
    return labels


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy of logits (..., O) against integer labels (...)."""
    labels = _check_labels(logits, labels)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, labels[..., None], axis=-1)  # (..., 1)
    value = -float(np.mean(picked))

    # d/dlogits of -log softmax[label] is softmax - one_hot(label).
    d_logits = softmax(logits)
    np.put_along_axis(
        d_logits, labels[..., None], np.take_along_axis(d_logits, labels[..., None], -1) - 1, -1
    )
    return value, d_logits / labels.size


def accuracy(logits, labels):
    """Return the fraction of rows whose largest logit is at the label."""
    labels = _check_labels(logits, labels)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def loss_and_gradient(loss, predictions, targets):
    """Dispatch to the loss named ``loss`` ("mse" or "cross_entropy")."""
    if loss == "mse":
        return mse(predictions, targets)
    if loss == "cross_entropy":
        return softmax_cross_entropy(predictions, targets)
    raise ValueError(f"loss must be one of {list(LOSS_NAMES)}, got {loss!r}")
