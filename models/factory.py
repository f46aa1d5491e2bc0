"""Build models by kind, with every hyperparameter checked up front.

``MODEL_SPECS[kind]`` is a JSON-ready dict with the model's ``description``,
its ``options`` and named ``presets``, so a form can be built and checked
without a second copy of the limits. Each option is a dict with ``name``,
``type``, ``default``, ``min``, ``max`` and ``help``; the types are:

- ``"int"`` and ``"bool"``; an int option with ``"nullable": True`` also
  accepts None, whose meaning its help states;
- ``"choice"``: one of the values in ``"choices"`` (None included for
  ``gate_style``);
- ``"int_list"``: a list of at most ``"max_length"`` integers, each from
  ``min`` to ``max``.
"""

from models.lstm import LSTM, LSTMConfig
from models.rmc import GATE_STYLES, RelationalMemory, RMCConfig

DTYPES = ("float32", "float64")
MAX_INPUT_SIZE = 4096
MAX_OUTPUT_SIZE = 4096
MAX_MEM_SIZE = 2048


def _int_option(name, default, low, high, help_text, nullable=False):
    option = {"name": name, "type": "int", "default": default, "min": low, "max": high}
    if nullable:
        option["nullable"] = True
    option["help"] = help_text
    return option


_READOUT_HIDDEN = {
    "name": "readout_hidden",
    "type": "int_list",
    "default": [],
    "min": 1,
    "max": 1024,
    "max_length": 8,
    "help": "Widths of the hidden layers of the readout MLP, ReLU between; [] for linear.",
}
_PER_STEP_TARGETS = {
    "name": "per_step_targets",
    "type": "bool",
    "default": False,
    "min": None,
    "max": None,
    "help": "Read out every step, for targets of shape (B, T, O) or labels (B, T).",
}

MODEL_SPECS = {
    "lstm": {
        "description": "LSTM baseline with a linear (or MLP) readout on the last hidden state.",
        "options": [
            _int_option("hidden_size", 32, 1, 2048, "Hidden units of the LSTM."),
            _READOUT_HIDDEN,
            _PER_STEP_TARGETS,
        ],
        "presets": {"seed": {"hidden_size": 32}},
    },
    "rmc": {
        "description": (
            "Relational Memory Core: memory slots that attend over each other and the "
            "input at every step, with LSTM-style gates."
        ),
        "options": [
            _int_option("mem_slots", 4, 1, 64, "Memory slots N."),
            _int_option(
                "head_size",
                32,
                1,
                512,
                "Value size per head; memory width is head_size * num_heads, at most 2048.",
            ),
            _int_option("num_heads", 1, 1, 32, "Attention heads H."),
            _int_option(
                "key_size",
                None,
                1,
                512,
                "Query and key size per head; null means head_size.",
                nullable=True,
            ),
            _int_option(
                "num_blocks", 1, 1, 8, "Attention blocks per step, each with its own weights."
            ),
            _int_option(
                "attention_mlp_layers",
                2,
                1,
                8,
                "Linear layers of the MLP after the attention in each block.",
            ),
            {
                "name": "gate_style",
                "type": "choice",
                "default": "unit",
                "choices": list(GATE_STYLES),
                "min": None,
                "max": None,
                "help": "Gates per memory unit ('unit'), one per slot ('memory'), or none (null).",
            },
            _READOUT_HIDDEN,
            _PER_STEP_TARGETS,
        ],
        "presets": {
            "seed": {"mem_slots": 4, "head_size": 32, "num_heads": 1, "gate_style": "unit"},
            "paper": {
                "mem_slots": 8,
                "head_size": 32,
                "num_heads": 8,
                "num_blocks": 1,
                "attention_mlp_layers": 2,
                "gate_style": "unit",
                "readout_hidden": [256, 256, 256, 256],
            },
        },
    },
}

_BUILDERS = {"lstm": (LSTM, LSTMConfig), "rmc": (RelationalMemory, RMCConfig)}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name, value, low, high):
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def _check_option(spec, value):
    """Return the value of one option, validated against its spec."""
    name = spec["name"]
    if spec["type"] == "int":
        if value is None and spec.get("nullable"):
            return None
        return _check_int(name, value, spec["min"], spec["max"])
    if spec["type"] == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if spec["type"] == "choice":
        if value not in spec["choices"]:
            raise ValueError(f"{name} must be one of {spec['choices']}, got {value!r}")
        return value
    # int_list
    if not isinstance(value, list | tuple) or len(value) > spec["max_length"]:
        raise ValueError(
            f"{name} must be a list of at most {spec['max_length']} integers, got {value!r}"
        )
    for width in value:
        if not _is_int(width) or not spec["min"] <= width <= spec["max"]:
            raise ValueError(
                f"{name} entries must be integers from {spec['min']} to {spec['max']}, "
                f"got {width!r} in {list(value)}"
            )
    return tuple(value)


def _resolve_hyperparameters(kind, hyper):
    specs = MODEL_SPECS[kind]["options"]
    known = [spec["name"] for spec in specs]
    unknown = sorted(set(hyper) - set(known))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter {unknown[0]!r} for model {kind!r}: "
            f"expected one of {', '.join(known)}"
        )
    return {
        spec["name"]: _check_option(spec, hyper.get(spec["name"], spec["default"]))
        for spec in specs
    }


def make_model(kind, *, input_size, output_size, seed=0, dtype="float32", **hyper):
    """Build a freshly initialised model of ``kind`` ("lstm" or "rmc").

    Args:
        kind: "lstm" or "rmc".
        input_size: features per input step, D.
        output_size: regression outputs or classes, O.
        seed: seeds the parameter initialisation; the same seed gives the same parameters.
        dtype: "float32" (the default, for training) or "float64" (for gradient checks).
        **hyper: the hyperparameters listed in ``MODEL_SPECS[kind]["options"]``.

    Raises:
        ValueError: for an unknown kind or hyperparameter, or a value of the wrong type or
            out of range. The message names the field, the rule and the value.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"kind must be one of {sorted(_BUILDERS)}, got {kind!r}")
    _check_int("input_size", input_size, 1, MAX_INPUT_SIZE)
    _check_int("output_size", output_size, 1, MAX_OUTPUT_SIZE)
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    resolved = _resolve_hyperparameters(kind, hyper)
    if kind == "rmc" and resolved["head_size"] * resolved["num_heads"] > MAX_MEM_SIZE:
        raise ValueError(
            f"head_size * num_heads must be at most {MAX_MEM_SIZE}, got "
            f"{resolved['head_size']} * {resolved['num_heads']}"
        )

    model_class, config_class = _BUILDERS[kind]
    config = config_class(
        input_size=input_size, output_size=output_size, seed=seed, dtype=dtype, **resolved
    )
    return model_class(config)
