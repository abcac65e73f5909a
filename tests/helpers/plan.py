"""A small, hand-checked bench report for the `plan` tests (capacity, model and CLI), whose figures they quote."""

from __future__ import annotations

from typing import Any


def tiny_bench() -> dict[str, Any]:
    """2 vCPUs, best clean level 40 req/s at c=4 (c=8 is faster but had a failure, so it must not count)."""
    return {
        "environment": {"device": "cpu", "cpus_available": 2, "payload": {"file": "x.jpg", "bytes": 60_000}},
        "serve_config": {"workers": 2, "torch_threads_per_worker": 1, "batch_size": 2, "max_batch_delay_ms": 2},
        "raw": {"img_s_by_batch": {"1": 40.0, "4": 48.0}, "graph": "torchscript-frozen"},
        "served": [
            {"concurrency": 1, "img_s": 20.0, "p50_ms": 48.0, "p95_ms": 52.0, "p99_ms": 60.0, "failed": 0},
            {"concurrency": 4, "img_s": 40.0, "p50_ms": 95.0, "p95_ms": 110.0, "p99_ms": 130.0, "failed": 0},
            {"concurrency": 8, "img_s": 44.0, "p50_ms": 180.0, "p95_ms": 200.0, "p99_ms": 230.0, "failed": 1},
        ],
    }
