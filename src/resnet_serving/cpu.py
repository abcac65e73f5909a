"""How many CPUs this process may really use: cgroup quota (v2 or v1), affinity, or the host count.

Inside a pod with a CPU limit, ``os.cpu_count()`` reports the node's cores, not the limit; oversubscribing
threads there is what collapsed TorchServe to 1.5 img/s (DESIGN.md §5). Torch-free.
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Mapping
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota, or None when unlimited / unknown."""
    v2 = root / "cpu.max"
    try:
        quota, period = v2.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs usable: min(affinity, ceil-ish of the cgroup quota), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        # A 1.5-CPU limit gives 1 thread, not 2: rounding up would oversubscribe the quota.
        n = min(n, max(1, math.floor(quota + 1e-9)))
    return max(1, n)


def thread_budget(workers: int, cpus: int | None = None) -> int:
    """Torch intra-op threads per worker so that workers × threads ≤ CPUs (at least 1)."""
    if workers < 1:
        raise ValueError("workers must be ≥ 1")
    cpus = available_cpus() if cpus is None else cpus
    return max(1, cpus // workers)


# glibc's mallopt(3) parameters, from <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations at least this big get their own mmap. 32 MiB is glibc's ceiling on 64-bit; the largest activation
#: of a ResNet50 forward pass at batch 8 (8 × 64 × 112 × 112 float32) is 25.7 MB, so every activation comes from
#: the heap and is reused.
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap is returned to the kernel only beyond this.
TRIM_THRESHOLD = 1024 * 2**20
_ENV_OVERRIDES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_heap_warm(env: Mapping[str, str] | None = None) -> bool:
    """Make glibc keep the forward pass's activation memory between batches instead of returning it.

    A forward pass holds several activations of a few MB at once and frees them all at the end. With glibc's
    adaptive defaults the freed top of the heap is trimmed back to the kernel after each batch (or the blocks are
    mmapped), and the kernel zero-fills those pages again on the next: a TorchServe worker (batch 2, concurrency
    16) took ~2,800 minor page faults per image. With fixed thresholds it takes ~0 and spends ~2% less CPU per
    image (DESIGN.md §7). The heap then stays at its serving peak, which the batch size bounds.

    Call it once the model is loaded: it first returns to the kernel what loading left free (``malloc_trim``),
    ~160 MB per worker here, which fixed thresholds would otherwise keep for the life of the process. Returns
    False, changing nothing, where this is not glibc or where the user set the allocator's own variables
    (MALLOC_*_, GLIBC_TUNABLES).
    """
    env = os.environ if env is None else env
    if any(env.get(name) for name in _ENV_OVERRIDES):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim(0)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
