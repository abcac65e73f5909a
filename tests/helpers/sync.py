"""Stand-ins for the sync loop's TorchServe and clock: failures on demand that a real TorchServe cannot be made to
produce reliably (tests/unit/test_sync.py says which). The S3 fault cases (tests/faults/test_store_faults.py) use
them too.
"""

from __future__ import annotations

from pathlib import Path

from resnet_serving.torchserve.management import ManagementError, VersionSettings
from resnet_serving.torchserve.probe import ProbeResult

#: The settings of the version a FakeTorchServe serves when it starts.
SETTINGS = VersionSettings(workers=1, batch_size=4, max_batch_delay_ms=7, response_timeout_s=30)


class FakeTorchServe:
    """The management API and the inference probe over one in-memory model; records every call in order."""

    def __init__(self, model_store: Path, serving: str | None = "1") -> None:
        self.model_store = model_store
        self.registered: dict[str, VersionSettings] = {serving: SETTINGS} if serving else {}
        self.default = serving
        self.calls: list[tuple[str, ...]] = []
        self.pending: dict[str, list[int]] = {}  # version -> successive pending_requests answers
        self.leave_half_registered = False
        self.answer_as: dict[str, str] = {}
        self.unreachable = False
        self.ready = True

    def _check(self) -> None:
        if self.unreachable:
            raise ManagementError("management API http://127.0.0.1:1 unreachable", unreachable=True)

    def _get(self, version: str) -> VersionSettings:
        if version not in self.registered:
            raise ManagementError(f"Model version: {version} does not exist", status=404)
        return self.registered[version]

    # ---- ManagementLike ----
    def versions(self, model: str) -> list[str]:
        self._check()
        if not self.registered:
            raise ManagementError(f"Model not found: {model}", status=404)
        return sorted(self.registered)

    def default_version(self, model: str) -> str:
        self._check()
        assert self.default is not None
        return self.default

    def settings(self, model: str, version: str | None = None) -> VersionSettings:
        self._check()
        return self._get(version or str(self.default))

    def ready_workers(self, model: str, version: str) -> int:
        self._check()
        return self._get(version).workers if self.ready else 0

    def pending_requests(self, model: str, version: str) -> int:
        self._check()
        self._get(version)
        answers = self.pending.get(version, [])
        self.calls.append(("pending", version))
        return answers.pop(0) if answers else 0

    def register(self, mar_url: str, *, model: str, workers: int, batch_size: int, max_batch_delay_ms: int, **kw):
        self._check()
        self.calls.append(("register", mar_url))
        content = (self.model_store / mar_url).read_text()
        if content == "broken":
            if self.leave_half_registered:
                self.registered[mar_url.removeprefix(f"{model}-v").removesuffix(".mar")] = SETTINGS
            raise ManagementError("POST /models → HTTP 500: Failed to start workers", status=500)
        version = content.split(":", 1)[1]
        if version in self.registered:
            raise ManagementError(f"Model version {version} is already registered", status=409)
        self.registered[version] = VersionSettings(workers, batch_size, max_batch_delay_ms, kw["response_timeout_s"])
        if self.default is None:
            self.default = version
        return {"status": "registered"}

    def set_default(self, model: str, version: str) -> None:
        self._check()
        self._get(version)
        self.calls.append(("set_default", version))
        self.default = version

    def unregister(self, model: str, version: str, *, timeout: float = 0) -> None:
        self._check()
        self._get(version)
        self.calls.append(("unregister", version))
        del self.registered[version]

    # ---- Prober ----
    def probe(self, url: str, *, model: str, version: str | None = None, timeout: float = 0) -> ProbeResult:
        self.calls.append(("probe", str(version)))
        if version not in self.registered:
            return ProbeResult(False, "HTTP 404")
        answered = self.answer_as.get(version, version)
        return ProbeResult(True, f"version {answered}", answered)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.5  # every reading moves time on: deadlines are reached without real waiting
        return self.now
