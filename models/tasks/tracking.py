"""Continuous object tracking: estimate one object's velocity from an interleaved stream.

Shapes: ``B`` batch, ``S`` observation steps, ``T = S + 1`` time steps, ``N`` objects.
Time step ``t`` shows the positions after ``t`` moves, so the query step ``S`` asks for a
position that no row has shown.
"""

import numpy as np

from models.tasks.base import OptionSpec, Task
from models.tasks.object_stream import (
    decode_stream,
    encode_stream,
    last_observation_steps,
    mean_squared_error,
)


def bounce(positions: np.ndarray, velocities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move by one step inside the unit square, reflecting off the walls.

    A wall reflects the position about the wall and flips that velocity component. One
    reflection per step is enough because every speed component is at most 0.5.
    """
    moved = positions + velocities
    above = moved > 1.0
    below = moved < 0.0
    moved = np.where(above, 2.0 - moved, np.where(below, -moved, moved))
    velocities = np.where(above | below, -velocities, velocities)
    return moved, velocities


class TrackingTask(Task):
    """Objects with constant velocities bounce in the unit square; one is observed per step.

    Every object starts uniformly in ``[0, 1]^2`` with a velocity uniform in
    ``[-max_speed, max_speed]^2`` per step, and all objects move at every step. Step ``t``
    (``t < num_steps``) shows one object, chosen uniformly, as ``[one-hot id, x, y, 0]``
    with Gaussian noise of standard deviation ``noise_std`` on ``x`` and ``y``. The last
    step ``[one-hot id, 0, 0, 1]`` queries an object; the target is its true position at
    that step.
    """

    name = "tracking"
    description = (
        "Objects bounce in the unit square with constant velocities and one is observed per "
        "step; predict the queried object's position at the query step."
    )
    loss = "mse"
    option_specs = (
        OptionSpec("num_objects", "int", 3, 1, 10, "Number of moving objects."),
        OptionSpec("num_steps", "int", 15, 2, 100, "Observation steps before the query step."),
        OptionSpec(
            "max_speed", "float", 0.05, 0.0, 0.5, "Largest velocity component, per time step."
        ),
        OptionSpec(
            "noise_std", "float", 0.0, 0.0, 0.5, "Standard deviation of the observation noise."
        ),
    )

    def __init__(self, **options):
        super().__init__(**options)
        self.input_size = self.options["num_objects"] + 3
        self.output_size = 2
        self.seq_len = self.options["num_steps"] + 1

    def _draw(self, batch_size: int, rng: np.random.Generator):
        num_objects = self.options["num_objects"]
        num_steps = self.options["num_steps"]
        max_speed = self.options["max_speed"]
        rows = np.arange(batch_size)

        # Every random draw happens here, in a fixed order, so a seed fixes the batch.
        # The noise is drawn even when noise_std is 0, so it never shifts later draws.
        start = rng.uniform(0.0, 1.0, size=(batch_size, num_objects, 2))
        velocities = rng.uniform(-max_speed, max_speed, size=(batch_size, num_objects, 2))
        observed = rng.integers(0, num_objects, size=(batch_size, num_steps))
        noise = rng.normal(0.0, 1.0, size=(batch_size, num_steps, 2)) * self.options["noise_std"]
        query = rng.integers(0, num_objects, size=batch_size)

        # positions is (B, T, N, 2): every object's true position at every step.
        positions = np.empty((batch_size, num_steps + 1, num_objects, 2))
        positions[:, 0] = start
        for step in range(1, num_steps + 1):
            positions[:, step], velocities = bounce(positions[:, step - 1], velocities)

        observed_xy = positions[rows[:, None], np.arange(num_steps)[None, :], observed] + noise
        x = encode_stream(observed, observed_xy, query, num_objects, extra=1)
        y = positions[rows, num_steps, query]
        info = {
            "positions": positions,
            "observed_object": np.concatenate([observed, query[:, None]], axis=1),
            "query_object": query,
        }
        return x, y, info

    def _baselines(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        rows = np.arange(x.shape[0])
        query_step = x.shape[1] - 1

        # Reflection keeps a uniform start uniform, so the centre is the best constant.
        mean_position = np.full_like(y, 0.5)

        observed, observed_xy, query = decode_stream(x, self.options["num_objects"])
        latest = last_observation_steps(observed, query)
        previous = last_observation_steps(observed, query, before=latest)
        seen_once = latest >= 0
        seen_twice = previous >= 0

        latest_xy = observed_xy[rows, np.maximum(latest, 0)]
        previous_xy = observed_xy[rows, np.maximum(previous, 0)]
        last_seen = np.where(seen_once[:, None], latest_xy, mean_position)

        # Extrapolate the last two observations to the query step, clipped to the square;
        # with fewer than two observations fall back to the last-seen prediction.
        gap = np.where(seen_twice, latest - previous, 1)[:, None]
        velocity = (latest_xy - previous_xy) / gap
        extrapolated = np.clip(latest_xy + velocity * (query_step - latest)[:, None], 0.0, 1.0)
        constant_velocity = np.where(seen_twice[:, None], extrapolated, last_seen)

        return {
            "mean": mean_squared_error(mean_position, y),
            "last_seen": mean_squared_error(last_seen, y),
            "constant_velocity": mean_squared_error(constant_velocity, y),
        }
