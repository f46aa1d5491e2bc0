"""The allocator setting that keeps freed memory in the training process."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Allocates and frees eight arrays of 1 MiB, as a training step allocates and
# frees its temporaries, and prints the minor page faults of ten such rounds.
# With glibc's default thresholds the freed megabytes go back to the kernel, so
# every round maps them again.
PROBE = """
import resource, sys
import numpy as np
from models.allocator import keep_freed_memory

memory_kept = keep_freed_memory() if sys.argv[1] == "keep" else False

def allocate_and_free():
    arrays = [np.ones(2**18, dtype=np.float32) for _ in range(8)]
    del arrays

allocate_and_free()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    allocate_and_free()
print(memory_kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
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
    memory_kept, faults = result.stdout.split()
    return memory_kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_removes_page_faults():
    memory_kept, faults = run_probe("keep")
    default_memory_kept, default_faults = run_probe("default")
    assert memory_kept
    assert faults < 100
    assert not default_memory_kept
    assert default_faults > 2000  # ten rounds of 8 MiB are 20,480 pages
