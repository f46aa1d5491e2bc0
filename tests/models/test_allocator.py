"""The allocator setting that keeps freed memory in the training process."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Trains three steps of an RMC whose temporaries are hundreds of kilobytes, then
# prints the minor page faults of three more steps.
PROBE = """
import resource, sys
import numpy as np
from models.allocator import keep_freed_memory
from models.factory import make_model
from models.optim import Adam

kept = keep_freed_memory() if sys.argv[1] == "keep" else False
model = make_model("rmc", input_size=8, output_size=4, mem_slots=4, head_size=64, num_heads=2)
optimizer = Adam(model.params)
rng = np.random.default_rng(0)
x = rng.standard_normal((32, 6, 8)).astype(np.float32)
y = rng.integers(0, 4, size=32)

def step():
    _, grads = model.loss_and_grads(x, y, "cross_entropy")
    optimizer.step(model.params, grads, 1e-3)

for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_probe(mode):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    kept, faults = result.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_removes_page_faults():
    kept, faults = run_probe("keep")
    default_kept, default_faults = run_probe("default")
    assert kept
    assert faults < 50
    assert not default_kept
    assert default_faults > 200  # the probe does see the faults of glibc's default thresholds
