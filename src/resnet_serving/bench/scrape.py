"""The server's side of a bench level, from two scrapes of ``serve``'s model-metrics port.

The workers' histograms (:mod:`resnet_serving.inference.metrics`) are cumulative, so the difference of a scrape
taken when a level's measuring window opens and one taken when it closes is that window's share: time per
batch in each stage, the mean batch size, and the handler's p50/p99 estimated from the latency buckets the
way Prometheus's ``histogram_quantile`` does (linear within a bucket). Torch-free.
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from resnet_serving.inference.metrics import STAGES

STAGE = "resnet_serving_stage_seconds"
REQUEST = "resnet_serving_request_seconds"
BATCH = "resnet_serving_batch_size"


@dataclass
class Snapshot:
    """The summed (all versions, all workers) cumulative values this module reads from one scrape."""

    stage_sum: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    stage_count: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    batch_sum: float = 0.0
    batch_count: float = 0.0
    #: Successful requests only (code 200): upper bound → cumulative count.
    request_buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    request_sum: float = 0.0
    request_count: float = 0.0


def parse(text: str) -> Snapshot:
    snap = Snapshot()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{STAGE}_sum":
                snap.stage_sum[s.labels["stage"]] += s.value
            elif s.name == f"{STAGE}_count":
                snap.stage_count[s.labels["stage"]] += s.value
            elif s.name == f"{BATCH}_sum":
                snap.batch_sum += s.value
            elif s.name == f"{BATCH}_count":
                snap.batch_count += s.value
            elif s.name.startswith(REQUEST) and s.labels.get("code") == "200":
                if s.name == f"{REQUEST}_bucket":
                    snap.request_buckets[float(s.labels["le"])] += s.value
                elif s.name == f"{REQUEST}_sum":
                    snap.request_sum += s.value
                elif s.name == f"{REQUEST}_count":
                    snap.request_count += s.value
    return snap


def scrape(url: str, timeout: float = 10.0) -> Snapshot:
    """One scrape of ``url`` (``http://host:port/metrics``), loopback only in the bench."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return parse(response.read().decode("utf-8"))


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's estimate of quantile ``q`` from cumulative ``{upper bound: count}`` (``inf`` included).

    Linear interpolation inside the bucket that holds the rank; a rank in the ``+Inf`` bucket gives the largest
    finite bound, as Prometheus does. NaN without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return float("nan")
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def window(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """What the server did between two scrapes: per batch stage times (ms), mean batch size, handler p50/p99."""
    batches = after.batch_count - before.batch_count
    requests = after.request_count - before.request_count
    stage_ms: dict[str, float] = {}
    for stage in STAGES:
        n = after.stage_count.get(stage, 0.0) - before.stage_count.get(stage, 0.0)
        total = after.stage_sum.get(stage, 0.0) - before.stage_sum.get(stage, 0.0)
        stage_ms[stage] = 1000 * total / n if n > 0 else float("nan")
    buckets = {b: after.request_buckets[b] - before.request_buckets.get(b, 0.0) for b in after.request_buckets}
    return {
        "batches": int(batches),
        "requests_ok": int(requests),
        "mean_batch_size": (after.batch_sum - before.batch_sum) / batches if batches > 0 else float("nan"),
        "stage_ms_per_batch": stage_ms,
        "handler_mean_ms": 1000 * (after.request_sum - before.request_sum) / requests if requests > 0 else float("nan"),
        "handler_p50_ms": 1000 * histogram_quantile(0.50, buckets),
        "handler_p99_ms": 1000 * histogram_quantile(0.99, buckets),
    }
