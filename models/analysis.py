"""Slot, attention, gate and connectivity analysis of a trained model over a batch.

Shapes: B batch, T steps, D input size, O output size, L attention blocks, H heads, N
memory slots, F memory width, G gate width per slot, U LSTM hidden units, J tracked
objects. An attention array is (B, T, L, H, N+1, N+1) as ``RelationalMemory`` traces it:
row = query, column = key, the last row and column being the input row.

Definitions used throughout:

- *attention received* by a row j is the mean over the N+1 query rows of the weight they
  put on key j. Under uniform attention every row receives 1/(N+1).
- *input attention* of slot i is the weight its query puts on the input row.
- *entropy* of a query row is ``-sum_j a_j log a_j`` in nats; uniform attention over the
  N+1 keys gives the maximum, ``log(N+1)``.
- *usage* of slot j is the largest, over timesteps, blocks and heads, of the batch-mean
  weight that the other N rows (the other slots and the input row) put on key j, in units
  of the uniform share 1/(N+1). A slot is *unused* when its usage is below
  ``UNUSED_SLOT_SHARE``: no other row ever reads it through attention at even half the
  uniform weight. Such a slot may still reach the output through the readout, which sees
  every slot.
- *memory change* of slot i at step t is ``||M_t[i] - M_{t-1}[i]||_2``, with M_{-1} the
  initial memory.
- *object following* (tracking tasks): the Pearson correlation, over the observation steps
  of every sequence in the batch, between a per-slot signal (input attention, averaged over
  blocks and heads, or memory change) and the indicator that object k is the one observed
  at that step. The query step is left out.
- *connectivity* of input step t is the Frobenius norm of the Jacobian of the prediction
  (the last step's outputs, logits for classification) with respect to x_t, computed with
  one backward pass per output unit.
"""

import math

import numpy as np

from models.rmc import initial_memory

# A slot whose peak read weight from the other rows stays below this fraction of the
# uniform share 1/(N+1) counts as unused.
UNUSED_SLOT_SHARE = 0.5


# --- attention -------------------------------------------------------------------------


def attention_received(attention: np.ndarray) -> np.ndarray:
    """Return the mean weight the query rows put on each key, of shape (B, T, L, H, N+1)."""
    return attention.mean(axis=-2)


def input_attention(attention: np.ndarray) -> np.ndarray:
    """Return each slot's weight on the input row, of shape (B, T, L, H, N)."""
    return attention[..., :-1, -1]


def attention_entropy(attention: np.ndarray) -> np.ndarray:
    """Return the entropy in nats of each query row, of shape (B, T, L, H, N+1)."""
    safe = np.where(attention > 0, attention, 1.0)  # 0 log 0 = 0
    return -(attention * np.log(safe)).sum(axis=-1)


def read_by_other_rows(attention: np.ndarray) -> np.ndarray:
    """Return the mean weight the other N rows put on each slot key, of shape (B, T, L, H, N)."""
    rows = attention.shape[-1]
    slots = rows - 1
    column_sums = attention[..., :slots].sum(axis=-2)  # (B, T, L, H, N), over all queries
    own = np.diagonal(attention, axis1=-2, axis2=-1)[..., :slots]  # a slot reading itself
    return (column_sums - own) / slots


def slot_usage(attention: np.ndarray) -> np.ndarray:
    """Return each slot's peak read weight from the other rows per uniform share, shape (N,)."""
    rows = attention.shape[-1]
    read = read_by_other_rows(attention).mean(axis=0)  # (T, L, H, N), mean over the batch
    return read.max(axis=(0, 1, 2)) * rows


def unused_slots(usage: np.ndarray, threshold: float = UNUSED_SLOT_SHARE) -> list[int]:
    """Return the indices of the slots whose usage is below ``threshold``."""
    return [int(slot) for slot in np.flatnonzero(usage < threshold)]


# --- memory and gates ------------------------------------------------------------------


def memory_change(memory: np.ndarray) -> np.ndarray:
    """Return ``||M_t[i] - M_{t-1}[i]||`` of shape (B, T, N) from memory (B, T, N, F)."""
    batch, _, slots, width = memory.shape
    start = initial_memory(batch, slots, width, memory.dtype)[:, None]  # (B, 1, N, F)
    previous = np.concatenate([start, memory[:, :-1]], axis=1)  # (B, T, N, F)
    return np.linalg.norm(memory - previous, axis=-1)


def gate_openness(gate: np.ndarray | None) -> np.ndarray | None:
    """Return the batch and unit mean of an RMC gate (B, T, N, G) as (T, N), or None."""
    return None if gate is None else gate.mean(axis=(0, 3))


# --- tracked objects -------------------------------------------------------------------


def object_correlation(signal: np.ndarray, observed: np.ndarray, num_objects: int) -> np.ndarray:
    """Correlate a per-slot signal with which object each step observes.

    Args:
        signal: a per-slot value at every step, of shape (B, T, N).
        observed: the object id observed at each step, of shape (B, T); the last step is
            the query and is left out.
        num_objects: J, the number of objects.

    Returns:
        Pearson correlations of shape (N, J), NaN where the signal or the indicator is
        constant over the observation steps.
    """
    slots = signal.shape[-1]
    # S = B * (T - 1) observation steps in all.
    values = signal[:, :-1].reshape(-1, slots)  # (B, T-1, N) -> (S, N)
    ids = observed[:, :-1].reshape(-1)  # (B, T-1) -> (S,)
    indicators = (ids[:, None] == np.arange(num_objects)[None, :]).astype(np.float64)  # (S, J)

    # A constant column has no correlation; test it on the raw values, because centring
    # leaves rounding residue that would make a constant look varying.
    varies = np.outer(np.ptp(values, axis=0) > 0, np.ptp(indicators, axis=0) > 0)  # (N, J)
    values = values - values.mean(axis=0)
    indicators = indicators - indicators.mean(axis=0)
    covariance = values.T @ indicators  # (N, S) @ (S, J)
    scale = np.outer(np.linalg.norm(values, axis=0), np.linalg.norm(indicators, axis=0))
    return np.where(varies, covariance / np.where(varies, scale, 1.0), np.nan)


# --- connectivity ----------------------------------------------------------------------


def input_gradient_norms(model, x: np.ndarray) -> np.ndarray:
    """Return the Jacobian norm of the prediction with respect to each input step, (B, T).

    Uses the model's ``forward``/``backward`` pair: one backward pass per output unit, each
    seeded with that unit of the last step's outputs.
    """
    outputs, cache, _ = model.forward(x)  # (B, O), or (B, T, O) with per-step targets
    squared = np.zeros(x.shape[:2])
    for unit in range(outputs.shape[-1]):
        d_outputs = np.zeros_like(outputs)
        if outputs.ndim == 3:
            d_outputs[:, -1, unit] = 1.0
        else:
            d_outputs[:, unit] = 1.0
        dx, _ = model.backward(d_outputs, cache)  # (B, T, D)
        squared += (dx.astype(np.float64) ** 2).sum(axis=-1)
    return np.sqrt(squared)


# --- whole-batch analysis --------------------------------------------------------------


def analyse_batch(model, x: np.ndarray, info: dict | None = None) -> dict:
    """Analyse ``model`` on inputs x (B, T, D); ``info`` is the task's ``sample_with_info`` dict.

    Returns a dict of arrays, batch means unless stated:

    - both models: ``kind``; ``connectivity`` (B, T) per sequence.
    - RMC: ``attention_received`` and ``entropy`` (T, L, H, N+1); ``input_attention``
      (T, L, H, N); ``max_entropy`` log(N+1); ``input_gate`` and ``forget_gate`` (T, N), or
      None without gates; ``memory_change`` (T, N); ``slot_usage`` (N,); ``unused_slots``
      (a list of slot indices) and ``unused_threshold``. With tracking ``info``, also
      ``object_attention_correlation`` and ``object_update_correlation`` (N, J).
    - LSTM: ``input_gate``, ``forget_gate`` and ``output_gate`` (T,), means over the batch
      and the units.
    """
    _, trace = model.predict(x, trace=True)
    result = {"kind": model.kind, "connectivity": input_gradient_norms(model, x)}
    if model.kind == "lstm":
        for name in ("input_gate", "forget_gate", "output_gate"):
            result[name] = trace[name].mean(axis=(0, 2))  # (B, T, U) -> (T,)
        return result

    attention = trace["attention"].astype(np.float64)  # (B, T, L, H, N+1, N+1)
    changes = memory_change(trace["memory"].astype(np.float64))  # (B, T, N)
    usage = slot_usage(attention)
    result.update(
        attention_received=attention_received(attention).mean(axis=0),
        input_attention=input_attention(attention).mean(axis=0),
        entropy=attention_entropy(attention).mean(axis=0),
        max_entropy=math.log(attention.shape[-1]),
        input_gate=gate_openness(trace.get("input_gate")),
        forget_gate=gate_openness(trace.get("forget_gate")),
        memory_change=changes.mean(axis=0),
        slot_usage=usage,
        unused_slots=unused_slots(usage),
        unused_threshold=UNUSED_SLOT_SHARE,
    )
    if info is not None and "observed_object" in info and "positions" in info:
        observed = np.asarray(info["observed_object"])
        num_objects = np.asarray(info["positions"]).shape[2]
        read_input = input_attention(attention).mean(axis=(2, 3))  # (B, T, N) over L and H
        result["object_attention_correlation"] = object_correlation(
            read_input, observed, num_objects
        )
        result["object_update_correlation"] = object_correlation(changes, observed, num_objects)
    return result
