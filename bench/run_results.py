"""Reproduce the runs behind docs/results.md and print its tables.

Every run is one ``python -m models.train`` process with one BLAS thread, so that runs
side by side do not compete for threads. A run whose folder already has a ``train.log``
is skipped, so an interrupted batch can be resumed and two drivers can share the work.

    python bench/run_results.py --out /tmp/results --jobs 2            # train every group
    python bench/run_results.py --out /tmp/results --group tracking    # one group only
    python bench/run_results.py --out /tmp/results --table             # print the tables
    python bench/run_results.py --out /tmp/results --commands          # print the commands
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SEEDS = (0, 1, 2)

# The seed configuration of both models on the two tracking tasks.
TRACKING_MODELS = {
    "lstm": ["--model-option", "hidden_size=32"],
    "rmc": [
        "--model-option", "mem_slots=4",
        "--model-option", "head_size=32",
        "--model-option", "num_heads=1",
        "--model-option", "attention_mlp_layers=2",
        "--model-option", "gate_style=unit",
    ],
}  # fmt: skip

# Both models read out through the same MLP of 2 x 128 units on N-th farthest.
NTH_FARTHEST_MODELS = {
    "lstm": ["--model-option", "hidden_size=128", "--model-option", "readout_hidden=[128,128]"],
    "rmc": [
        "--model-option", "mem_slots=4",
        "--model-option", "head_size=16",
        "--model-option", "num_heads=4",
        "--model-option", "attention_mlp_layers=2",
        "--model-option", "gate_style=unit",
        "--model-option", "readout_hidden=[128,128]",
    ],
}  # fmt: skip

NTH_FARTHEST_TRAINING = [
    "--batch-size", "512",
    "--learning-rate", "3e-4",
    "--lr-schedule", "constant",
    "--clip-norm", "1",
    "--eval-size", "2048",
]  # fmt: skip

GROUPS = {
    "tracking-grid": {
        "args": ["--task", "tracking-grid", "--steps", "10000", "--batch-size", "32"],
        "models": TRACKING_MODELS,
    },
    "tracking": {
        "args": ["--task", "tracking", "--steps", "10000", "--batch-size", "32"],
        "models": TRACKING_MODELS,
    },
    "nth-farthest-4x4": {
        "args": [
            "--task", "nth-farthest",
            "--task-option", "num_vectors=4",
            "--task-option", "vector_dim=4",
            "--steps", "6000",
            *NTH_FARTHEST_TRAINING,
        ],
        "models": NTH_FARTHEST_MODELS,
    },
    "nth-farthest-8x16": {
        "args": [
            "--task", "nth-farthest",
            "--task-option", "num_vectors=8",
            "--task-option", "vector_dim=16",
            "--steps", "1500",
            *NTH_FARTHEST_TRAINING,
        ],
        "models": NTH_FARTHEST_MODELS,
    },
}  # fmt: skip

THREAD_SETTINGS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_directory(out: Path, group: str, model: str, seed: int) -> Path:
    return out / group / f"{model}-seed{seed}"


def train_command(out: Path, group: str, model: str, seed: int) -> list[str]:
    spec = GROUPS[group]
    return [
        "python", "-m", "models.train",
        *spec["args"],
        "--model", model,
        *spec["models"][model],
        "--seed", str(seed),
        "--out", str(run_directory(out, group, model, seed)),
    ]  # fmt: skip


def shell_line(command: list[str]) -> str:
    settings = " ".join(f"{key}={value}" for key, value in THREAD_SETTINGS.items())
    return f"{settings} {' '.join(command)}"


def planned_runs(out: Path, groups: list[str]) -> list[tuple[str, str, int]]:
    return [
        (group, model, seed)
        for group in groups
        for model in GROUPS[group]["models"]
        for seed in SEEDS
    ]


def _claim_log(directory: Path):
    """Create ``train.log`` exclusively and return it open, or None when it already exists."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return open(directory / "train.log", "x")
    except FileExistsError:
        return None


def train_all(out: Path, groups: list[str], jobs: int) -> int:
    """Run every unclaimed run with at most ``jobs`` processes at once; return the failures.

    A run is claimed by creating its ``train.log`` exclusively, so drivers started side by
    side share the runs, and a run that was started before (finished, failed or still
    running) is skipped. Delete a run's folder to train it again.
    """
    environment = {**os.environ, **THREAD_SETTINGS}
    pending = planned_runs(out, groups)
    running: list[tuple[subprocess.Popen, tuple[str, str, int]]] = []
    failures = 0
    while pending or running:
        while pending and len(running) < jobs:
            run = pending.pop(0)
            log = _claim_log(run_directory(out, *run))
            if log is None:
                continue
            command = [sys.executable, *train_command(out, *run)[1:], "--overwrite"]
            with log:
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=environment
                )
            print(f"started {shell_line(train_command(out, *run))}", flush=True)
            running.append((process, run))
        time.sleep(2)
        for process, run in list(running):
            if process.poll() is not None:
                running.remove((process, run))
                print(f"finished {run} with exit status {process.returncode}", flush=True)
                failures += process.returncode != 0
    return failures


def _mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4g}" if values else "n/a"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def print_tables(out: Path, groups: list[str]) -> None:
    for group in groups:
        print(f"\n### {group}\n")
        print("| model | params | test loss | test accuracy | per seed | seconds per run |")
        print("| --- | --- | --- | --- | --- | --- |")
        baselines: dict[str, list[float]] = {}
        for model in GROUPS[group]["models"]:
            summaries = []
            for seed in SEEDS:
                path = run_directory(out, group, model, seed) / "summary.json"
                if path.exists():
                    summaries.append(json.loads(path.read_text()))
            if not summaries:
                continue
            losses = [summary["final_test_loss"] for summary in summaries]
            accuracies = [summary["final_test_accuracy"] for summary in summaries]
            seconds = [summary["seconds"] for summary in summaries]
            if accuracies[0] is None:
                per_seed = ", ".join(f"{value:.4g}" for value in losses)
                accuracy_text = "n/a"
            else:
                per_seed = ", ".join(f"{value:.3f}" for value in accuracies)
                accuracy_text = _mean_std(accuracies)
            print(
                f"| {model} | {summaries[0]['param_count']} | {_mean_std(losses)} | "
                f"{accuracy_text} | {per_seed} | {statistics.mean(seconds):.0f} |"
            )
            for summary in summaries:
                for name, value in summary["baselines"].items():
                    baselines.setdefault(name, []).append(value)
        means = [f"{name} {statistics.mean(values):.4g}" for name, values in baselines.items()]
        print(f"\nBaselines on the held-out sets, mean over the runs: {', '.join(means)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs")
    parser.add_argument(
        "--group", action="append", choices=sorted(GROUPS), help="group to run, repeatable [all]"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at once [2]")
    parser.add_argument("--table", action="store_true", help="print tables, train nothing")
    parser.add_argument("--commands", action="store_true", help="print commands, train nothing")
    args = parser.parse_args(argv)
    groups = args.group or list(GROUPS)

    if args.commands:
        for run in planned_runs(args.out, groups):
            print(shell_line(train_command(args.out, *run)))
        return 0
    if args.table:
        print_tables(args.out, groups)
        return 0
    return 1 if train_all(args.out, groups, args.jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
