"""Launch presets listed by ``GET /api/tasks``: complete ``POST /api/runs`` bodies.

Each preset has an RMC and an LSTM request with the same task, training settings and
seed, so the pair can be launched and compared. ``paper`` is flagged as too slow for a
laptop and carries ``alternative``, the same problem at a size a CPU can learn. Model
and task settings come from the presets in ``models.MODEL_SPECS`` and
``models.TASK_SPECS`` where those define them. The ``relational`` presets use the N-th
farthest recipe of ``models.recipes`` and carry ``launch_directly``: the dashboard
launches their runs at once and opens the page that compares them.
"""

import models
from models.recipes import nth_farthest_config

_RMC_PRESETS = models.MODEL_SPECS["rmc"]["presets"]
_LSTM_PRESETS = models.MODEL_SPECS["lstm"]["presets"]
_NTH_FARTHEST_PRESETS = models.TASK_SPECS["nth-farthest"]["presets"]

PAPER_SMALL_TRAINING = {
    "steps": 10_000,
    "batch_size": 512,
    "learning_rate": 3e-4,
    "clip_norm": 1.0,
    "seed": 0,
}


def _pair(task: str, task_options: dict, training: dict, rmc: dict, lstm: dict) -> list[dict]:
    common = {"task": task, "task_options": task_options, **training}
    return [
        {**common, "model": "rmc", "model_options": rmc},
        {**common, "model": "lstm", "model_options": lstm},
    ]


PRESETS = [
    {
        "name": "seed",
        "title": "Seed configuration",
        "description": (
            "The configuration of the original object-tracking experiment: 3 objects on a "
            "5 x 5 grid for 10 steps; an RMC with 4 memory slots and 1 head of size 32 "
            "(2 attention-MLP layers, unit gates) against an LSTM with 32 hidden units; "
            "10,000 steps of batch 32, seed 0."
        ),
        "too_slow_for_laptop": False,
        "runs": _pair(
            "tracking-grid",
            {"num_objects": 3, "grid_size": 5, "num_steps": 10},
            {"steps": 10_000, "batch_size": 32, "seed": 0},
            {**_RMC_PRESETS["seed"], "attention_mlp_layers": 2},
            dict(_LSTM_PRESETS["seed"]),
        ),
    },
    {
        "name": "paper",
        "title": "Paper configuration (N-th farthest)",
        "description": (
            "N-th farthest with 8 vectors of 16 dimensions as in Santoro et al. (2018): an "
            "RMC with 8 slots x 8 heads of size 32, 1 block, 2 attention-MLP layers, unit "
            "gates and a 4 x 256 readout MLP; Adam 1e-4 with gradient clipping, batch 1600."
        ),
        "too_slow_for_laptop": True,
        "warning": (
            "Too slow for a laptop: every step pushes 1600 sequences through a 256-wide "
            "memory. Use the alternative, the same task with 4 vectors of 4 dimensions."
        ),
        "runs": _pair(
            "nth-farthest",
            dict(_NTH_FARTHEST_PRESETS["paper"]),
            {
                "steps": 10_000,
                "batch_size": 1600,
                "learning_rate": 1e-4,
                "clip_norm": 1.0,
                "seed": 0,
            },
            dict(_RMC_PRESETS["paper"]),
            {"hidden_size": 256, "readout_hidden": [256, 256, 256, 256]},
        ),
        "alternative": {
            "name": "paper-small",
            "title": "Paper task, laptop size",
            "description": (
                "N-th farthest with 4 vectors of 4 dimensions, batch 512, Adam 3e-4, gradient "
                "clipping at norm 1; an RMC with 4 slots x 4 heads of size 16 and a 2 x 128 "
                "readout MLP against an LSTM with 128 units and the same readout."
            ),
            "runs": _pair(
                "nth-farthest",
                dict(_NTH_FARTHEST_PRESETS["small"]),
                PAPER_SMALL_TRAINING,
                {
                    "mem_slots": 4,
                    "head_size": 16,
                    "num_heads": 4,
                    "attention_mlp_layers": 2,
                    "gate_style": "unit",
                    "readout_hidden": [128, 128],
                },
                {"hidden_size": 128, "readout_hidden": [128, 128]},
            ),
        },
    },
]


def _recipe_pair(curriculum: bool) -> list[dict]:
    return [nth_farthest_config(kind, seed=0, curriculum=curriculum) for kind in ("rmc", "lstm")]


# The relational recipe launches at once and opens the compare page of the two runs
# (``launch_directly``), because its settings are the experiment.
_RECIPE_TEXT = (
    "N-th farthest with 4 vectors of 4 dimensions: an RMC with 4 slots x 4 heads of size "
    "16 and a 2 x 128 ReLU readout MLP against an LSTM with 128 units and the same readout, "
    "both with seed 0, batch 512, Adam at a constant 3e-4, gradient clipping at norm 1, "
    "30 minutes of training each (at most 200,000 steps). On a 2-core machine the RMC "
    "passed 90% held-out accuracy after 10 to 13 minutes on three seeds, the LSTM after "
    "about twice that time and seven times the steps (docs/results.md)."
)

PRESETS += [
    {
        "name": "relational",
        "title": "Relational reasoning (RMC paper)",
        "description": f"{_RECIPE_TEXT} Launches both runs and opens their comparison.",
        "too_slow_for_laptop": False,
        "launch_directly": True,
        "runs": _recipe_pair(curriculum=False),
    },
    {
        "name": "relational-curriculum",
        "title": "Relational reasoning (RMC paper), with curriculum",
        "description": (
            f"{_RECIPE_TEXT} Both first train on easier questions: 2 vectors; 3 vectors "
            "with n = 0 or 2; 3 vectors; 4 vectors with n = 0 or 3; each stage until 90% "
            "held-out accuracy on its own questions. Launches both runs and opens their "
            "comparison."
        ),
        "too_slow_for_laptop": False,
        "launch_directly": True,
        "runs": _recipe_pair(curriculum=True),
    },
]
