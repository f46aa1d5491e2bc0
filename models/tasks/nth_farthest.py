"""N-th farthest: the relational reasoning task of Santoro et al. (2018).

Shapes: ``B`` batch, ``K`` vectors (also the time steps), ``V`` vector dimension, ``C``
labels (``num_labels``, at least ``K``; the width of each one-hot block and the number of
classes); the input size is ``V + 3C``.
"""

import numpy as np

from models.tasks.base import OptionSpec, Task, one_hot

MAX_VECTORS = 16

# ``allowed_n`` is a list, a type the scalar option checks of ``models.tasks.base`` do not
# handle, so this task checks it itself and adds its spec to ``spec()``. The dict has the
# shape of the "int_list" options of ``models.MODEL_SPECS``.
ALLOWED_N_SPEC = {
    "name": "allowed_n",
    "type": "int_list",
    "default": [],
    "min": 0,
    "max": MAX_VECTORS - 1,
    "max_length": MAX_VECTORS,
    "help": (
        "Values of n that questions may ask (n = 0 is the farthest, each below num_vectors), "
        "drawn uniformly; [] allows every n."
    ),
}


def _check_allowed_n(value, num_vectors: int) -> list[int]:
    """Return ``allowed_n`` as a sorted list of distinct ints, or raise ValueError."""
    prefix = "invalid option 'allowed_n' for task 'nth-farthest'"
    if not isinstance(value, list | tuple | np.ndarray):
        raise ValueError(f"{prefix}: must be a list of integers, got {value!r}")
    values = list(value)
    for item in values:
        if isinstance(item, bool | np.bool_) or not isinstance(item, int | np.integer):
            raise ValueError(f"{prefix}: must be a list of integers, got {item!r} in {values}")
        if not 0 <= item < num_vectors:
            raise ValueError(
                f"{prefix}: every value must be from 0 to num_vectors - 1 = {num_vectors - 1}, "
                f"got {int(item)} in {values}"
            )
    if len(set(values)) != len(values):
        raise ValueError(f"{prefix}: values must be distinct, got {values}")
    return sorted(int(item) for item in values)


class NthFarthestTask(Task):
    """Name the vector that is the (n+1)-th farthest from vector m.

    ``K`` vectors are drawn uniformly from ``[-1, 1]^V`` and labelled ``0 .. K-1``. They are
    shown one per step in a random order, each row being
    ``[vector | one-hot own label | one-hot n | one-hot m]``. The target is the label of
    the vector at rank ``n`` when all ``K`` vectors are sorted by decreasing Euclidean
    distance from vector ``m`` (``n = 0`` is the farthest, ``n = K - 1`` is ``m`` itself).

    The one-hot blocks and the classes have ``num_labels`` entries. With
    ``num_labels > K`` the labels, ``n`` and ``m`` use only the first ``K`` entries, so a
    task with fewer vectors has the input and output sizes of a larger one and one model
    can train on both (the curriculum stages of ``models.curriculum`` rely on this).
    ``allowed_n`` restricts the questions to some values of ``n``.
    """

    name = "nth-farthest"
    description = (
        "Vectors with labels arrive one per step; name the (n+1)-th farthest vector "
        "from vector m (n = 0 is the farthest)."
    )
    loss = "cross_entropy"
    option_specs = (
        OptionSpec(
            "num_vectors",
            "int",
            8,
            2,
            MAX_VECTORS,
            "Vectors per sequence; also the steps, and the classes unless num_labels is larger.",
        ),
        OptionSpec("vector_dim", "int", 16, 1, 64, "Dimension of each vector."),
        OptionSpec(
            "num_labels",
            "int",
            0,
            0,
            MAX_VECTORS,
            "Width of the label, n and m one-hot blocks and number of classes; at least "
            "num_vectors, 0 means num_vectors. A larger value gives a task with fewer "
            "vectors the input and output sizes of a larger one.",
        ),
    )
    presets = {
        "paper": {"num_vectors": 8, "vector_dim": 16},
        "small": {"num_vectors": 4, "vector_dim": 4},
    }

    # Held-out accuracy is also reported per value of n, under this metric name.
    accuracy_group_metric = "test_accuracy_per_n"

    def __init__(self, **options):
        known = [spec.name for spec in self.option_specs] + [ALLOWED_N_SPEC["name"]]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"unknown option {unknown[0]!r} for task {self.name!r}: "
                f"expected one of {', '.join(sorted(known))}"
            )
        allowed_n = options.pop("allowed_n", ALLOWED_N_SPEC["default"])
        super().__init__(**options)

        num_vectors = self.options["num_vectors"]
        if self.options["num_labels"] == 0:
            self.options["num_labels"] = num_vectors
        num_labels = self.options["num_labels"]
        if num_labels < num_vectors:
            raise ValueError(
                f"invalid option 'num_labels' for task {self.name!r}: must be 0 or at least "
                f"num_vectors ({num_vectors}), got {num_labels}"
            )
        self.options["allowed_n"] = _check_allowed_n(allowed_n, num_vectors)

        self.input_size = self.options["vector_dim"] + 3 * num_labels
        self.output_size = num_labels
        self.seq_len = num_vectors

    @classmethod
    def spec(cls) -> dict:
        spec = super().spec()
        spec["options"].append(dict(ALLOWED_N_SPEC))
        return spec

    def accuracy_groups(self, info: dict) -> np.ndarray:
        """Return the value of n of each sequence of a batch, shape (B,), from its ``info``."""
        return np.asarray(info["n"])

    def _draw(self, batch_size: int, rng: np.random.Generator):
        num_vectors = self.options["num_vectors"]
        num_labels = self.options["num_labels"]
        allowed_n = self.options["allowed_n"]
        rows = np.arange(batch_size)

        # Every random draw happens here, in a fixed order, so a seed fixes the batch.
        vectors = rng.uniform(-1.0, 1.0, size=(batch_size, num_vectors, self.options["vector_dim"]))
        order = rng.permuted(np.tile(np.arange(num_vectors), (batch_size, 1)), axis=1)
        if allowed_n:
            n = np.asarray(allowed_n)[rng.integers(0, len(allowed_n), size=batch_size)]
        else:
            n = rng.integers(0, num_vectors, size=batch_size)
        m = rng.integers(0, num_vectors, size=batch_size)

        # ranking is (B, K): labels from farthest to nearest; vector m itself comes last.
        distances = np.linalg.norm(vectors - vectors[rows, m][:, None, :], axis=-1)
        ranking = np.argsort(-distances, axis=1, kind="stable")
        y = ranking[rows, n]

        # x is (B, K, V + 3C): the vectors in presentation order, then the three one-hots.
        shown = vectors[rows[:, None], order]
        row_shape = (batch_size, num_vectors, num_labels)
        n_rows = np.broadcast_to(one_hot(n, num_labels)[:, None, :], row_shape)
        m_rows = np.broadcast_to(one_hot(m, num_labels)[:, None, :], row_shape)
        x = np.concatenate([shown, one_hot(order, num_labels), n_rows, m_rows], axis=-1)
        info = {"vectors": vectors, "order": order, "n": n, "m": m, "ranking": ranking}
        return x, y.astype(np.int64), info

    def _baselines(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        num_vectors = self.options["num_vectors"]
        num_labels = self.options["num_labels"]
        n_start = self.options["vector_dim"] + num_labels
        n = np.argmax(x[:, 0, n_start : n_start + num_labels], axis=-1)
        m = np.argmax(x[:, 0, n_start + num_labels :], axis=-1)

        # A model that knows only "rank K-1 is m itself" is right on those sequences and
        # guesses among the other K-1 labels elsewhere: expected accuracy 2/K when every n
        # is allowed.
        is_last_rank = n == num_vectors - 1
        self_accuracy = np.where(is_last_rank, y == m, 1.0 / (num_vectors - 1))
        return {
            "chance": 1.0 / num_vectors,
            "m_itself_at_last_rank": float(np.mean(self_accuracy)),
        }
