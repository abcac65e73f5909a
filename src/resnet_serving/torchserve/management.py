"""Client for TorchServe's management API (loopback only). Used by `sync`, the tests and the bench."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from resnet_serving.errors import ManagementError


@dataclass(frozen=True)
class VersionSettings:
    """How a registered model version runs: what a replacement version is registered with."""

    workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int


class ManagementClient:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, *, timeout: float | None = None, **params: Any) -> Any:
        try:
            r = self.session.request(
                method, f"{self.url}{path}", params=params or None, timeout=timeout or self.timeout
            )
        except requests.ConnectionError as e:
            raise ManagementError(f"management API {self.url} unreachable: {e}", unreachable=True) from e
        except requests.RequestException as e:
            raise ManagementError(f"{method} {path}: no answer from {self.url}: {e}") from e
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = None
            # TorchServe's error body names an uncaught Java exception by "type" alone, with no "message"
            msg = (body.get("message") or body.get("type")) if isinstance(body, dict) else None
            msg = str(msg or r.text.strip())
            raise ManagementError(f"{method} {path} → HTTP {r.status_code}: {msg}", status=r.status_code)
        try:
            return r.json()
        except ValueError:
            return r.text

    def models(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/models").get("models", []))

    def describe(self, model: str, version: str | None = None) -> list[dict[str, Any]]:
        path = f"/models/{quote(model)}" + (f"/{quote(version)}" if version else "")
        out = self._call("GET", path)
        return out if isinstance(out, list) else [out]

    def versions(self, model: str) -> list[str]:
        return [str(d["modelVersion"]) for d in self.describe(model, "all")]

    def default_version(self, model: str) -> str:
        return str(self.describe(model)[0]["modelVersion"])

    def worker_pids(self, model: str, version: str | None = None) -> list[int]:
        pids: list[int] = []
        for desc in self.describe(model, version):
            pids.extend(int(w["pid"]) for w in desc.get("workers", []) if w.get("pid"))
        return sorted(pids)

    def ready_workers(self, model: str, version: str) -> int:
        desc = self.describe(model, version)[0]
        return sum(1 for w in desc.get("workers", []) if w.get("status") == "READY")

    def pending_requests(self, model: str, version: str) -> int:
        """Requests accepted for this version and still waiting in its job queue (not yet in a worker's batch)."""
        desc = self.describe(model, version)[0]
        return int((desc.get("jobQueueStatus") or {}).get("pendingRequests", 0))

    def settings(self, model: str, version: str | None = None) -> VersionSettings:
        """Workers and batching of a registered version (default: the default version)."""
        desc = self.describe(model, version)[0]
        return VersionSettings(
            workers=int(desc.get("minWorkers") or 1),
            batch_size=int(desc.get("batchSize") or 1),
            max_batch_delay_ms=int(desc.get("maxBatchDelay") or 0),
            response_timeout_s=int(desc.get("responseTimeout") or 120),
        )

    def register(
        self,
        mar_url: str,
        *,
        model: str,
        workers: int,
        batch_size: int,
        max_batch_delay_ms: int,
        response_timeout_s: int = 60,
        timeout: float = 600.0,
    ) -> Any:
        """Register an archive from the model store and start its workers (synchronously)."""
        return self._call(
            "POST",
            "/models",
            timeout=timeout,
            url=mar_url,
            model_name=model,
            initial_workers=workers,
            batch_size=batch_size,
            max_batch_delay=max_batch_delay_ms,
            response_timeout=response_timeout_s,
            synchronous="true",
        )

    def set_default(self, model: str, version: str) -> Any:
        return self._call("PUT", f"/models/{quote(model)}/{quote(version)}/set-default")

    def unregister(self, model: str, version: str, *, timeout: float = 120.0) -> Any:
        """Remove a version. TorchServe 0.12 does NOT drain it: queued requests are never answered and the batch
        in a worker fails (tests/integration/test_sync.py). :meth:`~resnet_serving.torchserve.versions.Versions.drain`
        first."""
        return self._call("DELETE", f"/models/{quote(model)}/{quote(version)}", timeout=timeout)
