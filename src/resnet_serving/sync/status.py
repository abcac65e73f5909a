"""What ``sync`` reports: its state, the versions it sees, and how long the last switch took.

:class:`SyncStatus` is an immutable snapshot, published by :class:`~resnet_serving.sync.loop.Syncer` after
every change and read by any thread (``sync --status-file``, the live display of ``sync`` and ``serve``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from resnet_serving.torchserve.versions import version_label


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
        parts = [
            f"{self.state.value}: serving {version_label(self.current)}, {self.channel} → {version_label(self.target)}"
        ]
        if self.failed:
            parts.append("failed " + ", ".join(version_label(v) for v in sorted(self.failed)))
        parts.append(self.message)
        if self.last_error and self.state in (SyncState.STORE_UNAVAILABLE, SyncState.ERROR):
            parts.append(f"retry in {self.next_poll_s:.1f}s")
        return "; ".join(parts)

    def transition_key(self) -> tuple[object, ...]:
        """What makes a transition (one log line). Not ``message``: polls repeat the same state in new words."""
        return (self.state, self.current, self.target, self.failed, self.reason, self.last_error)
