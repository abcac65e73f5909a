"""The worker's Prometheus series: latency by status, stage times, batch size, errors, in flight, model identity.

TorchServe 0.12's handler metrics API can declare histograms, but its front end builds them with the Java
client's default buckets and no way to choose others, and labels every series ``model_version="default"``.
So the worker writes its own series with ``prometheus_client``; ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
for every worker and exports the directory on its own port (:mod:`resnet_serving.torchserve.exporter`).
Without that variable (a unit test, a plain import) the series live in this process's default registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

#: One CPU image is tens of ms, a full CPU batch under load a few s: ms resolution at the bottom, up to 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
#: Stages of one batch: decoding one small image is sub-millisecond, a CPU forward of a full batch is seconds.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Requests per dynamic batch (TorchServe's batchSize is at most a few dozen here).
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
STAGES = ("decode", "preprocess", "forward", "postprocess")

LABELS = ("model", "version")

REQUEST_SECONDS = Histogram(
    "resnet_serving_request_seconds",
    "Handler time of each request (its whole batch, parse to response body), by HTTP status code.",
    [*LABELS, "code"],
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "resnet_serving_stage_seconds",
    "Time of one stage for one batch: decode, preprocess, forward, postprocess.",
    [*LABELS, "stage"],
    buckets=STAGE_BUCKETS,
)
BATCH_SIZE = Histogram(
    "resnet_serving_batch_size",
    "Requests in each batch TorchServe handed to the handler.",
    LABELS,
    buckets=BATCH_BUCKETS,
)
ERRORS = Counter(
    "resnet_serving_errors",
    "Requests answered with an error, by the error's code (bad_request, payload_too_large, ...).",
    [*LABELS, "code"],
)
IN_FLIGHT = Gauge(
    "resnet_serving_in_flight_requests",
    "Requests inside a worker's handler now (queued ones: resnet_serving_queued_requests).",
    LABELS,
    multiprocess_mode="livesum",
)
WORKER_STARTS = Counter(
    "resnet_serving_worker_starts",
    "Worker processes that loaded a version: more than the pod's workers means TorchServe restarted some.",
    LABELS,
)
#: Written by serve's guard, in serve's own process: registered nowhere here, exported by serve's exporter.
GUARD_REQUEST_SECONDS = Histogram(
    "resnet_serving_guard_request_seconds",
    "Time of each request at the pod as the client sees it (admission wait and TorchServe's answer), by the "
    "HTTP status code the guard answered.",
    ["model", "code"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
MODEL_INFO = Gauge(
    "resnet_serving_model_info",
    "1 for each version a live worker serves; sha256 is that of the archive's state_dict (model.pt).",
    [*LABELS, "weights", "sha256", "precision"],
    multiprocess_mode="livemax",
)


#: The model_info labels this process has set (at most one entry).
_MODEL_INFO_SET: list[tuple[str, ...]] = []


class BatchMetrics:
    """The series of one loaded version: every observation carries its ``model`` and ``version``."""

    def __init__(self, meta: Mapping[str, Any], *, sha256: str, precision: str) -> None:
        self.labels = (str(meta.get("model", "")), str(meta.get("version", "")))
        info = (*self.labels, str(meta.get("weights", "")), sha256, precision)
        # One worker serves one model: a reload in the same process replaces its identity instead of adding one.
        for previous in _MODEL_INFO_SET:
            MODEL_INFO.remove(*previous)
        _MODEL_INFO_SET.clear()
        MODEL_INFO.labels(*info).set(1)
        _MODEL_INFO_SET.append(info)
        WORKER_STARTS.labels(*self.labels).inc()
        self.in_flight = IN_FLIGHT.labels(*self.labels)
        self.in_flight.set(0)
        self._stage = {s: STAGE_SECONDS.labels(*self.labels, s) for s in STAGES}
        self._batch = BATCH_SIZE.labels(*self.labels)

    def stage(self, name: str, seconds: float) -> None:
        self._stage[name].observe(seconds)

    def batch(self, size: int) -> None:
        self._batch.observe(size)

    def request(self, status: int, seconds: float, error_code: str | None) -> None:
        REQUEST_SECONDS.labels(*self.labels, str(status)).observe(seconds)
        if error_code is not None:
            ERRORS.labels(*self.labels, error_code).inc()
