"""Count the instructions of the NumPy training step of several trees under callgrind.

    python bench/instructions.py --config tracking --model rmc /tmp/before .

Timings of a 3 ms step move by several percent from run to run on a shared
virtual machine, more than many single changes buy. An instruction count
moves by about 0.1 million instructions between processes, under 0.02% of
a ``tracking`` RMC step when counted over 20 steps. For each TREE (a
folder that contains ``models/``), this runs the step of bench/trees.py in
a fresh process under ``valgrind --tool=callgrind`` twice: once with
``--steps`` steps after a warm-up of three, and once with the warm-up
alone. The difference over the steps is the count of one step, without the
interpreter's start-up and imports.

The count is a proxy, not a time. Valgrind emulates a CPU without AVX-512,
so OpenBLAS picks other kernels than on the real machine, and an instruction
of a BLAS kernel or of ``tanh`` costs more than one of the interpreter. It
is most reliable for changes that remove per-call work: Python, NumPy's
dispatch and iterators, allocations. Valgrind must be installed
(Debian package ``valgrind``).
"""

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import trees

WARMUP_STEPS = 3
# The child process: build one tree's step as bench/trees.py does and run it.
CHILD = """
import os, sys
from pathlib import Path
os.environ["OPENBLAS_NUM_THREADS"] = "1"
sys.path.insert(0, {bench!r})
import numpy
import trees
args = trees.parse_args({argv!r})
step = trees.build_step(Path({tree!r}), args, numpy)
for _ in range({count}):
    step()
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    trees.add_tree_arguments(parser, "Count batch-1 predict instead.")
    parser.add_argument("--steps", type=int, default=20, help="Counted steps per tree.")
    args = parser.parse_args(argv)
    trees.check_trees(parser, args)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args


def count_instructions(tree, args, steps):
    """Return the instruction count of one process that runs ``steps`` steps of ``tree``."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind not found on PATH; install it, e.g. apt-get install valgrind")
    argv = ["--config", args.config, "--model", args.model, str(tree)]
    if args.predict:
        argv.append("--predict")
    code = CHILD.format(
        bench=str(Path(__file__).resolve().parent), argv=argv, tree=str(tree), count=steps
    )
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    result = subprocess.run(
        [*command, sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind failed on {tree}:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main(argv=None):
    args = parse_args(argv)
    counted = "batch-1 predict(x, trace=True)" if args.predict else "training step"
    print(f"{args.config}/{args.model}, {counted}, {args.steps} counted steps per tree")
    print("| tree | instructions per step | ratio to the first |")
    print("| --- | --- | --- |")
    first = None
    for tree in args.trees:
        total = count_instructions(tree, args, WARMUP_STEPS + args.steps)
        start = count_instructions(tree, args, WARMUP_STEPS)
        per_step = (total - start) / args.steps
        first = first or per_step
        print(f"| {tree} | {per_step / 1e6:.3f} M | {per_step / first:.4f} |")


if __name__ == "__main__":
    main()
