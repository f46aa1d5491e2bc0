"""``bench/instructions.py``: its arguments and its error without valgrind."""

import importlib
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def instructions(monkeypatch):
    """Import the script as bench/trees.py's siblings import each other: from bench/."""
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
