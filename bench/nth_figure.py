"""Plot held-out accuracy of the N-th farthest runs against steps and against wall time.

Usage::

    python bench/nth_figure.py runs/nth docs/nth_farthest.png

reads every run folder that ``bench/nth_farthest.py`` wrote under the first argument
(those with a ``summary.json``) and writes one PNG with two panels: accuracy against
optimizer steps, and accuracy against minutes of training. Each run is one line: the hue
is the model (RMC blue, LSTM orange), the shade the seed, and a dashed line a run with the
curriculum. A solid horizontal line marks 90%; dotted ones mark chance (1/K) and the
"n = K - 1 means m itself" plateau.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: draw into files only
import matplotlib.pyplot as plt  # noqa: E402

# Shades of one hue per model, dark to light, one per seed (cycling past three).
MODEL_COLOURS = {
    "rmc": ["#1f4e99", "#3b7dd8", "#86b4f0"],
    "lstm": ["#a04a00", "#e07b00", "#f5b35c"],
}
TARGET_ACCURACY = 0.9


def read_run(folder: Path) -> dict | None:
    """Return a run's label, model, curriculum flag and evaluations, or None if unfinished."""
    if not (folder / "summary.json").is_file():
        return None
    config = json.loads((folder / "config.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    evaluated = [row for row in rows if row.get("test_accuracy") is not None]
    return {
        "label": folder.name,
        "model": config["model"],
        "seed": config.get("seed", 0),
        "curriculum": config.get("curriculum") is not None,
        "num_vectors": config["task_options"]["num_vectors"],
        "steps": [row["step"] for row in evaluated],
        "minutes": [row["elapsed"] / 60 for row in evaluated],
        "accuracy": [row["test_accuracy"] for row in evaluated],
    }


def draw(runs: list[dict], path: Path) -> None:
    """Write the two-panel figure of ``runs`` to ``path``."""
    figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for run in runs:
        style = {
            "color": MODEL_COLOURS[run["model"]][run["seed"] % 3],
            "linestyle": "--" if run["curriculum"] else "-",
            "linewidth": 1.2,
            "label": run["label"],
        }
        by_step.plot(run["steps"], run["accuracy"], **style)
        by_time.plot(run["minutes"], run["accuracy"], **style)

    num_vectors = {run["num_vectors"] for run in runs}
    for axes in (by_step, by_time):
        axes.axhline(TARGET_ACCURACY, color="black", linewidth=0.6)
        axes.text(0.01, TARGET_ACCURACY + 0.01, "90%", transform=axes.get_yaxis_transform())
        for k in num_vectors:
            plateau = 1 / k + (1 - 1 / k) / (k - 1)
            axes.axhline(1 / k, color="gray", linestyle=":", linewidth=0.8)
            axes.axhline(plateau, color="gray", linestyle=":", linewidth=0.8)
        axes.grid(alpha=0.3)
    by_step.set_xlabel("optimizer steps")
    by_time.set_xlabel("minutes of training")
    by_step.set_ylabel("held-out accuracy")
    by_step.set_ylim(0, 1)
    by_time.legend(fontsize=7, loc="lower right", ncol=2)
    figure.suptitle("N-th farthest: RMC (blue) and LSTM (orange); dashed with curriculum")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder that bench/nth_farthest.py wrote")
    parser.add_argument("figure", type=Path, help="PNG file to write")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        parser.error(f"runs folder {args.runs} does not exist")
    runs = [run for folder in sorted(args.runs.iterdir()) if folder.is_dir()
            if (run := read_run(folder)) is not None]  # fmt: skip
    if not runs:
        parser.error(f"no finished runs (folders with a summary.json) in {args.runs}")
    draw(runs, args.figure)
    print(f"wrote {args.figure}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
