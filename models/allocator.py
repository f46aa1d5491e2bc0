"""Keep the memory that NumPy frees inside the process, for training loops.

NumPy allocates every array, temporaries included, with the C library's
malloc. glibc's malloc serves a block above its mmap threshold (128 KiB at
start, raised when such a block is freed) with fresh pages from the kernel and
returns them when the block is freed. It also returns free memory at the top
of its heap once more than the trim threshold, twice the mmap threshold, is
free. A training step frees and allocates the same megabytes of temporaries
every step, and depending on the order of those allocations the kernel maps
and zeroes fresh pages for them every step. On the ``nth-farthest`` RMC of
bench/compare.py, the models of commit 09d4e92 took about 1,250 page faults
per training step with glibc's defaults, and a later version of the models
about 1,430 (``resource.getrusage`` over 20 steps after 5). Raising both
thresholds keeps those blocks in the heap, where the next step reuses them:
no page faults at all, whatever the order of allocations.

The setting is process-wide and lasts until the process ends, so it is made
by the training loop (``models.training.train``) and by the benchmarks, not on
import. The memory kept is at most the peak the process reached.
"""

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # the mallopt parameter numbers of glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # blocks above 32 MiB still come straight from the kernel
TRIM_THRESHOLD = 256 * 2**20


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds for this process; return True when both were set.

    Returns False, and changes nothing, outside Linux or where the C library
    has no ``mallopt`` or rejects the values.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return mmap_set and trim_set
