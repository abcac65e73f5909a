"""Follow a store channel and switch a running TorchServe to it, with zero failed requests (`resnet-serving sync`).

The orchestration between :mod:`resnet_serving.store` and :mod:`resnet_serving.torchserve`; it talks to S3
and to TorchServe only through them. *Which* version to run is decided by
:func:`resnet_serving.policy` (shared with the Kubernetes operator); this module applies the decision.

One :meth:`Syncer.step` is one poll:

1. Read TorchServe's state: the default (serving) version, and any other registered version of the model.
   Other versions are strays (a crash mid-switch, a failed load) and are unregistered: sync owns the model.
2. Read the store: the channel pointer and the complete versions. A store error keeps the current version
   serving; the loop backs off (``interval``, doubling up to ``max_backoff``) and tries again.
3. ``resolve`` decides. On ``run`` the switch is:

   a. fetch and verify the archive into ``<model-store>/.sync/<model>/<V>/`` and link it as
      ``<model-store>/<model>-v<V>.mar`` (TorchServe registers archives from its model store's top level);
   b. register it with the same workers and batching as the serving version (synchronous);
   c. wait until its workers are READY and it answers a real prediction on ``/predictions/<model>/<V>``,
      reporting version ``V``;
   d. make it the default version: new requests go to it from here on;
   e. drain the old version, then unregister it. TorchServe 0.12's unregister does *not* drain: requests still
      queued are never answered and the batch in a worker fails (measured, see ``tests/integration/test_sync.py``).
      So: wait until the old version's job queue is empty, then send a probe to the old version per worker and
      wait for the answers. The queue is FIFO, so once they answered, everything accepted before the switch has
      been answered too. With several workers another worker may still be finishing a batch: wait a further
      twice the slowest probe's latency.

   A version that fails to verify (sha256), register, load or answer is recorded as failed, its half-registered
   state and files are removed, and the old version keeps serving. It is not tried again until the channel
   moves (:func:`resnet_serving.store.failures_after`).

Status (:class:`SyncStatus`) is published after every change; every transition is logged as one line.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from resnet_serving import MODEL_NAME
from resnet_serving.errors import IntegrityError, ResnetServingError, StoreError, TorchServeError
from resnet_serving.files import place_file
from resnet_serving.store import Action, Decision, Reason, RetryPolicy, failures_after, resolve, target_version
from resnet_serving.torchserve.management import ManagementError, VersionSettings
from resnet_serving.torchserve.probe import ProbeResult, probe_model

log = logging.getLogger(__name__)

#: Store retries inside one poll. Short: the sync loop itself backs off between polls.
SYNC_STORE_RETRY = RetryPolicy(attempts=3, base_delay=0.2, max_delay=2.0)
#: Workers and batching for a first version when nothing is registered (later versions copy the serving one).
DEFAULT_SETTINGS = VersionSettings(workers=1, batch_size=8, max_batch_delay_ms=5, response_timeout_s=60)
#: Where fetched versions are kept, inside TorchServe's model store.
SYNC_DIR = ".sync"


# ---- what the syncer needs from its collaborators (the real ones: Store, ManagementClient, probe_model) ------
class StoreLike(Protocol):
    @property
    def uri(self) -> str: ...
    def resolve_channel(self, model: str, channel: str) -> str | None: ...
    def list_versions(self, model: str = ...) -> list[str]: ...
    def fetch(self, model: str, version: str, dest_dir: str | os.PathLike[str]) -> Path: ...


class ManagementLike(Protocol):
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


# ---- status -------------------------------------------------------------------------------------------------
class SyncState(str, enum.Enum):
    STARTING = "starting"
    IN_SYNC = "in-sync"  # serving the channel's version
    SWITCHING = "switching"  # a switch is in progress
    HOLDING = "holding"  # the target cannot run (failed, not in the store, channel unset); current keeps serving
    STORE_UNAVAILABLE = "store-unavailable"  # transient store error; current keeps serving, retrying with backoff
    ERROR = "error"  # anything else (TorchServe unreachable, access denied...); retrying with backoff


@dataclass(frozen=True)
class SwitchTiming:
    """Seconds spent in each stage of the last switch. ``switch_s`` is until the new version was the default."""

    from_version: str | None
    to_version: str
    fetch_s: float
    register_s: float
    ready_s: float
    switch_s: float
    drain_s: float
    total_s: float


@dataclass(frozen=True)
class SyncStatus:
    model: str
    channel: str
    state: SyncState = SyncState.STARTING
    current: str | None = None
    """The version TorchServe serves by default."""
    target: str | None = None
    """The version the channel points at (the last one seen, while the store is unreachable)."""
    failed: frozenset[str] = frozenset()
    """Versions that failed to verify or load since the channel last moved; not retried until it moves."""
    reason: str | None = None
    message: str = "not polled yet"
    last_error: str | None = None
    last_switch_s: float | None = None
    last_switch: SwitchTiming | None = None
    switches: int = 0
    attempts: int = 0
    """Switches started (fetches), successful or not: a failed version is not fetched again."""
    polls: int = 0
    consecutive_errors: int = 0
    next_poll_s: float = 0.0
    updated_at: float = field(default_factory=time.time)

    @property
    def in_sync(self) -> bool:
        return self.state is SyncState.IN_SYNC

    def line(self) -> str:
        """One human line: state, versions, and why."""
        parts = [f"{self.state.value}: serving {_v(self.current)}, {self.channel} → {_v(self.target)}"]
        if self.failed:
            parts.append("failed " + ", ".join(_v(v) for v in sorted(self.failed)))
        parts.append(self.message)
        if self.last_error and self.state in (SyncState.STORE_UNAVAILABLE, SyncState.ERROR):
            parts.append(f"retry in {self.next_poll_s:.1f}s")
        return "; ".join(parts)

    def _key(self) -> tuple[object, ...]:
        """What makes a transition (one log line). Not ``message``: polls repeat the same state in new words."""
        return (self.state, self.current, self.target, self.failed, self.reason, self.last_error)


def _v(version: str | None) -> str:
    return f"v{version}" if version else "nothing"


class _Stopped(Exception):
    """The stop event was set during a switch."""


class _VersionFailed(Exception):
    """The version itself is bad: it did not register, load or answer. Recorded as failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---- the syncer ---------------------------------------------------------------------------------------------
class Syncer:
    """Keeps a TorchServe model on the version a store channel points at.

    One loop (:meth:`run` or repeated :meth:`step`) per model and TorchServe; :attr:`status` is an immutable
    snapshot that any thread may read.

    ``defaults`` are the worker/batch settings for a first version when nothing is registered yet; otherwise a
    new version gets the settings of the one it replaces.
    """

    def __init__(
        self,
        store: StoreLike,
        management: ManagementLike,
        *,
        channel: str,
        model_store: str | os.PathLike[str],
        inference_url: str,
        model: str = MODEL_NAME,
        interval: float = 10.0,
        max_backoff: float = 120.0,
        defaults: VersionSettings | None = None,
        load_timeout: float = 600.0,
        ready_timeout: float = 180.0,
        drain_timeout: float = 120.0,
        prober: Prober = probe_model,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or max_backoff < interval:
            raise ValueError("interval must be > 0 and max_backoff ≥ interval")
        self.store = store
        self.management = management
        self.channel = channel
        self.model = model
        self.model_store = Path(model_store)
        self.inference_url = inference_url.rstrip("/")
        self.interval = interval
        self.max_backoff = max_backoff
        self.defaults = defaults or VersionSettings(
            workers=1, batch_size=8, max_batch_delay_ms=5, response_timeout_s=60
        )
        self.load_timeout = load_timeout
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self.prober = prober
        self.clock = clock
        self._stop = threading.Event()
        self._failed: frozenset[str] = frozenset()
        self._target: str | None = None
        self._errors = 0
        self._listeners: list[Callable[[SyncStatus], None]] = []
        self._status = SyncStatus(model=model, channel=channel)

    # ---- status ---------------------------------------------------------------------------------------------
    @property
    def status(self) -> SyncStatus:
        return self._status

    def subscribe(self, listener: Callable[[SyncStatus], None]) -> None:
        """Call ``listener(status)`` on every status update (a live display); transitions are also logged."""
        self._listeners.append(listener)

    def _publish(self, **changes: Any) -> SyncStatus:
        old = self._status
        new = replace(old, updated_at=time.time(), **changes)
        self._status = new
        if new._key() != old._key():
            log.log(logging.WARNING if new.state is SyncState.ERROR else logging.INFO, "%s", new.line())
        for listener in self._listeners:
            listener(new)
        return new

    def _delay(self, error: bool) -> float:
        """Poll interval after this step: ``interval``; after consecutive errors ×2 each time, capped."""
        if not error:
            self._errors = 0
            return self.interval
        self._errors += 1
        return float(min(self.max_backoff, self.interval * 2 ** min(self._errors - 1, 30)))

    # ---- the loop -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set. Never raises: unexpected errors are logged and retried with backoff."""
        self._stop = stop
        while not stop.is_set():
            try:
                status = self.step()
            except Exception as e:  # a bug must not stop serving: log it and back off
                log.exception("sync step failed unexpectedly")
                delay = self._delay(error=True)
                status = self._publish(
                    state=SyncState.ERROR,
                    last_error=f"{type(e).__name__}: {e}",
                    message=f"unexpected error: {e}",
                    consecutive_errors=self._errors,
                    next_poll_s=delay,
                )
            if stop.wait(status.next_poll_s):
                break

    def step(self) -> SyncStatus:
        """One poll: read TorchServe and the store, decide with ``resolve``, switch if needed. Returns the status."""
        polls = self._status.polls + 1
        # 1. TorchServe
        try:
            current, registered = self._served()
            self._remove_strays(current, registered)
        except TorchServeError as e:
            delay = self._delay(error=True)
            return self._publish(
                state=SyncState.ERROR,
                polls=polls,
                last_error=e.message,
                message=f"TorchServe management API: {e.message}",
                consecutive_errors=self._errors,
                next_poll_s=delay,
            )
        # 2. the store
        store_error: ResnetServingError | None = None
        channel_version: str | None
        versions: list[str] | None
        try:
            channel_version = self.store.resolve_channel(self.model, self.channel)
            versions = self.store.list_versions(self.model)
        except (StoreError, IntegrityError) as e:  # IntegrityError: a malformed channel pointer
            store_error = e
            channel_version, versions = self._target, None  # keep the last known target (and its failures)
        # 3. decide
        target = target_version(channel_version, None)
        self._failed = failures_after(self._failed, self._target, target)
        self._target = target
        decision = resolve(versions=versions, channel_version=channel_version, current=current, failed=self._failed)
        if decision.action is Action.RUN:
            return self._switch(decision, current, polls)
        if store_error is not None:  # resolve can only keep or hold without the store's versions
            return self._store_trouble(store_error, decision, current, polls)
        state = SyncState.IN_SYNC if decision.action is Action.KEEP else SyncState.HOLDING
        return self._publish(
            state=state,
            current=current,
            target=decision.target,
            failed=self._failed,
            reason=decision.reason.value,
            message=decision.message,
            last_error=self._status.last_error if state is SyncState.HOLDING else None,
            polls=polls,
            consecutive_errors=0,
            next_poll_s=self._delay(error=False),
        )

    def _store_trouble(
        self, error: ResnetServingError, decision: Decision, current: str | None, polls: int
    ) -> SyncStatus:
        transient = isinstance(error, StoreError) and error.transient
        delay = self._delay(error=True)
        running = f"{_v(current)} keeps serving"
        return self._publish(
            state=SyncState.STORE_UNAVAILABLE if transient else SyncState.ERROR,
            current=current,
            target=decision.target,
            failed=self._failed,
            reason=Reason.STORE_UNAVAILABLE.value,
            message=f"store {self.store.uri}: {error.message}; {running}",
            last_error=error.message,
            polls=polls,
            consecutive_errors=self._errors,
            next_poll_s=delay,
        )

    # ---- TorchServe state -----------------------------------------------------------------------------------
    def _served(self) -> tuple[str | None, list[str]]:
        """(default version, all registered versions); (None, []) when the model is not registered."""
        try:
            registered = self.management.versions(self.model)
            current = self.management.default_version(self.model) if registered else None
        except ManagementError as e:
            if e.status == 404:
                return None, []
            raise
        return current, registered

    def _remove_strays(self, current: str | None, registered: list[str]) -> None:
        for version in registered:
            if version != current:
                log.info("unregistering stray %s %s (not the default version)", self.model, _v(version))
                self._unregister(version)

    def _unregister(self, version: str) -> None:
        try:
            self.management.unregister(self.model, version, timeout=self.drain_timeout)
        except ManagementError as e:
            if e.status != 404:
                # TorchServe 0.12 races its own workers when it unregisters a version that still has requests in
                # flight: it answers 500 (NullPointerException or ConcurrentModificationException, seen here) and
                # removes the version all the same. Only a version still registered is a failure.
                if e.unreachable or version in self._served()[1]:
                    raise
                log.warning("unregistering %s: %s; TorchServe removed it anyway", _v(version), e.message)
        self._remove_files(version)

    # ---- files ----------------------------------------------------------------------------------------------
    def mar_name(self, version: str) -> str:
        return f"{self.model}-v{version}.mar"

    def _version_dir(self, version: str) -> Path:
        return self.model_store / SYNC_DIR / self.model / version

    def _fetch(self, version: str) -> str:
        """Fetch and verify into the model store; return the archive's name there (what TorchServe registers)."""
        archive = self.store.fetch(self.model, version, self._version_dir(version))
        name = self.mar_name(version)
        place_file(archive, self.model_store / name)
        return name

    def _remove_files(self, version: str) -> None:
        """Remove what sync placed for ``version`` (never an archive it did not fetch, such as serve's own)."""
        (self.model_store / self.mar_name(version)).unlink(missing_ok=True)
        shutil.rmtree(self._version_dir(version), ignore_errors=True)

    # ---- the switch -----------------------------------------------------------------------------------------
    def _switch(self, decision: Decision, old: str | None, polls: int) -> SyncStatus:
        new = decision.version
        assert new is not None  # RUN always names a version
        attempts = self._status.attempts + 1
        self._publish(
            state=SyncState.SWITCHING,
            current=old,
            target=decision.target,
            failed=self._failed,
            reason=decision.reason.value,
            message=f"{decision.reason.value}: {_v(old)} → {_v(new)}",
            polls=polls,
            attempts=attempts,
        )
        t0 = self.clock()
        stage = "fetch"
        try:
            mar = self._fetch(new)
            t_fetch = self.clock()
            stage = "register"
            settings = self.management.settings(self.model, old) if old else self.defaults
            self._register(mar, new, settings)
            t_register = self.clock()
            stage = "answer"
            self._wait_answers(new, settings.workers)
            t_ready = self.clock()
            stage = "set-default"
            self.management.set_default(self.model, new)
            t_default = self.clock()
        except _Stopped:
            self._abandon(new)
            return self._publish(message=f"stopped while switching to {_v(new)}", next_poll_s=0.0)
        except (IntegrityError, _VersionFailed) as e:
            return self._switch_failed(new, old, polls, f"{stage}: {e.message}")
        except StoreError as e:
            return self._switch_error(e, new, old, polls, f"{stage}: store {self.store.uri}: {e.message}")
        except TorchServeError as e:
            return self._switch_error(e, new, old, polls, f"{stage}: TorchServe: {e.message}")
        except OSError as e:  # placing the archive in the model store
            return self._switch_error(e, new, old, polls, f"{stage}: model store {self.model_store}: {e}")

        error = None
        if old is not None and old != new:
            try:
                self._drain(old, settings.workers)
                self._unregister(old)
            except _Stopped:
                pass  # the next run removes it as a stray
            except TorchServeError as e:
                error = f"{_v(new)} is serving, but removing {_v(old)} failed: {e.message} (retried next poll)"
        t_end = self.clock()
        timing = SwitchTiming(
            from_version=old,
            to_version=new,
            fetch_s=t_fetch - t0,
            register_s=t_register - t_fetch,
            ready_s=t_ready - t_register,
            switch_s=t_default - t0,
            drain_s=t_end - t_default,
            total_s=t_end - t0,
        )
        return self._publish(
            state=SyncState.IN_SYNC,
            current=new,
            target=decision.target,
            failed=self._failed,
            reason=Reason.UP_TO_DATE.value,
            message=self._switched_message(decision, old, timing, error),
            last_error=error,
            last_switch_s=timing.switch_s,
            last_switch=timing,
            switches=self._status.switches + 1,
            consecutive_errors=0,
            next_poll_s=self._delay(error=error is not None),
        )

    @staticmethod
    def _switched_message(decision: Decision, old: str | None, t: SwitchTiming, error: str | None) -> str:
        message = (
            f"{decision.reason.value} from {_v(old)} to {_v(t.to_version)} in {t.switch_s:.1f}s (fetch "
            f"{t.fetch_s:.1f}s, register {t.register_s:.1f}s, answer {t.ready_s:.1f}s)"
        )
        if error:
            return f"{message}; {error}"
        if old is not None and old != t.to_version:
            return f"{message}, then drained and removed {_v(old)} in {t.drain_s:.1f}s"
        return message

    def _register(self, mar: str, version: str, settings: VersionSettings) -> None:
        before = set(self._served()[1])
        try:
            self.management.register(
                mar,
                model=self.model,
                workers=settings.workers,
                batch_size=settings.batch_size,
                max_batch_delay_ms=settings.max_batch_delay_ms,
                response_timeout_s=settings.response_timeout_s,
                timeout=self.load_timeout,
            )
        except ManagementError as e:
            if e.unreachable:
                raise
            raise _VersionFailed(f"TorchServe could not load {_v(version)}: {e.message}") from e
        current, registered = self._served()
        appeared = set(registered) - before
        if version not in appeared:
            for other in appeared - {current}:
                self._unregister(other)
            raise _VersionFailed(
                f"{mar} registered as {', '.join(_v(v) for v in sorted(appeared)) or 'nothing new'}, not "
                f"{_v(version)}: the version inside the archive does not match the store"
            )

    def _wait_answers(self, version: str, workers: int) -> None:
        deadline = self.clock() + self.ready_timeout
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
                raise _VersionFailed(f"{_v(version)} did not answer within {self.ready_timeout:.0f}s: {detail}")
            if self._stop.wait(0.2):
                raise _Stopped

    def _drain(self, old: str, workers: int) -> None:
        """Wait until every request the old version accepted has been answered (TorchServe's unregister doesn't)."""
        deadline = self.clock() + self.drain_timeout
        while True:
            try:
                if self.management.pending_requests(self.model, old) == 0:
                    break
            except ManagementError as e:
                if e.status == 404:
                    return  # already gone
                raise
            if self.clock() >= deadline:
                log.warning("%s still has queued requests after %.0fs; unregistering", _v(old), self.drain_timeout)
                return
            if self._stop.wait(0.05):
                raise _Stopped
        # The queue is FIFO: a probe queued now is answered after everything accepted before the switch.
        started = self.clock()
        n = max(1, workers)

        def probe(_: int) -> ProbeResult:
            return self.prober(self.inference_url, model=self.model, version=old, timeout=self.drain_timeout)

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sync-drain") as pool:
            results = list(pool.map(probe, range(n)))
        slowest = self.clock() - started
        if not all(r.ok for r in results):
            log.warning("drain probe to %s failed: %s", _v(old), "; ".join(r.detail for r in results if not r.ok))
        if workers > 1:
            # Another worker may still be inside a batch it took before our probes: one batch takes at most about
            # as long as a probe's round trip. Wait twice that.
            if self._stop.wait(min(2 * slowest, max(0.0, deadline - self.clock()))):
                raise _Stopped

    def _abandon(self, version: str) -> None:
        """Remove a version that was registered (or half-registered) but never became the default."""
        with contextlib.suppress(TorchServeError):
            current, registered = self._served()
            if version in registered and version != current:
                self._unregister(version)  # TorchServe 0.12 already drops a version whose workers failed to load
        self._remove_files(version)

    def _switch_failed(self, new: str, old: str | None, polls: int, why: str) -> SyncStatus:
        """The version itself is bad (verify, load, answer): record it, clean up, keep the old one serving."""
        self._abandon(new)
        self._failed = self._failed | {new}
        message = f"{_v(new)} failed: {why}; {_v(old)} keeps serving"
        return self._publish(
            state=SyncState.HOLDING,
            current=old,
            failed=self._failed,
            reason=Reason.PREVIOUSLY_FAILED.value,
            message=message,
            last_error=why,
            polls=polls,
            consecutive_errors=0,
            next_poll_s=self._delay(error=False),
        )

    def _switch_error(
        self, error: ResnetServingError | OSError, new: str, old: str | None, polls: int, why: str
    ) -> SyncStatus:
        """The switch could not complete for a reason outside the version: keep old serving, retry with backoff."""
        self._abandon(new)
        transient = isinstance(error, StoreError) and error.transient
        delay = self._delay(error=True)
        return self._publish(
            state=SyncState.STORE_UNAVAILABLE if transient else SyncState.ERROR,
            current=old,
            failed=self._failed,
            reason=Reason.STORE_UNAVAILABLE.value if isinstance(error, StoreError) else None,
            message=f"switch to {_v(new)} interrupted: {why}; {_v(old)} keeps serving",
            last_error=why,
            polls=polls,
            consecutive_errors=self._errors,
            next_poll_s=delay,
        )
