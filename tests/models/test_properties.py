"""Property-based tests of the task generators and model configs against their published specs.

Valid options drawn anywhere within ``TASK_SPECS`` give batches of the documented shapes,
finite and identical for the same seed. Model hyperparameters are drawn from the small
end of ``MODEL_SPECS`` (the models must stay tiny to run in seconds) and give finite
predictions, traces and gradients of the documented shapes. Invalid values, drawn around
the published limits, raise ``ValueError`` naming the option.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from models import MODEL_SPECS, TASK_SPECS, make_model, make_task

PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Upper bounds for drawing tiny models; each is within the option's published range.
TINY_MODEL_MAX = {
    "hidden_size": 6,
    "mem_slots": 3,
    "head_size": 3,
    "num_heads": 3,
    "key_size": 3,
    "num_blocks": 3,
    "attention_mlp_layers": 3,
}
# Bound for options without an entry above: the widths of readout_hidden.
TINY_READOUT_WIDTH = 4


def option_specs(owner_specs: dict, name: str) -> dict:
    return {spec["name"]: spec for spec in owner_specs[name]["options"]}


TASK_OPTION_SPECS = {name: option_specs(TASK_SPECS, name) for name in TASK_SPECS}


# Strategies. Option specs have the types int, float, bool, choice and int_list.


def valid_value(spec: dict, high: int | None = None) -> st.SearchStrategy:
    """Values within the option's published limits; ``high`` lowers an int maximum."""
    kind = spec["type"]
    if kind == "bool":
        return st.booleans()
    if kind == "choice":
        return st.sampled_from(spec["choices"])
    if kind == "float":
        return st.floats(spec["min"], spec["max"], allow_nan=False)
    if kind == "int_list":
        entry = st.integers(spec["min"], min(spec["max"], high or spec["max"]))
        return st.lists(entry, max_size=min(spec["max_length"], 3), unique=True)
    values = st.integers(spec["min"], min(spec["max"], high or spec["max"]))
    return st.one_of(st.none(), values) if spec.get("nullable") else values


def invalid_value(spec: dict) -> st.SearchStrategy:
    """Values the option must reject: outside its limits, or of a wrong type."""
    kind = spec["type"]
    if kind == "bool":
        return st.sampled_from([0, 1, "true", None, 1.0])
    if kind == "choice":
        return st.sampled_from(["bogus", 1, True, ["unit"]])
    if kind == "int_list":
        too_long = list(range(spec["max_length"] + 1))
        return st.sampled_from(
            [too_long, [spec["min"] - 1], [spec["max"] + 1], [1.5], [True], "3", 3]
        )
    low, high = spec["min"], spec["max"]
    if kind == "float":
        step = 1e-3 * max(1.0, abs(high))
        outside = st.sampled_from([low - step, high + step, high * 10 + 1, -1e300])
        wrong_type = st.sampled_from(["0.1", None, [0.1], True, math.nan, math.inf, -math.inf])
        return st.one_of(outside, wrong_type)
    outside = st.one_of(st.sampled_from([high + 1, 10**9]), st.integers(-(10**6), low - 1))
    wrong_type = st.one_of(
        st.sampled_from(["1", [1], True, math.nan]), st.floats(low + 0.25, high - 0.25)
    )
    if not spec.get("nullable"):
        wrong_type = st.one_of(wrong_type, st.none())
    return st.one_of(outside, wrong_type)


@st.composite
def task_options(draw, name: str) -> dict:
    """A random subset of the task's options, each with a value within its limits."""
    specs = TASK_SPECS[name]["options"]
    chosen = draw(st.lists(st.sampled_from(specs), unique_by=lambda spec: spec["name"]))
    return {spec["name"]: draw(valid_value(spec)) for spec in chosen}


@st.composite
def tiny_model(draw, kind: str) -> dict:
    """Arguments of a tiny ``make_model`` call: sizes, seed and random hyperparameters."""
    specs = MODEL_SPECS[kind]["options"]
    chosen = draw(st.lists(st.sampled_from(specs), unique_by=lambda spec: spec["name"]))
    hyper = {
        spec["name"]: draw(valid_value(spec, TINY_MODEL_MAX.get(spec["name"], TINY_READOUT_WIDTH)))
        for spec in chosen
    }
    return {
        "kind": kind,
        "input_size": draw(st.integers(1, 4)),
        "output_size": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "hyper": hyper,
    }


def build(arguments: dict, dtype: str = "float64"):
    return make_model(
        arguments["kind"],
        input_size=arguments["input_size"],
        output_size=arguments["output_size"],
        seed=arguments["seed"],
        dtype=dtype,
        **arguments["hyper"],
    )


def resolved(kind: str, hyper: dict, name: str):
    default = option_specs(MODEL_SPECS, kind)[name]["default"]
    return hyper.get(name, default)


# Tasks.


@pytest.mark.parametrize("name", sorted(TASK_SPECS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_valid_task_options_give_finite_batches(name, data):
    options = data.draw(task_options(name))
    seed = data.draw(st.integers(0, 2**32 - 1))
    batch_size = data.draw(st.integers(1, 3))
    try:
        task = make_task(name, **options)
    except ValueError as error:
        # Values within each option's limits can still break a rule between options
        # (nth-farthest: num_labels at least num_vectors); the error names the option.
        assert any(repr(option) in str(error) for option in options), str(error)
        assume(False)
    assert set(task.options) == set(TASK_OPTION_SPECS[name])

    x, y = task.sample(batch_size, np.random.default_rng(seed))
    assert x.shape == (batch_size, task.seq_len, task.input_size)
    assert np.isfinite(x).all()
    if task.loss == "mse":
        assert y.shape == (batch_size, task.output_size)
        assert np.isfinite(y).all()
    else:
        assert y.shape == (batch_size,)
        assert ((0 <= y) & (y < task.output_size)).all()

    x_again, y_again, info = task.sample_with_info(batch_size, np.random.default_rng(seed))
    assert np.array_equal(x, x_again)
    assert np.array_equal(y, y_again)
    for value in info.values():
        assert value.shape[0] == batch_size
        if value.dtype.kind == "f":
            assert np.isfinite(value).all()


@pytest.mark.parametrize("name", sorted(TASK_SPECS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_invalid_task_option_names_the_option(name, data):
    spec = data.draw(st.sampled_from(TASK_SPECS[name]["options"]))
    value = data.draw(invalid_value(spec))
    with pytest.raises(ValueError) as error:
        make_task(name, **{spec["name"]: value})
    assert spec["name"] in str(error.value)


@pytest.mark.parametrize("name", sorted(TASK_SPECS))
@PROPERTY_SETTINGS
@given(option=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_unknown_task_option_names_the_option(name, option):
    if option in option_specs(TASK_SPECS, name):
        return
    with pytest.raises(ValueError) as error:
        make_task(name, **{option: 1})
    assert repr(option) in str(error.value)


def test_option_called_name_is_unknown():
    """An option named like make_task's own argument is an unknown option, not a clash."""
    with pytest.raises(ValueError, match="unknown option 'name'"):
        make_task("tracking-grid", name=1)


# Models.


@pytest.mark.parametrize("kind", sorted(MODEL_SPECS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_tiny_models_give_finite_outputs_and_grads(kind, data):
    arguments = data.draw(tiny_model(kind))
    per_step = resolved(kind, arguments["hyper"], "per_step_targets")
    if kind == "rmc":
        arguments["hyper"].setdefault("head_size", 2)
    batch, steps = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    outputs_size = arguments["output_size"]
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.normal(size=(batch, steps, arguments["input_size"]))  # (B, T, D)

    model = build(arguments)
    assert model.param_count == sum(value.size for value in model.params.values())
    predictions, trace = model.predict(x, trace=True)
    expected = (batch, steps, outputs_size) if per_step else (batch, outputs_size)
    assert predictions.shape == expected
    assert np.isfinite(predictions).all()
    for value in trace.values():
        assert value.shape[:2] == (batch, steps)
        assert np.isfinite(value).all()
    if kind == "rmc":
        slots = resolved(kind, arguments["hyper"], "mem_slots")
        heads = resolved(kind, arguments["hyper"], "num_heads")
        blocks = resolved(kind, arguments["hyper"], "num_blocks")
        attention = trace["attention"]  # (B, T, L, H, N+1, N+1)
        assert attention.shape == (batch, steps, blocks, heads, slots + 1, slots + 1)
        assert np.allclose(attention.sum(axis=-1), 1.0)

    y = rng.normal(size=expected)
    loss, grads = model.loss_and_grads(x, y, "mse")
    assert math.isfinite(loss)
    assert grads.keys() == model.params.keys()
    for name, grad in grads.items():
        assert grad.shape == model.params[name].shape, name
        assert np.isfinite(grad).all(), name


@pytest.mark.parametrize("kind", sorted(MODEL_SPECS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_same_seed_gives_same_model(kind, data):
    arguments = data.draw(tiny_model(kind))
    x = np.random.default_rng(0).normal(size=(2, 3, arguments["input_size"]))  # (B, T, D)
    first, second = build(arguments, "float32"), build(arguments, "float32")
    assert first.config == second.config
    for name, value in first.params.items():
        assert np.array_equal(value, second.params[name]), name
    assert np.array_equal(first.predict(x)[0], second.predict(x)[0])

    other = build({**arguments, "seed": (arguments["seed"] + 1) % 2**32}, "float32")
    assert any(
        not np.array_equal(value, other.params[name]) for name, value in first.params.items()
    )


@pytest.mark.parametrize("kind", sorted(MODEL_SPECS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_invalid_hyperparameter_names_the_option(kind, data):
    spec = data.draw(st.sampled_from(MODEL_SPECS[kind]["options"]))
    value = data.draw(invalid_value(spec))
    with pytest.raises(ValueError) as error:
        make_model(kind, input_size=2, output_size=2, **{spec["name"]: value})
    assert spec["name"] in str(error.value)
