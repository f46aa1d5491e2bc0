"""Command line: train one model on one task and write the run to a folder.

Example::

    python -m models.train --task tracking-grid --model rmc --steps 10000 --seed 0 --out runs/rmc-0

The folder receives ``config.json`` at the start, ``metrics.jsonl`` (one metric event per
line, appended and flushed as training goes), and at the end ``checkpoint.npz`` and
``summary.json``. A run that diverges keeps what it wrote, adds a ``summary.json`` whose
status is "diverged", and exits with status 1. The first Ctrl-C stops training after
the current step and still writes the checkpoint; the exit status is then 130.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from models.checkpoint import save_checkpoint
from models.optim import LR_SCHEDULES
from models.tasks import TASK_SPECS
from models.train_config import DTYPES, MODEL_KINDS, TrainConfig
from models.training import TrainingDiverged, build_model, train

logger = logging.getLogger("models.train")

OUTPUT_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "summary.json")

# TrainConfig fields that have a flag of the same name; a flag left out keeps the default.
FLAG_FIELDS = (
    "task",
    "model",
    "steps",
    "seed",
    "batch_size",
    "learning_rate",
    "lr_schedule",
    "warmup_steps",
    "clip_norm",
    "eval_interval",
    "eval_size",
    "log_interval",
    "dtype",
    "time_limit_minutes",
)


def parse_option(text: str) -> tuple[str, object]:
    """Split ``key=value``; the value is read as JSON when it parses, else kept as a string.

    So ``hidden_size=64`` gives 64, ``gate_style=null`` gives None,
    ``readout_hidden=[128,128]`` gives a list and ``gate_style=unit`` gives "unit".
    """
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def parse_curriculum(text: str) -> list:
    """Read a curriculum given as JSON text, or as ``@path`` to a JSON file."""
    source = "--curriculum"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as error:
            raise argparse.ArgumentTypeError(f"cannot read {source}: {error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{source} is not valid JSON: {error}") from error


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m models.train",
        description="Train an RMC or LSTM on a task and write config, metrics, checkpoint "
        "and summary to a folder.",
    )
    parser.add_argument("--task", choices=sorted(TASK_SPECS), required=True, help="task name")
    parser.add_argument("--model", choices=MODEL_KINDS, required=True, help="model kind")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps")
    parser.add_argument("--seed", type=int, required=True, help="seed of weights and data")
    parser.add_argument("--out", type=Path, required=True, help="folder for the run's files")

    parser.add_argument(
        "--batch-size", type=int, help=f"sequences per step [{defaults.batch_size}]"
    )
    parser.add_argument(
        "--learning-rate", type=float, help=f"Adam peak learning rate [{defaults.learning_rate}]"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help=f"learning-rate schedule [{defaults.lr_schedule}]",
    )
    parser.add_argument("--warmup-steps", type=int, help="steps of linear warm-up [0]")
    parser.add_argument("--clip-norm", type=float, help="global gradient norm clip [none]")
    parser.add_argument(
        "--time-limit-minutes",
        type=float,
        help="wall-clock limit of the training loop; the run then ends as completed [none]",
    )
    parser.add_argument("--dtype", choices=DTYPES, help=f"float type [{defaults.dtype}]")

    parser.add_argument(
        "--eval-interval", type=int, help=f"steps between evaluations [{defaults.eval_interval}]"
    )
    parser.add_argument("--eval-size", type=int, help=f"held-out sequences [{defaults.eval_size}]")
    parser.add_argument(
        "--log-interval", type=int, help=f"steps between metric lines [{defaults.log_interval}]"
    )

    parser.add_argument(
        "--task-option",
        type=parse_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, repeatable, e.g. num_vectors=4",
    )
    parser.add_argument(
        "--model-option",
        type=parse_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model hyperparameter, repeatable, e.g. hidden_size=128 or readout_hidden=[128,128]",
    )

    parser.add_argument(
        "--curriculum",
        type=parse_curriculum,
        metavar="JSON|@FILE",
        help="curriculum stages as a JSON list, or @path to a JSON file holding one; each "
        'stage is {"task_options": {...}, "threshold": held-out accuracy, "max_steps": n} '
        "[none]",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run files already in --out"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="lowest level of log lines printed [INFO]",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    data = {name: getattr(args, name) for name in FLAG_FIELDS if getattr(args, name) is not None}
    data["task_options"] = dict(args.task_option)
    data["model_options"] = dict(args.model_option)
    if args.curriculum is not None:
        data["curriculum"] = args.curriculum
    return TrainConfig.from_dict(data)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def _prepare_output(out: Path, overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already contains {', '.join(existing)}: "
            "choose another --out or pass --overwrite"
        )
    for name in existing:
        (out / name).unlink()


def _install_stop_handler(stop_requested: threading.Event):
    """Make the first Ctrl-C request a stop; a second one raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def request_stop(signum, frame):
        if stop_requested.is_set():
            raise KeyboardInterrupt
        stop_requested.set()
        logger.warning("stopping after the current step; press Ctrl-C again to abort")

    return signal.signal(signal.SIGINT, request_stop)


def _last_evaluation(metrics: list[dict]) -> dict:
    evaluated = [event for event in metrics if event["test_loss"] is not None]
    return evaluated[-1] if evaluated else {"test_loss": None, "test_accuracy": None}


def run(config: TrainConfig, out: Path, should_stop: Callable[[], bool] | None = None) -> int:
    """Train with ``config``, writing the run files to ``out``; return the exit status.

    Training stops early, as after Ctrl-C, once ``should_stop()`` returns True.
    """
    write_json(out / "config.json", config.to_dict())
    stop_requested = threading.Event()
    previous_handler = _install_stop_handler(stop_requested)

    def stop_now() -> bool:
        return stop_requested.is_set() or (should_stop is not None and should_stop())

    with open(out / "metrics.jsonl", "a") as metrics_file:

        def on_event(event: dict) -> None:
            if event["type"] == "metric":
                row = {key: value for key, value in event.items() if key != "type"}
                metrics_file.write(json.dumps(row) + "\n")
                metrics_file.flush()

        try:
            result = train(config, on_event=on_event, should_stop=stop_now)
        except TrainingDiverged as error:
            last = _last_evaluation(error.metrics)
            summary = {
                "status": "diverged",
                "error": str(error),
                "steps": error.step - 1,
                "final_test_loss": last["test_loss"],
                "final_test_accuracy": last["test_accuracy"],
            }
            write_json(out / "summary.json", summary)
            logger.error("training stopped: %s; the files written so far are in %s", error, out)
            return 1
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

    save_checkpoint(result.model, out / "checkpoint.npz")
    logger.info("wrote checkpoint %s", out / "checkpoint.npz")
    write_json(out / "summary.json", result.summary)
    logger.info("wrote %s", out / "summary.json")
    return 0 if result.status == "completed" else 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
        # Building the model once checks the model options before any file is written.
        build_model(config, config.build_task())
    except ValueError as error:
        parser.error(str(error))
    try:
        _prepare_output(args.out, args.overwrite)
    except (FileExistsError, OSError) as error:
        parser.error(str(error))
    return run(config, args.out)


if __name__ == "__main__":
    sys.exit(main())
