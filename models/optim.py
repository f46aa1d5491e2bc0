"""Adam with optional global-norm gradient clipping, and learning-rate schedules.

Parameters and gradients are flat ``dict[str, np.ndarray]`` with the same keys; the
optimizer updates the parameter arrays in place and keeps its moments in their dtype.
"""

import math

import numpy as np

from models.layers import sum_of_squares

LR_SCHEDULES = ("constant", "cosine")


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """Return the Euclidean norm of all gradients taken together, summed in float64."""
    total = 0.0
    for grad in grads.values():
        total += float(np.sum(np.square(grad, dtype=np.float64)))
    return math.sqrt(total)


def scheduled_learning_rate(
    step: int,
    *,
    peak: float,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    final_fraction: float = 0.1,
) -> float:
    """Return the learning rate for the 0-based optimizer ``step``.

    The first ``warmup_steps`` steps rise linearly to ``peak``, reaching it at step
    ``warmup_steps - 1``. After the warm-up, ``"constant"`` stays at ``peak`` and
    ``"cosine"`` follows half a cosine from ``peak`` down to ``final_fraction * peak``,
    which it reaches at the last step ``total_steps - 1``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}: expected one of {LR_SCHEDULES}")
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak

    decay_steps = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    floor = final_fraction * peak
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction and optional gradient clipping.

    When ``clip_norm`` is set and the global norm of the gradients exceeds it, every
    gradient is scaled by ``clip_norm / norm`` before the moments are updated.

    The moments of all parameters of one dtype live in one flat array each, and
    ``first_moment[key]`` and ``second_moment[key]`` are views into them. A step
    copies the gradients into one flat buffer and updates it with a dozen
    whole-array operations, instead of a dozen per parameter.

    Args:
        params: the parameters to update. Their shapes size the moments, and when
            they are views of one buffer, as ``models.readout.packed_params``
            makes them, a step updates that buffer with one subtraction.
        beta1: decay rate of the first moment [0.9].
        beta2: decay rate of the second moment [0.999].
        eps: added to the root of the second moment [1e-8].
        clip_norm: maximum global gradient norm, or None for no clipping [None].
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        clip_norm: float | None = None,
    ):
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"beta1 must be in [0, 1), got {beta1!r}")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"beta2 must be in [0, 1), got {beta2!r}")
        if not eps > 0.0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        if clip_norm is not None and not clip_norm > 0.0:
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.clip_norm = clip_norm
        self.steps_taken = 0
        self.first_moment = {}
        self.second_moment = {}
        self._groups = [_FlatGroup(params, keys) for keys in _keys_by_dtype(params)]
        for group in self._groups:
            self.first_moment.update(group.views(group.first))
            self.second_moment.update(group.views(group.second))

    def step(
        self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], learning_rate: float
    ) -> float:
        """Update ``params`` in place from ``grads`` and return the gradients' norm before clipping.

        Gradients with a NaN or infinite norm leave the parameters and moments unchanged,
        so the caller can stop on the returned value without losing the last good state.
        """
        if grads.keys() != self.first_moment.keys():
            missing = sorted(self.first_moment.keys() - grads.keys())
            extra = sorted(grads.keys() - self.first_moment.keys())
            raise ValueError(
                f"gradient keys differ from parameters: missing {missing}, extra {extra}"
            )

        for group in self._groups:
            group.gather(grads)
        norm = math.sqrt(sum(group.squared_norm() for group in self._groups))
        if not math.isfinite(norm):
            return norm
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm

        self.steps_taken += 1
        first_correction = 1.0 - self.beta1**self.steps_taken
        second_correction = 1.0 - self.beta2**self.steps_taken
        # Folding both corrections into step size and eps is exact:
        # lr * m_hat / (sqrt(v_hat) + eps) == step_size * m / (sqrt(v) + eps_hat).
        step_size = learning_rate * math.sqrt(second_correction) / first_correction
        eps_hat = self.eps * math.sqrt(second_correction)
        for group in self._groups:
            group.update(self, scale, step_size, eps_hat)
            group.scatter(params)
        return norm


def _keys_by_dtype(params):
    """Return the parameter names grouped by dtype, in the order of ``params``."""
    groups = {}
    for key, value in params.items():
        groups.setdefault(np.dtype(value.dtype), []).append(key)
    return list(groups.values())


class _FlatGroup:
    """Flat moments and buffers for the parameters of one dtype."""

    def __init__(self, params, keys):
        self.keys = keys
        self.shapes = [params[key].shape for key in keys]
        sizes = [params[key].size for key in keys]
        self.offsets = np.cumsum([0, *sizes]).tolist()
        dtype = params[keys[0]].dtype
        total = self.offsets[-1]
        self.first = np.zeros(total, dtype=dtype)
        self.second = np.zeros(total, dtype=dtype)
        self.grad = np.empty(total, dtype=dtype)
        self.scratch = np.empty(total, dtype=dtype)
        # The flat buffer that models.readout's packed_params laid the parameters out
        # in, or None. A step then updates them with one subtraction from it.
        self.packed = self._packed_buffer(params)
        self.packed_views = [(key, params[key]) for key in keys]

    def _packed_buffer(self, params):
        """Return the 1-D buffer that contains the parameters one after another in key order.

        Returns None when the parameters are not laid out that way.
        """
        base = params[self.keys[0]].base
        if base is None or base.ndim != 1 or base.size != self.offsets[-1]:
            return None
        address = base.__array_interface__["data"][0]
        for key, start in zip(self.keys, self.offsets[:-1], strict=True):
            view = params[key]
            view_address = view.__array_interface__["data"][0]
            if view.base is not base or not view.flags.c_contiguous:
                return None
            if view_address != address + start * base.itemsize:
                return None
        return base

    def views(self, flat):
        """Return {key: view of ``flat`` with the parameter's shape}."""
        return {
            key: flat[start:end].reshape(shape)
            for key, shape, start, end in zip(
                self.keys, self.shapes, self.offsets[:-1], self.offsets[1:], strict=True
            )
        }

    def gather(self, grads):
        np.concatenate([grads[key].reshape(-1) for key in self.keys], out=self.grad)

    def squared_norm(self):
        """Return the squared norm of the gathered gradients, summed by chunks in float64."""
        return sum_of_squares(self.grad)

    def update(self, adam, scale, step_size, eps_hat):
        """Update the moments from the gathered gradients; leave the step in ``scratch``."""
        grad, first, second, scratch = self.grad, self.first, self.second, self.scratch
        if scale != 1.0:
            grad *= scale
        # Python floats keep the moments' dtype, so the update has the parameters' dtype.
        first *= adam.beta1
        np.multiply(grad, 1.0 - adam.beta1, out=scratch)
        first += scratch
        second *= adam.beta2
        np.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - adam.beta2
        second += scratch
        np.sqrt(second, out=scratch)
        scratch += eps_hat
        np.multiply(first, step_size, out=grad)  # the gradient is no longer needed
        np.divide(grad, scratch, out=scratch)

    def scatter(self, params):
        """Subtract the step in ``scratch`` from every parameter, in place."""
        if self.packed is not None and all(
            params[key] is view and view.base is self.packed for key, view in self.packed_views
        ):
            self.packed -= self.scratch
            return
        for key, shape, start, end in zip(
            self.keys, self.shapes, self.offsets[:-1], self.offsets[1:], strict=True
        ):
            params[key] -= self.scratch[start:end].reshape(shape)
