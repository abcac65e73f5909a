"""Follow a store channel and switch a running TorchServe to it, with zero failed requests (`resnet-serving sync`).

The orchestration between :mod:`resnet_serving.store` and :mod:`resnet_serving.torchserve`; it talks to S3
and to TorchServe only through them. *Which* version to run is :func:`resnet_serving.policy.decide`'s
decision (shared with the Kubernetes operator); this module applies it.

One :meth:`Syncer.step` is one poll:

1. Read TorchServe's state: the default (serving) version, and any other registered version of the model.
   Other versions are strays (a crash mid-switch, a failed load) and are unregistered: sync owns the model.
2. Read the store (:func:`resnet_serving.policy.read_store`). A store error keeps the current version
   serving; the loop backs off (``interval``, doubling up to ``max_backoff``) and tries again.
3. ``decide``. On ``run`` the switch is:

   a. fetch and verify the archive into ``<model-store>/.sync/<model>/<V>/`` and link it as
      ``<model-store>/<model>-v<V>.mar`` (:class:`ArchiveDir`: TorchServe registers archives from its model
      store's top level);
   b. register it with the same workers and batching as the serving version (synchronous);
   c. wait until its workers are READY and it answers a real prediction on ``/predictions/<model>/<V>``,
      reporting version ``V``;
   d. make it the default version: new requests go to it from here on;
   e. drain the old version, then unregister it (:class:`~resnet_serving.torchserve.versions.Versions`, which
      knows how TorchServe 0.12's unregister fails to drain by itself).

   A version that fails to verify (sha256), register, load or answer is recorded as failed, its half-registered
   state and files are removed, and the old version keeps serving. It is not tried again until the channel
   moves.

Status (:class:`~resnet_serving.sync.status.SyncStatus`) is published after every change; every transition is
logged as one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from resnet_serving import MODEL_NAME
from resnet_serving.artifact.layout import synced_archive_name
from resnet_serving.errors import (
    IntegrityError,
    ResnetServingError,
    Stopped,
    StoreError,
    TorchServeError,
    VersionFailed,
)
from resnet_serving.files import place_file
from resnet_serving.policy import Action, Decision, Reason, StoreView, decide, read_store
from resnet_serving.store.retry import backoff
from resnet_serving.sync.status import SwitchTiming, SyncState, SyncStatus
from resnet_serving.torchserve.config import BATCH_SIZE, MAX_BATCH_DELAY_MS, RESPONSE_TIMEOUT_S
from resnet_serving.torchserve.management import VersionSettings
from resnet_serving.torchserve.probe import probe_model
from resnet_serving.torchserve.versions import (
    ManagementLike,
    Prober,
    Versions,
    version_label,
)

log = logging.getLogger(__name__)

#: Where fetched versions are kept, inside TorchServe's model store.
SYNC_DIR = ".sync"

__all__ = ["SYNC_DIR", "ArchiveDir", "SyncState", "SyncStatus", "Syncer"]


class StoreLike(Protocol):
    """What the syncer needs of :class:`~resnet_serving.store.Store`."""

    @property
    def uri(self) -> str: ...
    def resolve_channel(self, model: str, channel: str) -> str | None: ...
    def list_versions(self, model: str = ...) -> list[str]: ...
    def fetch(self, model: str, version: str, dest_dir: str | os.PathLike[str]) -> Path: ...


class ArchiveDir:
    """The archives sync fetched, inside TorchServe's model store; never an archive it did not fetch."""

    def __init__(self, model_store: str | os.PathLike[str], model: str) -> None:
        self.root = Path(model_store)
        self.model = model

    def mar_name(self, version: str) -> str:
        return synced_archive_name(self.model, version)

    def version_dir(self, version: str) -> Path:
        return self.root / SYNC_DIR / self.model / version

    def fetch(self, store: StoreLike, version: str) -> str:
        """Fetch and verify into the model store; return the archive's name there (what TorchServe registers)."""
        archive = store.fetch(self.model, version, self.version_dir(version))
        name = self.mar_name(version)
        place_file(archive, self.root / name)
        return name

    def remove(self, version: str) -> None:
        (self.root / self.mar_name(version)).unlink(missing_ok=True)
        shutil.rmtree(self.version_dir(version), ignore_errors=True)


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
        self.channel = channel
        self.model = model
        self.interval = interval
        self.max_backoff = max_backoff
        self.defaults = defaults or VersionSettings(
            workers=1,
            batch_size=BATCH_SIZE,
            max_batch_delay_ms=MAX_BATCH_DELAY_MS,
            response_timeout_s=RESPONSE_TIMEOUT_S,
        )
        self.load_timeout = load_timeout
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self.clock = clock
        self.versions = Versions(management, model=model, inference_url=inference_url, prober=prober, clock=clock)
        self.archives = ArchiveDir(model_store, model)
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
        if new.transition_key() != old.transition_key():
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
        return backoff(self._errors - 1, base=self.interval, cap=self.max_backoff)

    # ---- the loop -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set. Never raises: unexpected errors are logged and retried with backoff."""
        self.versions.stop = stop
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
        """One poll: read TorchServe and the store, ``decide``, switch if needed. Returns the status."""
        polls = self._status.polls + 1
        # 1. TorchServe
        try:
            current, registered = self.versions.served()
            for version in registered:
                if version != current:
                    log.info("unregistering stray %s %s (not the default version)", self.model, version_label(version))
                    self._unregister(version)
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
        # 2. the store, 3. decide
        view = read_store(self.store, self.model, self.channel)
        decision = decide(view, current=current, previous_target=self._target, failed=self._failed)
        self._failed, self._target = decision.failed, decision.target
        if decision.action is Action.RUN:
            return self._switch(decision, current, polls)
        if view.error is not None:  # decide can only keep or hold without the store's versions
            return self._store_trouble(view, decision, current, polls)
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

    def _store_trouble(self, view: StoreView, decision: Decision, current: str | None, polls: int) -> SyncStatus:
        delay = self._delay(error=True)
        return self._publish(
            state=SyncState.STORE_UNAVAILABLE if view.transient else SyncState.ERROR,
            current=current,
            target=decision.target,
            failed=self._failed,
            reason=Reason.STORE_UNAVAILABLE.value,
            message=f"store {self.store.uri}: {view.error}; {version_label(current)} keeps serving",
            last_error=view.error,
            polls=polls,
            consecutive_errors=self._errors,
            next_poll_s=delay,
        )

    def _unregister(self, version: str) -> None:
        self.versions.unregister(version, timeout=self.drain_timeout)
        self.archives.remove(version)

    # ---- the switch -----------------------------------------------------------------------------------------
    def _switch(self, decision: Decision, old: str | None, polls: int) -> SyncStatus:
        new = decision.version
        assert new is not None  # RUN always names a version
        self._publish(
            state=SyncState.SWITCHING,
            current=old,
            target=decision.target,
            failed=self._failed,
            reason=decision.reason.value,
            message=f"{decision.reason.value}: {version_label(old)} → {version_label(new)}",
            polls=polls,
            attempts=self._status.attempts + 1,
        )
        t0 = self.clock()
        stage = "fetch"
        try:
            mar = self.archives.fetch(self.store, new)
            t_fetch = self.clock()
            stage = "register"
            settings = self.versions.settings(old) if old else self.defaults
            self.versions.register(mar, new, settings, timeout=self.load_timeout)
            t_register = self.clock()
            stage = "answer"
            self.versions.wait_answers(new, settings.workers, timeout=self.ready_timeout)
            t_ready = self.clock()
            stage = "set-default"
            self.versions.set_default(new)
            t_default = self.clock()
        except Stopped:
            self._abandon(new)
            return self._publish(message=f"stopped while switching to {version_label(new)}", next_poll_s=0.0)
        except (IntegrityError, VersionFailed) as e:
            return self._switch_failed(new, old, polls, f"{stage}: {e.message}")
        except StoreError as e:
            return self._switch_error(e, new, old, polls, f"{stage}: store {self.store.uri}: {e.message}")
        except TorchServeError as e:
            return self._switch_error(e, new, old, polls, f"{stage}: TorchServe: {e.message}")
        except OSError as e:  # placing the archive in the model store
            return self._switch_error(e, new, old, polls, f"{stage}: model store {self.archives.root}: {e}")

        error = None
        if old is not None and old != new:
            try:
                self.versions.drain(old, settings.workers, timeout=self.drain_timeout)
                self._unregister(old)
            except Stopped:
                pass  # the next run removes it as a stray
            except TorchServeError as e:
                error = (
                    f"{version_label(new)} is serving, but removing {version_label(old)} failed: {e.message} "
                    "(retried next poll)"
                )
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
            f"{decision.reason.value} from {version_label(old)} to {version_label(t.to_version)} in "
            f"{t.switch_s:.1f}s (fetch {t.fetch_s:.1f}s, register {t.register_s:.1f}s, answer {t.ready_s:.1f}s)"
        )
        if error:
            return f"{message}; {error}"
        if old is not None and old != t.to_version:
            return f"{message}, then drained and removed {version_label(old)} in {t.drain_s:.1f}s"
        return message

    def _abandon(self, version: str) -> None:
        """Remove a version that was registered (or half-registered) but never became the default."""
        with contextlib.suppress(TorchServeError):
            current, registered = self.versions.served()
            if version in registered and version != current:
                self._unregister(version)  # TorchServe 0.12 already drops a version whose workers failed to load
        self.archives.remove(version)

    def _switch_failed(self, new: str, old: str | None, polls: int, why: str) -> SyncStatus:
        """The version itself is bad (verify, load, answer): record it, clean up, keep the old one serving."""
        self._abandon(new)
        self._failed = self._failed | {new}
        return self._publish(
            state=SyncState.HOLDING,
            current=old,
            failed=self._failed,
            reason=Reason.PREVIOUSLY_FAILED.value,
            message=f"{version_label(new)} failed: {why}; {version_label(old)} keeps serving",
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
            message=f"switch to {version_label(new)} interrupted: {why}; {version_label(old)} keeps serving",
            last_error=why,
            polls=polls,
            consecutive_errors=self._errors,
            next_poll_s=delay,
        )
