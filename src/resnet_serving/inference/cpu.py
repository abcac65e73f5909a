"""How many CPUs this process may really use: cgroup quota (v2 or v1), affinity, or the host count.

Inside a pod with a CPU limit, ``os.cpu_count()`` reports the node's cores, not the limit; oversubscribing
threads there is what collapsed a naive TorchServe (docs/architecture.md). Also how long the workers' OpenMP
threads spin before they sleep (:func:`openmp_env`) and the worker's one memory call, :func:`release_free_heap`.
Torch-free.
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


#: libgomp's spins before a waiting OpenMP thread sleeps, in serve's workers and the bench's raw processes. libgomp's
#: own default keeps the forward pass's idle thread spinning for milliseconds after the pass, on a CPU that the next
#: batch's decode threads need; this count still spans the gaps between one pass's parallel regions.
GOMP_SPINCOUNT = "10000"
#: The variables by which a user chooses the OpenMP wait themselves; either one leaves the spin count to them.
OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def openmp_wait(env: Mapping[str, str]) -> dict[str, str]:
    """The OpenMP wait variables a worker started from ``env`` runs with: the caller's ``OMP_WAIT_POLICY`` and
    ``GOMP_SPINCOUNT`` where either is set, else :data:`GOMP_SPINCOUNT` (docs: explanation/server-configuration)."""
    chosen = {name: env[name] for name in OPENMP_WAIT_VARIABLES if name in env}
    return chosen or {"GOMP_SPINCOUNT": GOMP_SPINCOUNT}


def openmp_env(env: Mapping[str, str]) -> dict[str, str]:
    """What to add to a worker's environment ``env`` so that it runs with :func:`openmp_wait`: nothing where the
    caller chose."""
    return {} if any(name in env for name in OPENMP_WAIT_VARIABLES) else openmp_wait(env)


def release_free_heap() -> bool:
    """Hand the memory that model loading freed back to the kernel (glibc's ``malloc_trim``); call once after load.

    Loading, freezing and warming up ResNet50 frees memory in the middle of the heap, where glibc keeps it for
    the life of the process (docs: explanation/server-configuration). Returns False where the C library has no
    ``malloc_trim`` (not glibc).
    """
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim(0)
    return True
