"""``bench/instructions.py``: its arguments, its count per step and its error without valgrind."""

import importlib
import subprocess
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def instructions(monkeypatch):
    """Import the script from bench/, the way the scripts there import each other."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    return importlib.import_module("instructions")


def test_tree_without_models_rejected(instructions, tmp_path, capsys):
    with pytest.raises(SystemExit):
        instructions.parse_args([str(tmp_path)])
    assert "missing in" in capsys.readouterr().err


def test_zero_steps_rejected(instructions, capsys):
    with pytest.raises(SystemExit):
        instructions.parse_args(["--steps", "0", str(BENCH_DIR.parent)])
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err


def test_missing_valgrind_named(instructions, monkeypatch):
    monkeypatch.setattr(instructions.shutil, "which", lambda name: None)
    args = instructions.parse_args([str(BENCH_DIR.parent)])
    with pytest.raises(RuntimeError, match="valgrind not found"):
        instructions.count_instructions(BENCH_DIR.parent, args, 1)


def test_step_count_from_two_runs(instructions, monkeypatch, capsys):
    """One step's count is (run with warm-up and steps - run with warm-up only) / steps."""
    commands = []

    def fake_run(command, **options):
        commands.append(command)
        code = command[-1]
        count = 5_000_000 if f"range({instructions.WARMUP_STEPS})" in code else 11_000_000
        return subprocess.CompletedProcess(command, 0, "", f"==1== Collected : {count}\n")

    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")
    monkeypatch.setattr(instructions.subprocess, "run", fake_run)
    tree = str(BENCH_DIR.parent)
    instructions.main(["--steps", "3", "--predict", tree])

    assert len(commands) == 2
    assert commands[0][:2] == ["valgrind", "--tool=callgrind"]
    assert f"range({instructions.WARMUP_STEPS + 3})" in commands[0][-1]
    assert "'--predict'" in commands[0][-1]
    assert "| 2.000 M | 1.0000 |" in capsys.readouterr().out  # (11 M - 5 M) / 3 steps
