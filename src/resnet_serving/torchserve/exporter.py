"""Export the workers' series (:mod:`resnet_serving.inference.metrics`) and the queue depth on a port of our own.

TorchServe's workers are separate processes that come and go (a version switch, a crashed worker), so each
writes its series to files in one directory (``prometheus_client``'s multiprocess mode, through
``PROMETHEUS_MULTIPROC_DIR``) and ``serve``, which outlives them all, serves the sum. TorchServe keeps its own
metrics port; this one sits beside it (``serve --model-metrics-port``, 8083 by default).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from resnet_serving.errors import ManagementError
from resnet_serving.inference.metrics import GUARD_REQUEST_SECONDS
from resnet_serving.torchserve.management import ManagementClient

ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def fresh_dir(path: Path) -> Path:
    """An empty directory for the workers' files: series of an earlier run must not be summed into this one."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkersCollector:
    """The workers' series, summed; a dead worker's live gauges (in flight, model_info) are dropped first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._collector = MultiProcessCollector(None, path=str(path))

    def collect(self) -> Iterator[Metric]:
        for f in self.path.glob("gauge_live*.db"):
            m = _LIVE_FILE.match(f.name)
            if m and not _alive(int(m.group(1))):
                mark_process_dead(int(m.group(1)), str(self.path))
        yield from self._collector.collect()


class QueueCollector:
    """``resnet_serving_queued_requests``: requests TorchServe accepted that wait for a worker, per version."""

    def __init__(self, management_url: str, model: str) -> None:
        self.client = ManagementClient(management_url, timeout=2.0)
        self.model = model

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "resnet_serving_queued_requests",
            "Requests accepted by TorchServe and waiting in a version's job queue (not yet in a batch).",
            labels=["model", "version"],
        )
        try:
            described: list[dict[str, Any]] = self.client.describe(self.model, "all")
        except ManagementError:
            described = []  # TorchServe starting or stopping: no sample rather than a wrong one
        for desc in described:
            pending = int((desc.get("jobQueueStatus") or {}).get("pendingRequests", 0))
            family.add_metric([self.model, str(desc.get("modelVersion", ""))], pending)
        yield family


def start(path: Path, *, host: str, port: int, management_url: str, model: str) -> Any:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the HTTP server (``shutdown()`` stops it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkersCollector(path))
    registry.register(QueueCollector(management_url, model))
    registry.register(GUARD_REQUEST_SECONDS)  # the guard runs in this process, not in a worker
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
