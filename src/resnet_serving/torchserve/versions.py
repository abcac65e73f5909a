"""Model versions on a running TorchServe: register, wait until answering, drain, unregister. Beside
:class:`~resnet_serving.torchserve.management.ManagementClient`, and the one place its 0.12 quirks are handled.

Quirks of TorchServe 0.12 handled here (each shown by ``tests/integration/test_sync.py``):

* **Unregister does not drain.** Requests still queued for a version that is unregistered are never answered,
  and the batch inside a worker fails. :meth:`Versions.drain` therefore waits until the version's job queue is
  empty, then sends one probe per worker and waits for the answers. The queue is FIFO, so once they are
  answered, everything accepted before the switch has been answered too. With several workers another worker
  may still be finishing a batch: it waits a further twice the slowest probe's latency.
* **Unregister races its own workers.** Unregistering a version with requests in flight can answer 500
  (``NullPointerException`` or ``ConcurrentModificationException``) and remove the version all the same.
  :meth:`Versions.unregister` treats that as done; only a version still registered is a failure.
* **Register answers before the archive's version is known.** An archive registers as whatever version is
  recorded inside it; :meth:`Versions.register` checks that the version that appeared is the one asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from resnet_serving.errors import ManagementError, Stopped, VersionFailed
from resnet_serving.torchserve.management import VersionSettings
from resnet_serving.torchserve.probe import ProbeResult, probe_model

log = logging.getLogger(__name__)


class ManagementLike(Protocol):
    """What :class:`Versions` needs of :class:`~resnet_serving.torchserve.management.ManagementClient`."""

    def versions(self, model: str) -> list[str]: ...
    def default_version(self, model: str) -> str: ...
    def settings(self, model: str, version: str | None = None) -> VersionSettings: ...
    def ready_workers(self, model: str, version: str) -> int: ...
    def pending_requests(self, model: str, version: str) -> int: ...
    def register(
        self,
        mar_url: str,
        *,
        model: str,
        workers: int,
        batch_size: int,
        max_batch_delay_ms: int,
        response_timeout_s: int = ...,
        timeout: float = ...,
    ) -> Any: ...
    def set_default(self, model: str, version: str) -> Any: ...
    def unregister(self, model: str, version: str, *, timeout: float = ...) -> Any: ...


Prober = Callable[..., ProbeResult]
"""``prober(url, *, model, version, timeout) -> ProbeResult``: one real prediction (default :func:`probe_model`)."""


def version_label(version: str | None) -> str:
    """``v3`` for a version, ``nothing`` when no version is served."""
    return f"v{version}" if version else "nothing"


class Versions:
    """One model's versions on one TorchServe. ``stop`` ends every wait early (:class:`Stopped`)."""

    def __init__(
        self,
        management: ManagementLike,
        *,
        model: str,
        inference_url: str,
        prober: Prober = probe_model,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.management = management
        self.model = model
        self.inference_url = inference_url.rstrip("/")
        self.prober = prober
        self.clock = clock
        self.stop = threading.Event()

    def served(self) -> tuple[str | None, list[str]]:
        """(default version, all registered versions); (None, []) when the model is not registered."""
        try:
            registered = self.management.versions(self.model)
            current = self.management.default_version(self.model) if registered else None
        except ManagementError as e:
            if e.status == 404:
                return None, []
            raise
        return current, registered

    def settings(self, version: str) -> VersionSettings:
        return self.management.settings(self.model, version)

    def set_default(self, version: str) -> None:
        self.management.set_default(self.model, version)

    def unregister(self, version: str, *, timeout: float) -> None:
        """Unregister ``version``; gone already, or removed despite TorchServe's 500 race, counts as done."""
        try:
            self.management.unregister(self.model, version, timeout=timeout)
        except ManagementError as e:
            if e.status == 404:
                return
            if e.unreachable or version in self.served()[1]:
                raise
            log.warning("unregistering %s: %s; TorchServe removed it anyway", version_label(version), e.message)

    def register(self, mar: str, version: str, settings: VersionSettings, *, timeout: float) -> None:
        """Register ``mar`` with ``settings`` (synchronous) and check that it appeared as ``version``."""
        before = set(self.served()[1])
        try:
            self.management.register(
                mar,
                model=self.model,
                workers=settings.workers,
                batch_size=settings.batch_size,
                max_batch_delay_ms=settings.max_batch_delay_ms,
                response_timeout_s=settings.response_timeout_s,
                timeout=timeout,
            )
        except ManagementError as e:
            if e.unreachable:
                raise
            raise VersionFailed(f"TorchServe could not load {version_label(version)}: {e.message}") from e
        current, registered = self.served()
        appeared = set(registered) - before
        if version not in appeared:
            for other in appeared - {current}:
                self.unregister(other, timeout=timeout)
            found = ", ".join(version_label(v) for v in sorted(appeared)) or "nothing new"
            raise VersionFailed(
                f"{mar} registered as {found}, not {version_label(version)}: the version inside the archive does "
                f"not match the store"
            )

    def wait_answers(self, version: str, workers: int, *, timeout: float) -> None:
        """Wait until ``workers`` workers are READY and ``version`` answers a real prediction as itself."""
        deadline = self.clock() + timeout
        detail = "not probed yet"
        while True:
            try:
                ready = self.management.ready_workers(self.model, version)
            except ManagementError as e:
                if e.unreachable:
                    raise
                ready, detail = 0, e.message
            if ready >= workers:
                result = self.prober(self.inference_url, model=self.model, version=version, timeout=30.0)
                if result.ok and result.version == version:
                    return
                detail = result.detail if not result.ok else f"answered as version {result.version}, not {version}"
            else:
                detail = f"{ready} of {workers} workers READY"
            if self.clock() >= deadline:
                raise VersionFailed(f"{version_label(version)} did not answer within {timeout:.0f}s: {detail}")
            if self.stop.wait(0.2):
                raise Stopped

    def drain(self, version: str, workers: int, *, timeout: float) -> None:
        """Wait until every request ``version`` accepted has been answered (TorchServe's unregister doesn't)."""
        deadline = self.clock() + timeout
        while True:
            try:
                if self.management.pending_requests(self.model, version) == 0:
                    break
            except ManagementError as e:
                if e.status == 404:
                    return  # already gone
                raise
            if self.clock() >= deadline:
                log.warning("%s still has queued requests after %.0fs; unregistering", version_label(version), timeout)
                return
            if self.stop.wait(0.05):
                raise Stopped
        # The queue is FIFO: a probe queued now is answered after everything accepted before the switch.
        started = self.clock()
        n = max(1, workers)

        def probe(_: int) -> ProbeResult:
            return self.prober(self.inference_url, model=self.model, version=version, timeout=timeout)

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="drain") as pool:
            results = list(pool.map(probe, range(n)))
        slowest = self.clock() - started
        if not all(r.ok for r in results):
            failures = "; ".join(r.detail for r in results if not r.ok)
            log.warning("drain probe to %s failed: %s", version_label(version), failures)
        if workers > 1:
            # Another worker may still be inside a batch it took before our probes: one batch takes at most about
            # as long as a probe's round trip. Wait twice that.
            if self.stop.wait(min(2 * slowest, max(0.0, deadline - self.clock()))):
                raise Stopped
