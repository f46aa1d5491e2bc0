"""Measure the peak memory of N-th farthest training steps and evaluations at large batches.

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/nth_memory.py [--batch-size 512] [--num-vectors 8]

It measures the RMC of the laptop recipe (4 slots x 4 heads of size 16, readout MLP
2 x 128) and an LSTM with 256 units and the same readout. For each it prints the peak of
NumPy allocations, as ``tracemalloc`` traces them, during one ``loss_and_grads`` on a
batch of ``--batch-size`` sequences and during ``models.evaluation.evaluate`` on
``--eval-size`` held-out sequences (chunks of ``EVAL_CHUNK``). The peak counts arrays
allocated during the call on top of the model's parameters, not the interpreter or BLAS
buffers.
"""

import argparse
import gc
import time
import tracemalloc

import numpy as np

from models.evaluation import EVAL_CHUNK, evaluate
from models.factory import make_model
from models.tasks import make_task

RMC_RECIPE = {"mem_slots": 4, "num_heads": 4, "head_size": 16, "readout_hidden": [128, 128]}
LSTM_RECIPE = {"hidden_size": 256, "readout_hidden": [128, 128]}


def measure(function) -> tuple[float, float]:
    """Return (peak MiB allocated while ``function`` runs, seconds) of one call."""
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    function()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=512, help="training batch [512]")
    parser.add_argument("--eval-size", type=int, default=4096, help="held-out sequences [4096]")
    parser.add_argument("--num-vectors", type=int, default=8, help="K, also the steps [8]")
    parser.add_argument("--vector-dim", type=int, default=16, help="D [16]")
    args = parser.parse_args()

    task = make_task("nth-farthest", num_vectors=args.num_vectors, vector_dim=args.vector_dim)
    rng = np.random.default_rng(0)
    x, y = task.sample(args.batch_size, rng)
    test_x, test_y = task.sample(args.eval_size, rng)
    print(
        f"nth-farthest K={args.num_vectors} D={args.vector_dim}: input size {task.input_size}, "
        f"batch {args.batch_size} x {task.seq_len} steps, held-out {args.eval_size} "
        f"in chunks of {EVAL_CHUNK}"
    )
    for kind, hyper in (("rmc", RMC_RECIPE), ("lstm", LSTM_RECIPE)):
        model = make_model(kind, input_size=task.input_size, output_size=task.output_size, **hyper)
        model.loss_and_grads(x[:8], y[:8], task.loss)  # warm-up outside the measurement
        train_peak, train_seconds = measure(lambda m=model: m.loss_and_grads(x, y, task.loss))
        eval_peak, eval_seconds = measure(lambda m=model: evaluate(m, task.loss, test_x, test_y))
        print(
            f"{kind:4s} {model.param_count:7d} parameters: loss_and_grads peak "
            f"{train_peak:7.1f} MiB ({train_seconds:.2f} s); evaluate peak {eval_peak:7.1f} MiB "
            f"({eval_seconds:.2f} s)"
        )


if __name__ == "__main__":
    main()
