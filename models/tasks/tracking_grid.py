"""Object tracking on a grid: retrieve the latest position of one object from a stream.

Shapes: ``B`` batch, ``S`` observation steps, ``T = S + 1`` time steps, ``N`` objects.
"""

import numpy as np

from models.tasks.base import OptionSpec, Task
from models.tasks.object_stream import (
    decode_stream,
    encode_stream,
    last_observation_steps,
    mean_squared_error,
)

# Grid moves in the order of the drawn move index: up, down, left, right, stay.
MOVES = np.array([[0, 1], [0, -1], [-1, 0], [1, 0], [0, 0]])


class TrackingGridTask(Task):
    """Objects on a grid move one at a time, and each move is observed.

    The objects start at uniform cells that are never shown. At each of ``num_steps`` steps
    one object, chosen uniformly, moves up, down, left, right or stays (clamped to the
    grid) and is observed as ``[one-hot id, x / G, y / G]`` with ``G = grid_size``. The last
    step ``[one-hot id, 0, 0]`` queries an object, chosen uniformly; the target is its final
    ``(x / G, y / G)``, which is its latest observation when it was observed at all.
    """

    name = "tracking-grid"
    description = (
        "Objects on a grid move one at a time and each move is observed; "
        "predict the final position of the queried object."
    )
    loss = "mse"
    option_specs = (
        OptionSpec("num_objects", "int", 3, 1, 10, "Number of objects on the grid."),
        OptionSpec("grid_size", "int", 5, 2, 20, "Cells per side of the square grid."),
        OptionSpec("num_steps", "int", 10, 1, 100, "Observed moves before the query step."),
    )

    def __init__(self, **options):
        super().__init__(**options)
        self.input_size = self.options["num_objects"] + 2
        self.output_size = 2
        self.seq_len = self.options["num_steps"] + 1

    def _draw(self, batch_size: int, rng: np.random.Generator):
        num_objects = self.options["num_objects"]
        grid_size = self.options["grid_size"]
        num_steps = self.options["num_steps"]
        rows = np.arange(batch_size)

        # Every random draw happens here, in a fixed order, so a seed fixes the batch.
        cells = rng.integers(0, grid_size, size=(batch_size, num_objects, 2))
        movers = rng.integers(0, num_objects, size=(batch_size, num_steps))
        moves = rng.integers(0, len(MOVES), size=(batch_size, num_steps))
        query = rng.integers(0, num_objects, size=batch_size)

        # cells[b, i] is object i's (x, y) cell; positions is (B, T, N, 2) in cells.
        positions = np.empty((batch_size, num_steps + 1, num_objects, 2), dtype=np.int64)
        for step in range(num_steps):
            mover = movers[:, step]
            moved = cells[rows, mover] + MOVES[moves[:, step]]
            cells[rows, mover] = np.clip(moved, 0, grid_size - 1)
            positions[:, step] = cells
        positions[:, num_steps] = cells

        observed_xy = positions[rows[:, None], np.arange(num_steps)[None, :], movers] / grid_size
        x = encode_stream(movers, observed_xy, query, num_objects, extra=0)
        y = cells[rows, query] / grid_size
        info = {
            "positions": positions / grid_size,
            "observed_object": np.concatenate([movers, query[:, None]], axis=1),
            "query_object": query,
        }
        return x, y, info

    def _baselines(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        grid_size = self.options["grid_size"]
        rows = np.arange(x.shape[0])

        # A uniform start and a symmetric clamped walk keep every cell equally likely,
        # so the best constant is the centre of the cell coordinates.
        mean_position = np.full_like(y, (grid_size - 1) / (2 * grid_size))

        observed, observed_xy, query = decode_stream(x, self.options["num_objects"])
        latest = last_observation_steps(observed, query)
        last_seen = np.where(
            (latest >= 0)[:, None], observed_xy[rows, np.maximum(latest, 0)], mean_position
        )
        return {
            "mean": mean_squared_error(mean_position, y),
            "last_seen": mean_squared_error(last_seen, y),
        }
