"""Encoding and decoding of the interleaved object streams of the two tracking tasks.

Both tracking tasks show one object per step as ``[one-hot id | x, y | extra]`` and end
with a query row ``[one-hot id | 0, 0 | extra]``. Shapes: ``B`` batch, ``S`` observation
steps, ``T = S + 1`` time steps, ``N`` objects.
"""

import numpy as np

from models.tasks.base import one_hot


def encode_stream(
    observed: np.ndarray, observed_xy: np.ndarray, query: np.ndarray, num_objects: int, extra: int
) -> np.ndarray:
    """Build the input rows of a tracking sequence.

    Args:
        observed: int ids of the object shown at each step, of shape (B, S).
        observed_xy: the observed positions, of shape (B, S, 2).
        query: int id of the queried object, of shape (B,).
        num_objects: ``N``, the width of the one-hot id.
        extra: trailing features per row (0, or 1 for a query flag set on the last row).

    Returns:
        ``x`` float64 of shape (B, S + 1, N + 2 + extra).
    """
    batch_size, num_observations = observed.shape
    x = np.zeros((batch_size, num_observations + 1, num_objects + 2 + extra))
    x[:, :-1, :num_objects] = one_hot(observed, num_objects)
    x[:, :-1, num_objects : num_objects + 2] = observed_xy
    x[:, -1, :num_objects] = one_hot(query, num_objects)
    if extra:
        x[:, -1, -1] = 1.0
    return x


def decode_stream(x: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read back the observed ids (B, S), observed positions (B, S, 2) and query ids (B,)."""
    observed = np.argmax(x[:, :-1, :num_objects], axis=-1)
    observed_xy = x[:, :-1, num_objects : num_objects + 2]
    query = np.argmax(x[:, -1, :num_objects], axis=-1)
    return observed, observed_xy, query


def last_observation_steps(
    observed: np.ndarray, query: np.ndarray, before: np.ndarray | None = None
) -> np.ndarray:
    """Return, per sequence, the latest step that showed the queried object, or -1.

    Args:
        observed: ids shown at each step, of shape (B, S).
        query: queried ids, of shape (B,).
        before: optional exclusive upper bound on the step, of shape (B,); use it to find
            the observation preceding a known one.
    """
    num_observations = observed.shape[1]
    matches = observed == query[:, None]
    if before is not None:
        matches &= np.arange(num_observations)[None, :] < before[:, None]
    # The first match in the reversed stream is the latest one.
    latest = num_observations - 1 - np.argmax(matches[:, ::-1], axis=1)
    return np.where(matches.any(axis=1), latest, -1)


def mean_squared_error(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Mean over batch and coordinates, the same reduction as the training loss."""
    return float(np.mean((predictions - targets) ** 2))
