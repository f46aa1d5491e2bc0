"""Ablate the RMC's memory slots and attention heads on the continuous tracking task.

Trains one RMC per (mem_slots, num_heads, seed) with ``models.training.train`` in this process, one
after another, and writes each run's summary to ``OUT/slots{N}-heads{H}-seed{S}.json``.
Runs whose file exists are skipped, so an interrupted ablation resumes. ``--table`` prints
the final test MSE per cell as mean and sample standard deviation over the seeds, beside
the task's baselines.

    OPENBLAS_NUM_THREADS=1 python bench/ablation_tracking.py --out /tmp/ablation
    python bench/ablation_tracking.py --out /tmp/ablation --table

The same grid can run on the server as a sweep: ``POST /api/sweeps`` with the base run
below and ``{"grid": {"model_options.mem_slots": [...], "model_options.num_heads": [...]},
"seeds": [...]}``.
"""

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file puts bench/ first on sys.path; the repository root must come
# first so that ``models`` is this project's package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402
from models import training  # noqa: E402

BASE_RUN = {
    "task": "tracking",
    "task_options": {},
    "model": "rmc",
    "model_options": {"head_size": 16, "attention_mlp_layers": 2, "gate_style": "unit"},
    "batch_size": 32,
    "learning_rate": 5e-3,
    "lr_schedule": "cosine",
    "eval_interval": 1000,
    "eval_size": 1024,
    "log_interval": 500,
}


def run_path(out: Path, slots: int, heads: int, seed: int) -> Path:
    return out / f"slots{slots}-heads{heads}-seed{seed}.json"


def train_cell(out: Path, slots: int, heads: int, seed: int, steps: int) -> None:
    """Train one RMC and write its summary, unless the summary file already exists."""
    path = run_path(out, slots, heads, seed)
    if path.exists():
        return
    config = dict(BASE_RUN, steps=steps, seed=seed)
    config["model_options"] = dict(BASE_RUN["model_options"], mem_slots=slots, num_heads=heads)
    started = time.perf_counter()
    result = training.train(models.TrainConfig.from_dict(config))
    record = {
        "mem_slots": slots,
        "num_heads": heads,
        "seed": seed,
        "config": config,
        "summary": result.summary,
        "wall_seconds": time.perf_counter() - started,
    }
    path.write_text(json.dumps(record, indent=2, default=float))
    logging.info(
        "slots %d, heads %d, seed %d: test MSE %.5f in %.0f s",
        slots,
        heads,
        seed,
        result.summary["final_test_loss"],
        record["wall_seconds"],
    )


def print_table(out: Path, slots_values: list[int], heads_values: list[int], seeds) -> None:
    """Print a Markdown table: one row per slot count, one column per head count."""
    header = ["mem_slots \\ num_heads", *(str(heads) for heads in heads_values), "parameters"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    baselines, seconds = None, []
    for slots in slots_values:
        cells, params = [], []
        for heads in heads_values:
            records = [
                json.loads(run_path(out, slots, heads, seed).read_text())
                for seed in seeds
                if run_path(out, slots, heads, seed).exists()
            ]
            losses = [record["summary"]["final_test_loss"] for record in records]
            seconds += [record["wall_seconds"] for record in records]
            if records:
                baselines = records[0]["summary"]["baselines"]
                params.append(str(records[0]["summary"]["param_count"]))
            if len(losses) >= 2:
                cells.append(f"{statistics.mean(losses):.4f} ± {statistics.stdev(losses):.4f}")
            elif losses:
                cells.append(f"{losses[0]:.4f} (1 seed)")
            else:
                cells.append("–")
        print(f"| {slots} | " + " | ".join(cells) + f" | {' / '.join(params)} |")
    if baselines:
        print()
        print("Baselines (test MSE): " + ", ".join(f"{k} {v:.4f}" for k, v in baselines.items()))
    if seconds:
        print(f"Runs: {len(seconds)}, {sum(seconds) / 60:.1f} min of training in total.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for the run summaries.")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4], help="mem_slots values.")
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 2], help="num_heads values.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds per cell.")
    parser.add_argument("--steps", type=int, default=3000, help="Optimizer steps per run.")
    parser.add_argument("--table", action="store_true", help="Print the table and stop.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("models").setLevel(logging.WARNING)

    if not args.table:
        args.out.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for slots in args.slots:
                for heads in args.heads:
                    train_cell(args.out, slots, heads, seed, args.steps)
    print_table(args.out, args.slots, args.heads, args.seeds)


if __name__ == "__main__":
    main()
