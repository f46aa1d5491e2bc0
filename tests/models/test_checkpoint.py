"""Checkpoint round trips and the errors for damaged or inconsistent files."""

import json
import os

import numpy as np
import pytest

from models.checkpoint import CONFIG_KEY, CheckpointError, load_checkpoint, save_checkpoint
from models.factory import make_model

MODELS = {
    "lstm": dict(kind="lstm", hidden_size=6, readout_hidden=[4]),
    "rmc-unit": dict(kind="rmc", mem_slots=3, head_size=4, num_heads=2, key_size=3, num_blocks=2),
    "rmc-memory-per-step": dict(
        kind="rmc", mem_slots=2, head_size=4, gate_style="memory", per_step_targets=True
    ),
    "rmc-no-gates-float64": dict(
        kind="rmc", mem_slots=2, head_size=4, gate_style=None, dtype="float64"
    ),
}


def build(name, seed=3):
    return make_model(input_size=3, output_size=2, seed=seed, **MODELS[name])


def trained(name):
    """Return a model whose parameters differ from any freshly initialised one."""
    model = build(name)
    rng = np.random.default_rng(9)
    for value in model.params.values():
        value += 0.1 * rng.standard_normal(value.shape).astype(value.dtype)
    return model


def write_arrays(path, arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def saved_arrays(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(trained("rmc-unit"), path)
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_gives_identical_predictions(tmp_path, name):
    model = trained(name)
    path = tmp_path / "model.npz"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)

    assert loaded.config == model.config
    assert list(loaded.params) == list(model.params)
    buffer = next(iter(loaded.params.values())).base  # packed, as a new model's are
    for key, value in model.params.items():
        assert loaded.params[key].dtype == value.dtype
        assert loaded.params[key].base is buffer
        np.testing.assert_array_equal(loaded.params[key], value)
    x = np.random.default_rng(0).standard_normal((3, 4, 3))
    expected, expected_trace = model.predict(x, trace=True)
    actual, actual_trace = loaded.predict(x, trace=True)
    np.testing.assert_array_equal(actual, expected)
    for key in expected_trace:
        np.testing.assert_array_equal(actual_trace[key], expected_trace[key])


def test_config_is_stored_as_json(tmp_path):
    model = build("rmc-unit")
    path = tmp_path / "model.npz"
    save_checkpoint(model, path)
    with np.load(path, allow_pickle=False) as archive:
        stored = archive[CONFIG_KEY]
    assert stored.shape == ()
    assert stored.dtype.kind == "U"
    assert json.loads(str(stored)) == model.config


def test_save_replaces_file_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(build("lstm", seed=1), path)
    save_checkpoint(build("lstm", seed=2), path)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert load_checkpoint(path).config["seed"] == 2


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*absent.npz"):
        load_checkpoint(tmp_path / "absent.npz")


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(trained("rmc-unit"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is truncated or corrupted and cannot be read"):
        load_checkpoint(path)


def test_corrupted_file_is_reported(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(trained("rmc-unit"), path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is truncated or corrupted and cannot be read"):
        load_checkpoint(path)


def test_file_that_is_not_an_archive_is_reported(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is truncated or corrupted"):
        load_checkpoint(path)


VALID_CONFIG = build("rmc-unit").config

DAMAGED_ARCHIVES = {
    "missing-parameter": ({"block1.qkv.W": None}, "is missing parameters: block1.qkv.W"),
    "unexpected-parameter": (
        {"block7.qkv.W": np.zeros(3)},
        "has parameters its config does not define: block7.qkv.W",
    ),
    "missing-config": ({CONFIG_KEY: None}, "has no '__config__' entry"),
    "config-not-json": ({CONFIG_KEY: np.array("{kind: rmc")}, "has an invalid JSON config"),
    "invalid-config": (
        {CONFIG_KEY: np.array(json.dumps({**VALID_CONFIG, "mem_slots": 0}))},
        "invalid model config: mem_slots must be an integer from 1 to 64, got 0",
    ),
    "wrong-shape": (
        {"input_proj.W": np.zeros((3, 5), dtype=np.float32)},
        r"'input_proj.W' has shape \(3, 5\), expected \(3, 8\) from the config",
    ),
    "integer-parameter": (
        {"input_proj.W": np.zeros((3, 8), dtype=np.int64)},
        "'input_proj.W' has dtype int64, expected a floating-point array",
    ),
}


def write_edited(tmp_path, edits):
    """Save a checkpoint, then rewrite it with entries replaced, added or (for None) removed."""
    arrays = saved_arrays(tmp_path)
    for name, value in edits.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    path = tmp_path / "edited.npz"
    write_arrays(path, arrays)
    return path


@pytest.mark.parametrize("case", sorted(DAMAGED_ARCHIVES))
def test_inconsistent_archive_is_reported(tmp_path, case):
    edits, message = DAMAGED_ARCHIVES[case]
    path = write_edited(tmp_path, edits)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


UNPICKLED = []


class RecordsUnpickling:
    """An object whose unpickling appends to UNPICKLED."""

    def __reduce__(self):
        return (UNPICKLED.append, ("unpickled",))


def test_loading_never_unpickles(tmp_path):
    path = write_edited(tmp_path, {"input_proj.W": np.array([RecordsUnpickling()], dtype=object)})
    with pytest.raises(CheckpointError, match="allow_pickle=False"):
        load_checkpoint(path)
    assert UNPICKLED == []
