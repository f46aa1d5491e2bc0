"""Task generators: shapes, seeding, hand-checked targets, baselines and option checks."""

import math

import numpy as np
import pytest

from models.tasks import TASK_SPECS, make_task
from models.tasks.tracking import bounce

TASK_NAMES = ["tracking-grid", "tracking", "nth-farthest"]


def draw(task, batch_size=64, seed=0, info=False):
    rng = np.random.default_rng(seed)
    if info:
        return task.sample_with_info(batch_size, rng)
    return task.sample(batch_size, rng)


# Shapes and seeding.


@pytest.mark.parametrize(
    ("name", "options", "input_size", "output_size", "seq_len"),
    [
        ("tracking-grid", {}, 5, 2, 11),
        ("tracking-grid", {"num_objects": 4, "num_steps": 6}, 6, 2, 7),
        ("tracking", {}, 6, 2, 16),
        ("tracking", {"num_objects": 2, "num_steps": 5}, 5, 2, 6),
        ("nth-farthest", {}, 16 + 3 * 8, 8, 8),
        ("nth-farthest", {"num_vectors": 4, "vector_dim": 4}, 4 + 3 * 4, 4, 4),
    ],
)
def test_task_sizes_and_batch_shapes(name, options, input_size, output_size, seq_len):
    task = make_task(name, **options)
    assert (task.input_size, task.output_size, task.seq_len) == (input_size, output_size, seq_len)

    x, y = draw(task, batch_size=7)
    assert x.shape == (7, seq_len, input_size)
    assert x.dtype == np.float64
    if task.loss == "mse":
        assert y.shape == (7, output_size)
        assert y.dtype == np.float64
    else:
        assert y.shape == (7,)
        assert y.dtype == np.int64


@pytest.mark.parametrize("name", TASK_NAMES)
def test_same_seed_gives_same_batch(name):
    task = make_task(name)
    x1, y1 = draw(task, seed=3)
    x2, y2 = draw(task, seed=3)
    x3, _ = draw(task, seed=4)
    assert np.array_equal(x1, x2)
    assert np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sample_with_info_matches_sample(name):
    task = make_task(name)
    x, y = draw(task, seed=5)
    x_info, y_info, info = draw(task, seed=5, info=True)
    assert np.array_equal(x, x_info)
    assert np.array_equal(y, y_info)
    for value in info.values():
        assert isinstance(value, np.ndarray)


def test_resolved_options_include_defaults():
    task = make_task("tracking-grid", num_steps=4)
    assert task.options == {"num_objects": 3, "grid_size": 5, "num_steps": 4}


# Tracking on a grid.


def simulate_grid(rng, batch_size, num_objects, grid_size, num_steps):
    """Re-simulate the grid task one sequence at a time from the same random draws."""
    cells = rng.integers(0, grid_size, size=(batch_size, num_objects, 2))
    movers = rng.integers(0, num_objects, size=(batch_size, num_steps))
    moves = rng.integers(0, 5, size=(batch_size, num_steps))
    query = rng.integers(0, num_objects, size=batch_size)
    step_of_move = {0: (0, 1), 1: (0, -1), 2: (-1, 0), 3: (1, 0), 4: (0, 0)}

    inputs, targets = [], []
    for b in range(batch_size):
        position = [list(cell) for cell in cells[b]]
        rows = []
        for t in range(num_steps):
            mover = movers[b, t]
            dx, dy = step_of_move[moves[b, t]]
            position[mover][0] = min(max(position[mover][0] + dx, 0), grid_size - 1)
            position[mover][1] = min(max(position[mover][1] + dy, 0), grid_size - 1)
            x_cell, y_cell = position[mover]
            row = [0.0] * num_objects + [x_cell / grid_size, y_cell / grid_size]
            row[mover] = 1.0
            rows.append(row)
        query_row = [0.0] * (num_objects + 2)
        query_row[query[b]] = 1.0
        rows.append(query_row)
        inputs.append(rows)
        targets.append([position[query[b]][0] / grid_size, position[query[b]][1] / grid_size])
    return np.array(inputs), np.array(targets)


def test_grid_matches_step_by_step_simulation():
    task = make_task("tracking-grid", num_objects=3, grid_size=3, num_steps=12)
    x, y = draw(task, batch_size=40, seed=11)
    x_expected, y_expected = simulate_grid(np.random.default_rng(11), 40, 3, 3, 12)
    assert np.array_equal(x, x_expected)
    assert np.array_equal(y, y_expected)


def test_grid_moves_one_cell_on_grid():
    task = make_task("tracking-grid", num_objects=2, grid_size=2, num_steps=30)
    _, _, info = draw(task, batch_size=50, seed=2, info=True)
    cells = info["positions"] * 2  # (B, T, N, 2) back in cells
    assert cells.min() == 0
    assert cells.max() == 1
    steps = np.abs(np.diff(cells, axis=1)).sum(axis=-1)  # (B, T-1, N) cells moved
    assert steps.max() == 1
    # Between steps t and t+1 only the object observed at t+1 may move; the query moves none.
    moved = steps[:, :-1] > 0  # (B, S-1, N)
    mover = info["observed_object"][:, 1:-1]  # (B, S-1)
    moved[np.arange(50)[:, None], np.arange(29)[None, :], mover] = False
    assert not moved.any()
    assert not steps[:, -1].any()


def test_grid_target_is_final_position_of_query():
    task = make_task("tracking-grid")
    x, y, info = draw(task, batch_size=32, seed=1, info=True)
    rows = np.arange(32)
    assert np.array_equal(y, info["positions"][rows, -1, info["query_object"]])
    assert np.array_equal(info["observed_object"][:, -1], info["query_object"])
    assert np.array_equal(np.argmax(x[:, -1, :3], axis=1), info["query_object"])
    assert not x[:, -1, 3:].any()


def test_grid_baselines_on_constructed_batch():
    task = make_task("tracking-grid", num_objects=3, grid_size=5, num_steps=2)
    x = np.zeros((2, 3, 5))
    # Sequence 0: object 1 seen at (0.2, 0.4), then object 0; object 1 is queried.
    x[0, 0] = [0, 1, 0, 0.2, 0.4]
    x[0, 1] = [1, 0, 0, 0.6, 0.8]
    x[0, 2] = [0, 1, 0, 0, 0]
    # Sequence 1: object 2 is queried but never observed.
    x[1, 0] = [1, 0, 0, 0.0, 0.0]
    x[1, 1] = [0, 1, 0, 0.8, 0.8]
    x[1, 2] = [0, 0, 1, 0, 0]
    y = np.array([[0.2, 0.4], [0.8, 0.0]])

    baselines = task.baselines(x, y)

    mean = 0.4  # centre of the cell coordinates 0, 0.2, ..., 0.8
    expected_mean = ((0.2 - mean) ** 2 + 0 + (0.8 - mean) ** 2 + mean**2) / 4
    expected_last_seen = (0 + 0 + (0.8 - mean) ** 2 + mean**2) / 4
    assert baselines["mean"] == pytest.approx(expected_mean)
    assert baselines["last_seen"] == pytest.approx(expected_last_seen)


def test_grid_mean_baseline_near_0_080():
    task = make_task("tracking-grid")
    baselines = task.baselines(*draw(task, batch_size=20000, seed=0))
    assert baselines["mean"] == pytest.approx(0.080, abs=0.002)
    # Only never-observed queries are wrong: about (2/3)^10 of them, at about 0.08 each.
    assert baselines["last_seen"] == pytest.approx((2 / 3) ** 10 * 0.08, abs=0.0005)


# Continuous tracking.


def test_bounce_reflects_off_walls():
    positions, velocities = bounce(np.array([0.95, 0.02, 0.5]), np.array([0.1, -0.05, 0.2]))
    assert positions == pytest.approx([0.95, 0.03, 0.7])
    assert velocities == pytest.approx([-0.1, 0.05, 0.2])


def test_tracking_positions_follow_bouncing_motion():
    task = make_task("tracking", num_objects=2, num_steps=40, max_speed=0.3)
    _, _, info = draw(task, batch_size=20, seed=4, info=True)

    # Unfolded, the motion is a straight line; reflecting walls fold it into a
    # triangle wave of period 2. The task draws the start, then the velocities.
    rng = np.random.default_rng(4)
    start = rng.uniform(0.0, 1.0, size=(20, 2, 2))
    velocity = rng.uniform(-0.3, 0.3, size=(20, 2, 2))
    time = np.arange(41)[None, :, None, None]
    unfolded = start[:, None] + velocity[:, None] * time  # (B, T, N, 2)
    expected = np.abs(np.mod(unfolded + 1.0, 2.0) - 1.0)

    assert np.allclose(info["positions"], expected)
    assert info["positions"].min() >= 0.0
    assert info["positions"].max() <= 1.0


def test_tracking_rows_and_target():
    task = make_task("tracking", num_objects=3, num_steps=6)
    x, y, info = draw(task, batch_size=16, seed=8, info=True)
    rows = np.arange(16)
    observed = info["observed_object"][:, :-1]  # (B, S)
    true_xy = info["positions"][rows[:, None], np.arange(6)[None, :], observed]
    assert np.array_equal(np.argmax(x[:, :-1, :3], axis=-1), observed)
    assert np.allclose(x[:, :-1, 3:5], true_xy)
    assert not x[:, :-1, 5].any()
    assert np.array_equal(x[:, -1, 3:], np.tile([0.0, 0.0, 1.0], (16, 1)))
    assert np.array_equal(y, info["positions"][rows, -1, info["query_object"]])


def test_tracking_noise_has_requested_std():
    task = make_task("tracking", num_objects=1, num_steps=50, noise_std=0.05)
    x, _, info = draw(task, batch_size=200, seed=0, info=True)
    noise = x[:, :-1, 1:3] - info["positions"][:, :-1, 0]
    assert noise.std() == pytest.approx(0.05, rel=0.05)


def test_tracking_baselines_on_constructed_batch():
    task = make_task("tracking", num_objects=2, num_steps=3)
    x = np.zeros((2, 4, 5))
    # Sequence 0: object 0 at t=0 and t=2 moving by (0.1, 0.05) per step; queried at t=3.
    x[0, 0] = [1, 0, 0.1, 0.1, 0]
    x[0, 1] = [0, 1, 0.9, 0.9, 0]
    x[0, 2] = [1, 0, 0.3, 0.2, 0]
    x[0, 3] = [1, 0, 0, 0, 1]
    # Sequence 1: object 1 seen once, at t=1; extrapolation falls back to last seen.
    x[1, 0] = [1, 0, 0.5, 0.5, 0]
    x[1, 1] = [0, 1, 0.7, 0.6, 0]
    x[1, 2] = [1, 0, 0.5, 0.5, 0]
    x[1, 3] = [0, 1, 0, 0, 1]
    y = np.array([[0.4, 0.25], [0.8, 0.6]])

    baselines = task.baselines(x, y)

    mean_errors = [0.1**2, 0.25**2, 0.3**2, 0.1**2]
    last_seen_errors = [0.1**2, 0.05**2, 0.1**2, 0.0]
    constant_velocity_errors = [0.0, 0.0, 0.1**2, 0.0]
    assert baselines["mean"] == pytest.approx(np.mean(mean_errors))
    assert baselines["last_seen"] == pytest.approx(np.mean(last_seen_errors))
    assert baselines["constant_velocity"] == pytest.approx(np.mean(constant_velocity_errors))


def test_tracking_extrapolation_beats_last_seen_without_noise():
    task = make_task("tracking")
    baselines = task.baselines(*draw(task, batch_size=4000, seed=0))
    assert baselines["mean"] == pytest.approx(1 / 12, abs=0.004)
    assert baselines["constant_velocity"] < baselines["last_seen"] < baselines["mean"]


# N-th farthest.


def nth_farthest_label(rows, num_vectors, vector_dim):
    """Compute the target from the input rows of one sequence, with plain Python."""
    vectors = {}
    for row in rows:
        label = int(np.argmax(row[vector_dim : vector_dim + num_vectors]))
        vectors[label] = [float(value) for value in row[:vector_dim]]
    n = int(np.argmax(rows[0][vector_dim + num_vectors : vector_dim + 2 * num_vectors]))
    m = int(np.argmax(rows[0][vector_dim + 2 * num_vectors :]))
    by_distance = sorted(vectors, key=lambda label: -math.dist(vectors[label], vectors[m]))
    return by_distance[n]


@pytest.mark.parametrize(("num_vectors", "vector_dim"), [(4, 4), (8, 16), (3, 1)])
def test_nth_farthest_label_matches_independent_computation(num_vectors, vector_dim):
    task = make_task("nth-farthest", num_vectors=num_vectors, vector_dim=vector_dim)
    x, y = draw(task, batch_size=100, seed=6)
    expected = [nth_farthest_label(x[b], num_vectors, vector_dim) for b in range(100)]
    assert y.tolist() == expected


def test_nth_farthest_info_and_rows():
    task = make_task("nth-farthest", num_vectors=4, vector_dim=4)
    x, y, info = draw(task, batch_size=50, seed=9, info=True)
    rows = np.arange(50)
    assert np.array_equal(info["ranking"][rows, info["n"]], y)
    assert np.array_equal(info["ranking"][:, -1], info["m"])
    assert np.array_equal(np.sort(info["order"], axis=1), np.tile(np.arange(4), (50, 1)))
    assert np.array_equal(x[:, :, :4], info["vectors"][rows[:, None], info["order"]])
    assert np.array_equal(np.argmax(x[:, :, 4:8], axis=-1), info["order"])
    # n and m are repeated on every row.
    assert np.array_equal(np.argmax(x[:, :, 8:12], axis=-1), np.tile(info["n"][:, None], (1, 4)))
    assert np.array_equal(np.argmax(x[:, :, 12:], axis=-1), np.tile(info["m"][:, None], (1, 4)))
    assert np.abs(info["vectors"]).max() <= 1.0


def test_nth_farthest_baselines():
    task = make_task("nth-farthest", num_vectors=4, vector_dim=4)
    x, y, info = draw(task, batch_size=500, seed=1, info=True)
    baselines = task.baselines(x, y)
    last_rank = np.mean(info["n"] == 3)
    assert baselines["chance"] == 0.25
    assert baselines["m_itself_at_last_rank"] == pytest.approx(last_rank + (1 - last_rank) / 3)


# Option and argument validation.


@pytest.mark.parametrize(
    ("name", "options", "fragments"),
    [
        ("tracking-grid", {"grid_size": 1}, ["'grid_size'", "between 2 and 20", "got 1"]),
        ("tracking-grid", {"num_steps": 101}, ["'num_steps'", "between 1 and 100", "got 101"]),
        ("tracking-grid", {"num_objects": 2.0}, ["'num_objects'", "integer", "got 2.0"]),
        ("tracking-grid", {"num_objects": True}, ["'num_objects'", "integer", "got True"]),
        ("tracking-grid", {"colour": 1}, ["unknown option 'colour'", "grid_size"]),
        ("tracking", {"noise_std": -0.1}, ["'noise_std'", "between 0.0 and 0.5", "got -0.1"]),
        ("tracking", {"max_speed": float("nan")}, ["'max_speed'", "finite", "got nan"]),
        ("tracking", {"max_speed": "fast"}, ["'max_speed'", "got 'fast'"]),
        ("nth-farthest", {"num_vectors": 1}, ["'num_vectors'", "between 2 and 16", "got 1"]),
    ],
)
def test_invalid_options_name_option_rule_and_value(name, options, fragments):
    with pytest.raises(ValueError) as error:
        make_task(name, **options)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_unknown_task_lists_known_names():
    expected = "unknown task 'sorting': expected one of nth-farthest, tracking, tracking-grid"
    with pytest.raises(ValueError, match=expected):
        make_task("sorting")


def test_float_option_accepts_integer():
    assert make_task("tracking", noise_std=0).options["noise_std"] == 0.0


def test_sample_rejects_bad_arguments():
    task = make_task("tracking-grid")
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        task.sample(0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        task.sample(4, np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 11, 5\)"):
        task.baselines(np.zeros((4, 10, 5)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"y must have shape \(4, 2\)"):
        task.baselines(np.zeros((4, 11, 5)), np.zeros((4,)))


def test_task_specs_describe_every_option():
    assert sorted(TASK_SPECS) == sorted(TASK_NAMES)
    for name, spec in TASK_SPECS.items():
        assert spec["loss"] in ("mse", "cross_entropy")
        assert spec["description"]
        task = make_task(name)
        assert [option["name"] for option in spec["options"]] == list(task.options)
        for option in spec["options"]:
            keys = {"name", "type", "default", "min", "max", "help"}
            if option["type"] == "int_list":
                assert set(option) == keys | {"max_length"}
                assert len(option["default"]) <= option["max_length"]
                assert all(option["min"] <= item <= option["max"] for item in option["default"])
                continue
            assert set(option) == keys
            assert option["min"] <= option["default"] <= option["max"]
        for preset in spec["presets"].values():
            make_task(name, **preset)
    assert TASK_SPECS["nth-farthest"]["presets"]["small"] == {"num_vectors": 4, "vector_dim": 4}
