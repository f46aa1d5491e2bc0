"""Time NumPy and PyTorch eager training steps side by side, in alternating blocks.

    python bench/compare.py --config all --threads 1

For every model of a configuration, both implementations start from the same
weights and train on the same fixed batches (float32, Adam, learning rate
1e-3, gradient norm computed every step as the training loop does). After a
warm-up that also sizes the blocks, timed blocks alternate NumPy, PyTorch,
NumPy, PyTorch, ..., so that a change in the load of a shared machine hits
both. Between block pairs a short burst measures NumPy's float32 matmul rate,
from which the compute-bound limit of each step follows (see bench/flops.py).

Every block is timed twice: wall-clock time, which is what a user waits for,
and the process's CPU time, which leaves out the time that other processes
hold the core on a shared machine. The table gives ms/step on both clocks as
the median with min-max over blocks, and steps/s and sequences/s from the
wall median. The fraction of the compute-bound limit comes from the CPU
median, because the matmul rate is measured in CPU time too. Per model it
gives the ratio
of NumPy steps/s to PyTorch steps/s on both clocks: the ratio of the
medians, with the min-max of the ratios of adjacent block pairs. For the
tracking configuration it also times batch-1 ``predict(x, trace=True)``. The
last line of output is one JSON object with every ratio, fraction and latency
(``latency_ms`` is the wall median).

Thread counts are pinned before NumPy or PyTorch is imported: the
environment variables of OpenBLAS, OpenMP and MKL, plus
``torch.set_num_threads``. With ``--malloc keep``, the default, the process
keeps the memory it frees, as training processes do (models/allocator.py);
the setting holds for both implementations.
"""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    task: str
    task_options: dict
    batch_size: int
    models: dict  # kind -> hyperparameters for make_model
    latency: bool  # also time batch-1 inference with the full trace


CONFIGS = {
    "tracking": BenchConfig(
        task="tracking-grid",
        task_options={"num_objects": 3, "grid_size": 5, "num_steps": 10},
        batch_size=32,
        models={
            "rmc": {"mem_slots": 4, "head_size": 32, "num_heads": 1, "gate_style": "unit"},
            "lstm": {"hidden_size": 32},
        },
        latency=True,
    ),
    "nth-farthest": BenchConfig(
        task="nth-farthest",
        task_options={"num_vectors": 8, "vector_dim": 16},
        batch_size=64,
        models={
            "rmc": {
                "mem_slots": 4,
                "head_size": 64,
                "num_heads": 4,
                "gate_style": "unit",
                "readout_hidden": [256, 256, 256, 256],
            },
            "lstm": {"hidden_size": 256, "readout_hidden": [256, 256, 256, 256]},
        },
        latency=False,
    ),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS and OpenMP threads for both, default 1."
    )
    parser.add_argument(
        "--blocks", type=int, default=7, help="Timed blocks per implementation, at least 5."
    )
    parser.add_argument(
        "--block-seconds",
        type=float,
        default=1.0,
        help="Target duration of one block of the slower implementation, in seconds.",
    )
    parser.add_argument(
        "--warmup-seconds", type=float, default=1.0, help="Warm-up per implementation, in seconds."
    )
    parser.add_argument(
        "--malloc",
        choices=["keep", "default"],
        default="keep",
        help="keep: the process keeps freed memory for reuse, as training does "
        "(models/allocator.py), for both implementations; default: the C library's own "
        "thresholds.",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.blocks < 5:
        parser.error(f"--blocks must be at least 5, got {args.blocks}")
    if args.block_seconds <= 0 or args.warmup_seconds <= 0:
        parser.error("--block-seconds and --warmup-seconds must be positive")
    return args


def pin_threads(threads):
    """Set the thread variables; call before NumPy or PyTorch is imported."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)
    # Imported only now, so that the thread variables are set before NumPy and PyTorch load.
    sys.path.insert(0, str(REPO_ROOT))
    from bench.timing import run_benchmark

    names = list(CONFIGS) if args.config == "all" else [args.config]
    summary = run_benchmark({name: CONFIGS[name] for name in names}, args)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
