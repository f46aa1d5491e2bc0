"""Adam with optional global-norm gradient clipping, and learning-rate schedules.

Parameters and gradients are flat ``dict[str, np.ndarray]`` with the same keys; the
optimizer updates the parameter arrays in place and keeps its moments in their dtype.
"""

import math

import numpy as np

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

    Args:
        params: the parameters to update, used only to allocate the moments.
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
        self.first_moment = {key: np.zeros_like(value) for key, value in params.items()}
        self.second_moment = {key: np.zeros_like(value) for key, value in params.items()}

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

        norm = global_norm(grads)
        if not math.isfinite(norm):
            return norm
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm

        self.steps_taken += 1
        first_correction = 1.0 - self.beta1**self.steps_taken
        second_correction = 1.0 - self.beta2**self.steps_taken
        step_size = learning_rate * math.sqrt(second_correction) / first_correction
        eps_hat = self.eps * math.sqrt(second_correction)
        for key, param in params.items():
            grad = grads[key] * scale if scale != 1.0 else grads[key]
            first, second = self.first_moment[key], self.second_moment[key]
            first *= self.beta1
            first += (1.0 - self.beta1) * grad
            second *= self.beta2
            second += (1.0 - self.beta2) * np.square(grad)
            # Folding both corrections into step size and eps is exact:
            # lr * m_hat / (sqrt(v_hat) + eps) == step_size * m / (sqrt(v) + eps_hat).
            # Python floats keep the moments' dtype, so the update has the parameter's dtype.
            param -= step_size * first / (np.sqrt(second) + eps_hat)
        return norm
