"""keep_heap_warm: fixed glibc malloc thresholds, so a forward pass's activations are reused, not re-faulted.

Each check runs in a fresh interpreter: mallopt changes the allocator for the whole process."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys

import pytest

from resnet_serving import cpu

PROBE = """
import json, os, resource, sys
from resnet_serving.cpu import keep_heap_warm
mode, scenario = sys.argv[1:3]
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def forward_pass():  # like a forward pass: several 6 MiB activations alive at once, all freed at the end
    live = [bytearray(6 * 2**20) for _ in range(5)]
    del live
if scenario == "loaded":  # what loading a model leaves: 100 MiB freed in mid-heap, under a block still in use
    garbage = [bytearray(64 * 2**10) for _ in range(1600)]
    keep = bytearray(64 * 2**10)
    del garbage
before = rss_mb()
applied = keep_heap_warm() if mode == "warm" else None
released = before - rss_mb()
for _ in range(3):  # settle: the first rounds fault in whatever heap they need
    forward_pass()
before = faults()
for _ in range(20):
    forward_pass()
print(json.dumps({"applied": applied, "faults": faults() - before, "released_mb": released}))
"""

glibc = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and ctypes.util.find_library("c")), reason="glibc's mallopt only"
)


def _probe(mode: str, scenario: str = "fresh") -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, scenario], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@glibc
def test_warm_heap_reuses_activation_memory_instead_of_faulting_it_in_again() -> None:
    default, warm = _probe("default"), _probe("warm")
    assert warm["applied"] is True
    # glibc's default trims the freed 30 MiB off the heap after each round and the kernel zero-fills it again on
    # the next: 20 rounds × 30 MiB = 150k pages. Kept warm, the heap is reused.
    assert default["faults"] > 20 * 30 * 2**20 // 4096 // 2
    assert warm["faults"] < 1000


@glibc
def test_warm_heap_first_returns_what_loading_freed() -> None:
    """Fixed thresholds would keep loading's garbage for the life of the worker; it is handed back first."""
    default, warm = _probe("default", "loaded"), _probe("warm", "loaded")
    assert warm["released_mb"] > 50
    assert default["released_mb"] < 5


def test_user_allocator_settings_win() -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        assert cpu.keep_heap_warm({name: "1"}) is False
