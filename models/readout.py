"""The readout head and the model interface shared by the LSTM and the RMC.

A model is a recurrent core followed by a readout MLP. The core turns inputs
of shape (B, T, D) into per-step features of width S. The readout maps the
last step's features (B, S) to outputs of width O, or every step's features
(B, T, S) when ``per_step_targets`` is set; the core computes and
backpropagates only the features the readout uses. Subclasses provide the
core, and this module provides ``forward``, ``backward``, ``loss_and_grads``
and ``predict`` on top of it.

Readout parameters are ``readout.{j}.W`` and ``readout.{j}.b`` for layer
``j``; the widths are ``readout_hidden`` followed by O, with ReLU between
layers and none after the last.

Each model keeps an ``ArrayPool`` of the buffers its cores write their
activations to, so that one forward and backward pass reuses the memory of
the previous one.
"""

import dataclasses
import threading
from typing import Any, NamedTuple

import numpy as np

from models.layers import init_linear, mlp_backward, mlp_forward
from models.losses import loss_and_gradient


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Fields shared by every model kind; validated by ``models.factory.make_model``."""

    input_size: int
    output_size: int
    seed: int = 0
    dtype: str = "float32"
    per_step_targets: bool = False
    readout_hidden: tuple[int, ...] = ()


class ArrayPool:
    """Buffers kept between the calls of one model, keyed by shape and dtype.

    The cores write a whole sequence's activations into buffers of hundreds of
    kilobytes to tens of megabytes. Freed, such buffers go back to the operating
    system, and the first write to every page of a new one is a page fault.
    On the RMC configurations of bench/compare.py, reusing them cut the time
    of a training step by 19 to 32% (bench/trees.py, docs/benchmarks.md).

    A forward pass takes its buffers through a ``PoolLease``, and
    ``loss_and_grads`` and ``predict``, which keep no cache, give them back at
    the end. The caches of ``forward`` keep their buffers, so ``backward`` may
    run on a cache any number of times. The pool keeps buffers of every shape
    it has seen, such as the training batch and the evaluation chunks, up to
    ``max_bytes``. It also keeps whole structures of buffers that
    ``PoolLease.reuse`` built, such as the RMC's tapes with their views, by key.

    Args:
        max_bytes: the maximum memory kept for reuse, in bytes. Buffers given
            back beyond it are left to the garbage collector.
    """

    def __init__(self, max_bytes=512 * 2**20):
        self.max_bytes = max_bytes
        self._free = {}  # (shape, dtype) -> list of arrays
        self._free_sets = {}  # key -> list of (structure, bytes) that PoolLease.reuse built
        self._bytes = 0
        self._lock = threading.Lock()  # concurrent predict calls share one model

    def take(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            arrays = self._free.get(key)
            if arrays:
                self._bytes -= arrays[-1].nbytes
                return arrays.pop()
        return np.empty(key[0], dtype=key[1])

    def take_set(self, key):
        """Return a (structure, bytes) pair given back under ``key``, or None."""
        with self._lock:
            sets = self._free_sets.get(key)
            if sets:
                self._bytes -= sets[-1][1]
                return sets.pop()
        return None

    def give_back(self, arrays, sets=()):
        """Keep ``arrays`` and the ``(key, structure, bytes)`` triples of ``sets`` for reuse."""
        with self._lock:
            for array in arrays:
                if self._bytes + array.nbytes <= self.max_bytes:
                    self._free.setdefault((array.shape, array.dtype), []).append(array)
                    self._bytes += array.nbytes
            for key, structure, size in sets:
                if self._bytes + size <= self.max_bytes:
                    self._free_sets.setdefault(key, []).append((structure, size))
                    self._bytes += size

    def lease(self):
        return PoolLease(self)


class PoolLease:
    """The buffers one forward pass took from an ``ArrayPool``, given back together."""

    def __init__(self, pool):
        self._pool = pool
        self._arrays = []
        self._sets = []  # (key, structure, bytes) taken by reuse

    def empty(self, shape, dtype):
        """Return an uninitialised array of ``shape`` and ``dtype``, like ``np.empty``."""
        array = self._pool.take(shape, dtype)
        self._arrays.append(array)
        return array

    def reuse(self, key, build):
        """Return a structure of arrays for ``key``: one an earlier lease gave back, or a new one.

        ``build(empty)`` makes the structure, taking each array from
        ``empty(shape, dtype)``. Every structure of one key must be built
        alike, because a caller gets any of them back with the contents of
        its arrays undefined, as from ``np.empty``, but with its views and
        other objects as built. It goes back to the pool with the lease.
        """
        entry = self._pool.take_set(key)  # (structure, bytes) or None
        if entry is None:
            sizes = []

            def empty(shape, dtype):
                array = np.empty(shape, dtype)
                sizes.append(array.nbytes)
                return array

            entry = (build(empty), sum(sizes))
        self._sets.append((key, *entry))
        return entry[0]

    def release(self):
        """Give every buffer back to the pool. The arrays must not be read afterwards."""
        arrays, self._arrays = self._arrays, []
        sets, self._sets = self._sets, []
        self._pool.give_back(arrays, sets)


class ModelCache(NamedTuple):
    core: Any  # the core's own cache
    readout: Any  # MLPCache of the readout
    lease: PoolLease  # the buffers of the core's cache


def packed_params(params):
    """Return params with every array copied into one flat buffer per dtype, as views of it.

    The keys keep their order, and each dtype's arrays lie in that order, one after
    another, so that ``models.optim.Adam`` updates all of them with one operation.
    """
    packed = {}
    for dtype in dict.fromkeys(value.dtype for value in params.values()):
        keys = [key for key, value in params.items() if value.dtype == dtype]
        flat = np.concatenate([np.ravel(params[key]) for key in keys])
        offsets = np.cumsum([0] + [params[key].size for key in keys]).tolist()
        for key, start, end in zip(keys, offsets[:-1], offsets[1:], strict=True):
            packed[key] = flat[start:end].reshape(params[key].shape)
    return {key: packed[key] for key in params}


def zero_grads(params):
    return {name: np.zeros_like(value) for name, value in params.items()}


def add_grads(grads, prefix, local_grads):
    """Add a layer's ``{"W": ...}`` grads into the flat dict under ``prefix.W`` and so on."""
    for name, value in local_grads.items():
        grads[f"{prefix}.{name}"] += value


class RecurrentModel:
    """Base class: a recurrent core followed by a readout MLP.

    Subclasses set ``kind`` and implement ``_init_core_params``,
    ``_feature_size``, ``_core_forward``, ``_core_backward`` and ``_trace``.
    """

    kind = ""

    def __init__(self, hyper, params=None):
        self.hyper = hyper
        self.dtype = np.dtype(hyper.dtype)
        if params is None:
            params = self._init_params(np.random.default_rng(hyper.seed))
        self.params = packed_params(params)
        self.pool = ArrayPool()

    @property
    def config(self):
        """JSON-ready dict with everything ``make_model(**config)`` needs to rebuild the model."""
        fields = dataclasses.asdict(self.hyper)
        fields["readout_hidden"] = list(fields["readout_hidden"])
        return {"kind": self.kind, **fields}

    @property
    def param_count(self):
        return int(sum(value.size for value in self.params.values()))

    def _init_params(self, rng):
        params = self._init_core_params(rng)
        widths = [self._feature_size, *self.hyper.readout_hidden, self.hyper.output_size]
        for j, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            params[f"readout.{j}.W"], params[f"readout.{j}.b"] = init_linear(
                rng, fan_in, fan_out, self.dtype
            )
        return params

    def _readout_layers(self):
        count = len(self.hyper.readout_hidden) + 1
        return [
            (self.params[f"readout.{j}.W"], self.params[f"readout.{j}.b"]) for j in range(count)
        ]

    def _check_input(self, x):
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[2] != self.hyper.input_size or x.shape[1] < 1:
            raise ValueError(
                f"x must have shape (batch, steps >= 1, {self.hyper.input_size}), got {x.shape}"
            )
        return x.astype(self.dtype, copy=False)

    def forward(self, x, trace=False):
        """Run the model on x of shape (B, T, D).

        Returns:
            (outputs, cache, trace). The outputs have shape (B, O), or (B, T, O)
            with ``per_step_targets``. The cache is the input of ``backward``.
            The trace is None unless ``trace`` is True, and then the dict of
            arrays documented on the subclass's ``_trace``.
        """
        x = self._check_input(x)
        lease = self.pool.lease()
        features, core_cache = self._core_forward(x, lease)  # (B, T, S) or (B, S)
        outputs, readout_cache = mlp_forward(features, self._readout_layers())
        cache = ModelCache(core_cache, readout_cache, lease)
        return outputs, cache, (self._trace(core_cache) if trace else None)

    def backward(self, d_outputs, cache, input_grad=True):
        """Backpropagate through time from d_outputs (the shape of forward's outputs).

        With ``input_grad=False`` the products that only the input's gradient
        needs are skipped and dx is None, as in ``loss_and_grads``.

        Returns:
            (dx, grads): dx of shape (B, T, D) and grads with exactly the keys of params.
        """
        d_features, readout_grads = mlp_backward(d_outputs, cache.readout)
        dx, grads = self._core_backward(d_features, cache.core, cache.lease, input_grad)
        for j, local in enumerate(readout_grads):
            grads.update({f"readout.{j}.{name}": value for name, value in local.items()})
        return dx, grads

    def loss_and_grads(self, x, y, loss):
        """Return the mean loss (a float) and its gradient for every parameter.

        Args:
            x: inputs of shape (B, T, D).
            y: targets (B, O) for "mse" or integer labels (B,) for
                "cross_entropy"; with ``per_step_targets``, (B, T, O) or (B, T).
            loss: "mse" or "cross_entropy".
        """
        outputs, cache, _ = self.forward(x)
        value, d_outputs = loss_and_gradient(loss, outputs, y)
        _, grads = self.backward(d_outputs, cache, input_grad=False)
        cache.lease.release()  # nothing reads the cache any more
        return value, grads

    def predict(self, x, trace=False):
        """Return (predictions, trace); predictions are logits for classification.

        The trace is None unless requested; its arrays are documented on the
        subclass's ``_trace``.
        """
        outputs, cache, trace_arrays = self.forward(x, trace=trace)
        cache.lease.release()  # the outputs and the trace are copies
        return outputs, trace_arrays

    # Subclass hooks.

    @property
    def _feature_size(self):
        raise NotImplementedError

    def _init_core_params(self, rng):
        raise NotImplementedError

    def _core_forward(self, x, lease):
        """Return (features, core cache); take buffers from ``lease.empty``.

        The features are those of every step, (B, T, S), with ``per_step_targets``,
        else those of the last step, (B, S).
        """
        raise NotImplementedError

    def _core_backward(self, d_features, core_cache, lease, input_grad):
        """Return (dx, grads of the core parameters); may take more buffers from the lease.

        ``d_features`` has the shape of the features ``_core_forward`` returned.
        dx is None when ``input_grad`` is False.
        """
        raise NotImplementedError

    def _trace(self, core_cache):
        raise NotImplementedError
