"""N-th farthest: the relational reasoning task of Santoro et al. (2018).

Shapes: ``B`` batch, ``K`` vectors (also the time steps and the classes), ``V`` vector
dimension; the input size is ``V + 3K``.
"""

import numpy as np

from models.tasks.base import OptionSpec, Task, one_hot


class NthFarthestTask(Task):
    """Name the vector that is the (n+1)-th farthest from vector m.

    ``K`` vectors are drawn uniformly from ``[-1, 1]^V`` and labelled ``0 .. K-1``. They are
    shown one per step in a random order, each row being
    ``[vector | one-hot own label | one-hot n | one-hot m]``. The target is the label of
    the vector at rank ``n`` when all ``K`` vectors are sorted by decreasing Euclidean
    distance from vector ``m`` (``n = 0`` is the farthest, ``n = K - 1`` is ``m`` itself).
    """

    name = "nth-farthest"
    description = (
        "Vectors with labels arrive one per step; name the (n+1)-th farthest vector "
        "from vector m (n = 0 is the farthest)."
    )
    loss = "cross_entropy"
    option_specs = (
        OptionSpec(
            "num_vectors", "int", 8, 2, 16, "Vectors per sequence; also the steps and classes."
        ),
        OptionSpec("vector_dim", "int", 16, 1, 64, "Dimension of each vector."),
    )
    presets = {
        "paper": {"num_vectors": 8, "vector_dim": 16},
        "small": {"num_vectors": 4, "vector_dim": 4},
    }

    def __init__(self, **options):
        super().__init__(**options)
        num_vectors = self.options["num_vectors"]
        self.input_size = self.options["vector_dim"] + 3 * num_vectors
        self.output_size = num_vectors
        self.seq_len = num_vectors

    def _draw(self, batch_size: int, rng: np.random.Generator):
        num_vectors = self.options["num_vectors"]
        rows = np.arange(batch_size)

        # Every random draw happens here, in a fixed order, so a seed fixes the batch.
        vectors = rng.uniform(-1.0, 1.0, size=(batch_size, num_vectors, self.options["vector_dim"]))
        order = rng.permuted(np.tile(np.arange(num_vectors), (batch_size, 1)), axis=1)
        n = rng.integers(0, num_vectors, size=batch_size)
        m = rng.integers(0, num_vectors, size=batch_size)

        # ranking is (B, K): labels from farthest to nearest; vector m itself comes last.
        distances = np.linalg.norm(vectors - vectors[rows, m][:, None, :], axis=-1)
        ranking = np.argsort(-distances, axis=1, kind="stable")
        y = ranking[rows, n]

        # x is (B, K, V + 3K): the vectors in presentation order, then the three one-hots.
        shown = vectors[rows[:, None], order]
        row_shape = (batch_size, num_vectors, num_vectors)
        n_rows = np.broadcast_to(one_hot(n, num_vectors)[:, None, :], row_shape)
        m_rows = np.broadcast_to(one_hot(m, num_vectors)[:, None, :], row_shape)
        x = np.concatenate([shown, one_hot(order, num_vectors), n_rows, m_rows], axis=-1)
        info = {"vectors": vectors, "order": order, "n": n, "m": m, "ranking": ranking}
        return x, y.astype(np.int64), info

    def _baselines(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        num_vectors = self.options["num_vectors"]
        n_start = self.options["vector_dim"] + num_vectors
        n = np.argmax(x[:, 0, n_start : n_start + num_vectors], axis=-1)
        m = np.argmax(x[:, 0, n_start + num_vectors :], axis=-1)

        # A model that knows only "rank K-1 is m itself" is right on those sequences and
        # guesses among the other K-1 labels elsewhere: expected accuracy 2/K.
        is_last_rank = n == num_vectors - 1
        self_accuracy = np.where(is_last_rank, y == m, 1.0 / (num_vectors - 1))
        return {
            "chance": 1.0 / num_vectors,
            "m_itself_at_last_rank": float(np.mean(self_accuracy)),
        }
