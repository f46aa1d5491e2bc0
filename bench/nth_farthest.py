"""Reproduce N-th farthest, RMC against LSTM, with and without a curriculum, in one command.

Usage::

    python bench/nth_farthest.py --out runs/nth --seeds 0 1 2 --jobs 2

Every combination of ``--models``, ``--curriculum`` and ``--seeds`` trains with the recipe
of ``models.recipes``: 4 vectors of 4 dimensions unless ``--num-vectors`` and
``--vector-dim`` set others. ``--jobs`` runs train at once, each in its own process (one
after the other by default). A run ends at ``--steps`` or after the wall-clock
``--budget-minutes`` (the config's ``time_limit_minutes``), whichever comes first.

Each run writes ``config.json``, ``metrics.jsonl``, ``summary.json`` and
``checkpoint.npz`` to its own folder under ``--out``; after each run ``results.md`` in
``--out`` is rewritten with one table row per finished run: steps, wall time, held-out
accuracy after 10, 20 and 30 minutes and after 5,000, 10,000 and 20,000 steps, final and
best accuracy, the first evaluation at 90% or more, and the final accuracy per n.
``--skip-existing`` keeps runs that already have a ``summary.json``, so an interrupted
sweep can resume.

The BLAS thread count of every run (``--threads``, default 1) is set before NumPy is
imported.
"""

import argparse
import json
import logging
import multiprocessing
import os
import platform
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET_ACCURACY = 0.9
# The results table shows the held-out accuracy of the last evaluation by these times.
CHECKPOINT_MINUTES = (10, 20, 30)
# ... and the held-out accuracy of the last evaluation at or before these steps.
CHECKPOINT_STEPS = (5_000, 10_000, 20_000)
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

logger = logging.getLogger("bench.nth_farthest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds [0 1 2]")
    parser.add_argument(
        "--models", nargs="+", choices=["rmc", "lstm"], default=["rmc", "lstm"], help="[rmc lstm]"
    )
    parser.add_argument(
        "--curriculum",
        nargs="+",
        choices=["off", "on"],
        default=["off", "on"],
        help="train without and/or with the curriculum of models.recipes [off on]",
    )
    parser.add_argument(
        "--budget-minutes", type=float, default=30.0, help="wall-clock limit per run [30]"
    )
    parser.add_argument("--steps", type=int, default=200_000, help="step limit per run [200000]")
    parser.add_argument("--num-vectors", type=int, default=4, help="K [4]")
    parser.add_argument("--vector-dim", type=int, default=4, help="D [4]")
    parser.add_argument("--lstm-units", type=int, default=128, help="LSTM hidden units [128]")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per run [1]")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once, each in its own process [1]"
    )
    parser.add_argument(
        "--skip-existing", action="store_true", help="keep runs that have a summary.json"
    )
    return parser


def run_name(model: str, curriculum: bool, seed: int) -> str:
    return f"{model}-{'curriculum' if curriculum else 'plain'}-s{seed}"


def train_one(config_dict: dict, out: Path) -> dict:
    """Train one run into ``out`` until its steps or its time limit end; return its summary.

    The files are those of ``python -m models.train``.
    """
    from models.train import OUTPUT_FILES, run
    from models.train_config import TrainConfig

    config = TrainConfig.from_dict(config_dict)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    run(config, out)
    return json.loads((out / "summary.json").read_text())


def describe_run(folder: Path) -> dict | None:
    """Read a finished run folder into one row of the results table, or None if unfinished."""
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    config = json.loads((folder / "config.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    evaluated = [row for row in rows if row.get("test_accuracy") is not None]
    reached = next((row for row in evaluated if row["test_accuracy"] >= TARGET_ACCURACY), None)
    final = evaluated[-1] if evaluated else {}
    return {
        "run": folder.name,
        "status": summary.get("status"),
        "steps": summary.get("steps"),
        "seconds": summary.get("seconds"),
        "final_accuracy": final.get("test_accuracy"),
        "best_accuracy": max((row["test_accuracy"] for row in evaluated), default=None),
        "reached_step": None if reached is None else reached["step"],
        "reached_seconds": None if reached is None else reached["elapsed"],
        "per_n": final.get("test_accuracy_per_n"),
        "by_minutes": {
            minutes: _last_accuracy(row for row in evaluated if row["elapsed"] <= 60 * minutes)
            for minutes in CHECKPOINT_MINUTES
        },
        "by_steps": {
            steps: _last_accuracy(row for row in evaluated if row["step"] <= steps)
            for steps in CHECKPOINT_STEPS
        },
        "curriculum": summary.get("curriculum"),
        "config": config,
    }


def _last_accuracy(rows) -> float | None:
    """Return the held-out accuracy of the latest evaluation among ``rows``, or None."""
    return max(rows, key=lambda row: row["step"], default={}).get("test_accuracy")


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _minutes(seconds) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min"


def _stage_ends(curriculum) -> str:
    if not curriculum:
        return "–"
    ends = [str(stage["end_step"]) for stage in curriculum if stage["end_step"] is not None]
    return ", ".join(ends) or "none"


def results_table(rows: list[dict]) -> str:
    """Format the finished runs as a Markdown table."""
    by_minutes = " | ".join(f"acc. at {minutes} min" for minutes in CHECKPOINT_MINUTES)
    by_steps = " | ".join(f"acc. at step {steps:,}" for steps in CHECKPOINT_STEPS)
    columns = len(CHECKPOINT_MINUTES) + len(CHECKPOINT_STEPS)
    lines = [
        f"| run | steps | wall time | {by_minutes} | {by_steps} | final acc. | best acc. | "
        "first ≥ 90% | final acc. per n | stage ends (step) |",
        "| --- | ---: | ---: | " + "---: | " * columns + "---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        reached = (
            "not reached"
            if row["reached_step"] is None
            else f"step {row['reached_step']}, {_minutes(row['reached_seconds'])}"
        )
        per_n = ", ".join(
            f"{n}: {_percent(value)}" for n, value in sorted((row["per_n"] or {}).items())
        )
        at_times = " | ".join(
            [_percent(row["by_minutes"][minutes]) for minutes in CHECKPOINT_MINUTES]
            + [_percent(row["by_steps"][steps]) for steps in CHECKPOINT_STEPS]
        )
        lines.append(
            f"| {row['run']} | {row['steps']} | {_minutes(row['seconds'])} | {at_times} | "
            f"{_percent(row['final_accuracy'])} | {_percent(row['best_accuracy'])} | {reached} | "
            f"{per_n or '–'} | {_stage_ends(row['curriculum'])} |"
        )
    return "\n".join(lines)


def machine_description(threads: int) -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"BLAS threads {threads}, load average (1, 5, 15 min) {load}"
    )


def code_version() -> str:
    """Return the git commit of the repository, with "+changes" when the tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown (git not found)"
    return f"{commit or 'unknown'}{'+changes' if changed else ''}"


def write_results(out: Path, threads: int, command: str) -> None:
    rows = [row for folder in sorted(out.iterdir()) if folder.is_dir()
            if (row := describe_run(folder)) is not None]  # fmt: skip
    text = (
        "# N-th farthest runs\n\n"
        f"Command: `{command}`\n\n"
        f"Machine at the last update: {machine_description(threads)}\n\n"
        f"Code at the last update: {code_version()}\n\n"
        f"{results_table(rows)}\n"
    )
    (out / "results.md").write_text(text)


def run_config(args: argparse.Namespace, model: str, seed: int, curriculum: bool) -> dict:
    """Return the recipe's ``TrainConfig`` dict with the command line's sizes and limits."""
    from models.recipes import nth_farthest_config

    config = nth_farthest_config(
        model, seed, curriculum, steps=args.steps, time_limit_minutes=args.budget_minutes
    )
    config["task_options"].update(num_vectors=args.num_vectors, vector_dim=args.vector_dim)
    if model == "lstm":
        config["model_options"]["hidden_size"] = args.lstm_units
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("jobs", "threads", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(args.threads)
    sys.path.insert(0, str(REPO_ROOT))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Per-step lines of the training loop would drown the evaluations.
    logging.getLogger("models.training").setLevel(logging.WARNING)

    command = " ".join(
        ["python bench/nth_farthest.py", *(argv if argv is not None else sys.argv[1:])]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    logger.info("machine: %s; code %s", machine_description(args.threads), code_version())
    planned = []
    for seed in args.seeds:
        for curriculum in (mode == "on" for mode in args.curriculum):
            for model in args.models:
                folder = args.out / run_name(model, curriculum, seed)
                if args.skip_existing and (folder / "summary.json").is_file():
                    logger.info("skipping %s: it has a summary.json", folder)
                    continue
                planned.append((run_config(args, model, seed, curriculum), folder))

    def report(folder: Path, summary: dict) -> None:
        logger.info(
            "%s: %s after %s steps (%s), test accuracy %s",
            folder.name,
            summary.get("status"),
            summary.get("steps"),
            summary.get("stopped_by"),
            summary.get("final_test_accuracy"),
        )
        write_results(args.out, args.threads, command)

    if args.jobs == 1:
        for config, folder in planned:
            logger.info("training %s", folder.name)
            report(folder, train_one(config, folder))
        return 0
    # Spawned workers inherit the thread variables set above and this process's sys.path.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = {pool.submit(train_one, config, folder): folder for config, folder in planned}
        logger.info("training %s, %d at a time", ", ".join(f.name for _, f in planned), args.jobs)
        for future in as_completed(futures):
            report(futures[future], future.result())
    return 0


if __name__ == "__main__":
    sys.exit(main())
