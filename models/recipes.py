"""Training recipes for N-th farthest that a CPU can learn, shared by the presets and benches.

``nth_farthest_config(model, seed)`` returns a ``TrainConfig`` dict for the laptop-sized
version of the relational task of Santoro et al. (2018): 4 vectors of 4 dimensions, batch
512, Adam at a constant 3e-4, gradient clipping at norm 1 and 30 minutes of training. The
RMC has 4 slots x 4 heads of size 16 and a 2 x 128 ReLU readout MLP on its final memory;
the LSTM has 128 units and the same readout. With ``curriculum=True`` the run first trains on easier
versions of the task (``NTH_FARTHEST_CURRICULUM``).
"""

import copy

NTH_FARTHEST_TASK = {"num_vectors": 4, "vector_dim": 4}

NTH_FARTHEST_MODELS = {
    "rmc": {
        "mem_slots": 4,
        "head_size": 16,
        "num_heads": 4,
        "attention_mlp_layers": 2,
        "gate_style": "unit",
        "readout_hidden": [128, 128],
    },
    "lstm": {"hidden_size": 128, "readout_hidden": [128, 128]},
}

# A run trains for 30 minutes of wall-clock time. The step limit is only a cap: on one core
# of the machine in docs/results.md, 30 minutes were about 28,700 RMC or 100,000 LSTM steps.
NTH_FARTHEST_TRAINING = {
    "steps": 200_000,
    "time_limit_minutes": 30.0,
    "batch_size": 512,
    "learning_rate": 3e-4,
    "lr_schedule": "constant",
    "clip_norm": 1.0,
    "eval_interval": 250,
    "eval_size": 1024,
    "log_interval": 50,
}

# Easier questions first: 2 vectors; 3 vectors asking only the farthest (n = 0) or m
# itself (n = 2); 3 vectors with every n; 4 vectors with n = 0 or 3. Each stage ends at 90%
# held-out accuracy on its own questions, and the run then trains on the full 4-vector task.
# The stages with fewer vectors inherit num_labels = 4 from the run's task options, so
# their inputs and classes have the 4-vector sizes.
NTH_FARTHEST_CURRICULUM = [
    {"task_options": {"num_vectors": 2}, "threshold": 0.9, "max_steps": None},
    {"task_options": {"num_vectors": 3, "allowed_n": [0, 2]}, "threshold": 0.9, "max_steps": None},
    {"task_options": {"num_vectors": 3}, "threshold": 0.9, "max_steps": None},
    {"task_options": {"num_vectors": 4, "allowed_n": [0, 3]}, "threshold": 0.9, "max_steps": None},
]


def nth_farthest_config(model: str, seed: int = 0, curriculum: bool = False, **overrides) -> dict:
    """Return the ``TrainConfig`` dict of the N-th farthest recipe for ``model``.

    Args:
        model: "rmc" or "lstm".
        seed: seeds the parameters, batches and held-out sets.
        curriculum: whether to train through ``NTH_FARTHEST_CURRICULUM`` first.
        **overrides: top-level ``TrainConfig`` fields to replace, such as ``steps`` or
            ``time_limit_minutes``.
    """
    if model not in NTH_FARTHEST_MODELS:
        raise ValueError(f"model must be one of {sorted(NTH_FARTHEST_MODELS)}, got {model!r}")
    config = {
        "task": "nth-farthest",
        "task_options": dict(NTH_FARTHEST_TASK),
        "model": model,
        "model_options": copy.deepcopy(NTH_FARTHEST_MODELS[model]),
        **NTH_FARTHEST_TRAINING,
        "seed": seed,
    }
    if curriculum:
        config["curriculum"] = copy.deepcopy(NTH_FARTHEST_CURRICULUM)
    config.update(overrides)
    return config
