"""Time the NumPy training step of several copies of ``models/`` side by side.

    git archive d4fe5e6 models | tar -x -C /tmp/before    # the first commit of the models
    python bench/trees.py --config tracking --model rmc /tmp/before .

Each TREE is a folder that contains a ``models`` package. All trees are loaded
into one process: each import of ``models`` is removed from ``sys.modules``
before the next tree's. So they run on the same batches with the same thread
settings, in blocks that alternate between the trees after a warm-up. The
table gives CPU and wall ms per training step (median with min-max) and the
speed-up of each tree over the first, as the ratio of CPU medians. A step is
``loss_and_grads`` and an Adam update, as in ``bench/compare.py``; with
``--predict`` it is batch-1 ``predict(x, trace=True)`` instead.
"""

import argparse
import importlib
import os
import statistics
import sys
import time
from pathlib import Path

from compare import CONFIGS, THREAD_VARIABLES

LEARNING_RATE = 1e-3


def add_tree_arguments(parser, predict_help):
    """Add the trees and the step to run (config, model, ``--predict``) to ``parser``."""
    parser.add_argument("trees", nargs="+", type=Path, help="Folders that contain models/.")
    parser.add_argument("--config", choices=list(CONFIGS), default="tracking")
    parser.add_argument("--model", choices=["rmc", "lstm"], default="rmc")
    parser.add_argument("--predict", action="store_true", help=predict_help)


def check_trees(parser, args):
    """Exit through ``parser`` unless every tree of ``args`` contains a models/ folder."""
    missing = [str(tree) for tree in args.trees if not (tree / "models").is_dir()]
    if missing:
        parser.error(f"each tree must contain a models/ folder; missing in {', '.join(missing)}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_tree_arguments(parser, "Time batch-1 predict instead.")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and OpenMP threads.")
    parser.add_argument(
        "--malloc",
        choices=["keep", "default"],
        default="keep",
        help="keep: the process keeps freed memory for reuse, as training does; "
        "default: the C library's own thresholds.",
    )
    parser.add_argument("--blocks", type=int, default=7, help="Timed blocks per tree.")
    parser.add_argument(
        "--block-seconds", type=float, default=0.5, help="Target duration of one block, seconds."
    )
    args = parser.parse_args(argv)
    check_trees(parser, args)
    return args


def import_tree(tree):
    """Import ``models.factory``, ``models.optim`` and ``models.tasks`` from one tree."""
    for name in [name for name in sys.modules if name == "models" or name.startswith("models.")]:
        del sys.modules[name]
    sys.path.insert(0, str(tree.resolve()))
    try:
        return [importlib.import_module(f"models.{name}") for name in ("factory", "optim", "tasks")]
    finally:
        sys.path.pop(0)


def build_step(tree, args, numpy):
    """Return a function that runs one step of the configured model from ``tree``."""
    factory, optim, tasks = import_tree(tree)
    config = CONFIGS[args.config]
    task = tasks.make_task(config.task, **config.task_options)
    x, y = task.sample(1 if args.predict else config.batch_size, numpy.random.default_rng(0))
    x = x.astype(numpy.float32)
    y = y.astype(numpy.float32) if task.loss == "mse" else y
    model = factory.make_model(
        args.model,
        input_size=task.input_size,
        output_size=task.output_size,
        seed=0,
        **config.models[args.model],
    )
    if args.predict:
        return lambda: model.predict(x, trace=True)
    optimizer = optim.Adam(model.params)

    def step():
        _, grads = model.loss_and_grads(x, y, task.loss)
        optimizer.step(model.params, grads, LEARNING_RATE)

    return step


def time_block(step, calls):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        step()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def main(argv=None):
    args = parse_args(argv)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(args.threads)
    import numpy  # imported only now, so that the thread variables are set first

    if args.malloc == "keep":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from models.allocator import keep_freed_memory

        print(f"freed memory kept in the process: {keep_freed_memory()}")
        sys.path.pop(0)  # import_tree drops this models package before loading each tree

    steps = [build_step(tree, args, numpy) for tree in args.trees]
    warm = [time_block(step, 3)[0] for step in steps]
    calls = max(1, round(args.block_seconds / max(warm)))
    times = [[] for _ in steps]
    for _ in range(args.blocks):
        for step, tree_times in zip(steps, times, strict=True):
            tree_times.append(time_block(step, calls))

    what = "batch-1 predict(x, trace=True)" if args.predict else "training step"
    print(f"{args.config}/{args.model}, {what}, {calls} calls per block, threads {args.threads}")
    print("| tree | CPU ms | wall ms | speed-up over the first (CPU) |")
    print("| --- | --- | --- | --- |")
    first = statistics.median(cpu for _, cpu in times[0])
    for tree, tree_times in zip(args.trees, times, strict=True):
        cells = []
        for clock in (1, 0):
            values = [1000.0 * value[clock] for value in tree_times]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        speedup = first / statistics.median(cpu for _, cpu in tree_times)
        print(f"| {tree} | {cells[0]} | {cells[1]} | {speedup:.2f} |")


if __name__ == "__main__":
    main()
