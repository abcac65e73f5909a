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
import json, resource, sys
from resnet_serving.cpu import keep_heap_warm
applied = keep_heap_warm() if sys.argv[1] == "warm" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def forward_pass():  # like a forward pass: several 6 MiB activations alive at once, all freed at the end
    live = [bytearray(6 * 2**20) for _ in range(5)]
    del live
for _ in range(3):  # settle: the first rounds fault in whatever heap they need
    forward_pass()
before = faults()
for _ in range(20):
    forward_pass()
print(json.dumps({"applied": applied, "faults": faults() - before}))
"""

glibc = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and ctypes.util.find_library("c")), reason="glibc's mallopt only"
)


def _probe(mode: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


@glibc
def test_warm_heap_reuses_big_blocks_instead_of_faulting_them_in_again() -> None:
    default, warm = _probe("default"), _probe("warm")
    assert warm["applied"] is True
    # glibc's default trims the freed 30 MiB off the heap after each round and the kernel zero-fills it again on
    # the next: 20 rounds × 30 MiB = 150k pages. Kept warm, the heap is reused.
    assert default["faults"] > 20 * 30 * 2**20 // 4096 // 2
    assert warm["faults"] < 1000


def test_user_allocator_settings_win() -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        assert cpu.keep_heap_warm({name: "1"}) is False
