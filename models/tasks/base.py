"""Task base class and option validation shared by every task generator.

Shapes: ``B`` batch, ``T`` time steps, ``D`` input size, ``O`` output size.
"""

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

OPTION_TYPES = ("int", "float", "bool")


@dataclass(frozen=True)
class OptionSpec:
    """One task option: its type, default, inclusive limits and help text."""

    name: str
    type: str
    default: Any
    min: float | None = None
    max: float | None = None
    help: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "help": self.help,
        }


def _describe_rule(spec: OptionSpec) -> str:
    kind = {"int": "an integer", "float": "a finite number", "bool": "true or false"}[spec.type]
    if spec.type == "bool":
        return f"must be {kind}"
    return f"must be {kind} between {spec.min} and {spec.max}"


def _coerce_option(spec: OptionSpec, value: Any) -> int | float | bool | None:
    """Return ``value`` as the option's Python type, or None when it has the wrong type."""
    if spec.type == "bool":
        return bool(value) if isinstance(value, bool | np.bool_) else None
    if isinstance(value, bool | np.bool_):
        return None
    if spec.type == "int":
        return int(value) if isinstance(value, int | np.integer) else None
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value):
        return float(value)
    return None


def validate_options(task_name: str, specs: tuple[OptionSpec, ...], options: dict) -> dict:
    """Check ``options`` against ``specs`` and return every option resolved with its default.

    Raises:
        ValueError: for an unknown option, a value of the wrong type or a value outside
            the option's limits; the message names the option, the rule and the value.
    """
    by_name = {spec.name: spec for spec in specs}
    unknown = sorted(set(options) - set(by_name))
    if unknown:
        expected = ", ".join(sorted(by_name)) or "no options"
        raise ValueError(
            f"unknown option {unknown[0]!r} for task {task_name!r}: expected one of {expected}"
        )

    resolved = {}
    for spec in specs:
        value = options.get(spec.name, spec.default)
        coerced = _coerce_option(spec, value)
        in_range = coerced is not None and (spec.type == "bool" or spec.min <= coerced <= spec.max)
        if not in_range:
            raise ValueError(
                f"invalid option {spec.name!r} for task {task_name!r}: "
                f"{_describe_rule(spec)}, got {value!r}"
            )
        resolved[spec.name] = coerced
    return resolved


def one_hot(indices: np.ndarray, depth: int) -> np.ndarray:
    """Return float64 one-hot vectors of shape ``indices.shape + (depth,)``."""
    return np.eye(depth)[indices]


class Task:
    """A seeded generator of input sequences and targets for one task.

    Subclasses set the class attributes, compute the sizes in ``__init__`` and implement
    ``_draw`` and ``_baselines``.

    Attributes:
        name: task name accepted by ``make_task``.
        options: the resolved options, JSON-ready.
        input_size: ``D``, features per time step.
        output_size: ``O``, regression outputs or number of classes.
        seq_len: ``T``, time steps per sequence.
        loss: ``"mse"`` or ``"cross_entropy"``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    loss: ClassVar[str]
    option_specs: ClassVar[tuple[OptionSpec, ...]]
    presets: ClassVar[dict[str, dict]] = {}

    input_size: int
    output_size: int
    seq_len: int

    def __init__(self, **options):
        self.options = validate_options(self.name, self.option_specs, options)

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"{type(self).__name__}({options})"

    @classmethod
    def spec(cls) -> dict:
        """Return the JSON-ready description of the task and its options."""
        return {
            "description": cls.description,
            "loss": cls.loss,
            "options": [spec.to_dict() for spec in cls.option_specs],
            "presets": {name: dict(values) for name, values in cls.presets.items()},
        }

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw a batch: ``x`` float64 (B, T, D) and ``y`` float64 (B, O) or int64 (B,)."""
        x, y, _ = self.sample_with_info(batch_size, rng)
        return x, y

    def sample_with_info(
        self, batch_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Draw a batch as ``sample`` does, plus a dict of arrays describing each sequence.

        The same generator state gives the same ``x`` and ``y`` as ``sample``.
        """
        if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool):
            raise TypeError(f"batch_size must be an integer, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
                f"got {type(rng).__name__}"
            )
        return self._draw(int(batch_size), rng)

    def baselines(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Score the task's trivial predictors on a batch drawn by ``sample``.

        Returns the mean squared error of each predictor for MSE tasks, and its accuracy
        for classification tasks, keyed by predictor name.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        expected_x = (self.seq_len, self.input_size)
        if x.ndim != 3 or x.shape[1:] != expected_x:
            raise ValueError(
                f"x must have shape (B, {expected_x[0]}, {expected_x[1]}) for {self!r}, "
                f"got {x.shape}"
            )
        batch_size = x.shape[0]
        if self.loss == "cross_entropy":
            expected_y = (batch_size,)
        else:
            expected_y = (batch_size, self.output_size)
        if y.shape != expected_y:
            raise ValueError(f"y must have shape {expected_y} for {self!r}, got {y.shape}")
        return {name: float(value) for name, value in self._baselines(x, y).items()}

    def _draw(self, batch_size: int, rng: np.random.Generator):
        raise NotImplementedError

    def _baselines(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        raise NotImplementedError
