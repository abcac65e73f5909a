"""Which model version should run: the one version policy, shared by ``resnet-serving sync`` and the operator.

Both callers do the same three things, and only through this module:

1. :func:`read_store` reads what the store says (the complete versions and the channel pointer) into a
   :class:`StoreView`. It never raises: an unreachable or malformed store is reported in the view.
2. :func:`decide` turns the view, the pin, what is running, the last target and the failure history into a
   :class:`Decision` (pure: no I/O, no clock).
3. The caller applies the decision: ``sync`` through TorchServe's management API, the operator by patching
   the Deployment's pod template.

Every rule is a row in ``tests/unit/test_store_resolve.py``.

Rules, in order:

1. The target is the pinned version if there is one, else the channel's version. No target: hold.
2. A target that is not a valid version string: hold.
3. The target is already running: keep (even while the store is unreachable).
4. The target failed since the channel last moved: hold; it is not retried until the target changes
   (:func:`failures_after` forgets failures when it does).
5. The store could not be listed (``versions is None``): hold, keep serving, try again later.
6. The target is not a complete version in the store (half-uploaded, deleted, being replaced): hold.
7. Otherwise run the target (``Initial``, ``Upgrade`` or ``Downgrade``: a promote to an older version is a
   rollback, and is honoured).

"Hold" never stops what is running: ``Decision.version`` is then the current version (possibly ``None``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Set
from dataclasses import dataclass, replace
from typing import Protocol

from resnet_serving.artifact.manifest import VERSION_RE, version_key
from resnet_serving.errors import ConfigError, InputError, IntegrityError, StoreError


class Action(str, enum.Enum):
    RUN = "run"  # switch to (or start) Decision.version
    KEEP = "keep"  # Decision.version is running and wanted: nothing to do
    HOLD = "hold"  # the target cannot run now; keep Decision.version (the current one) serving


class Reason(str, enum.Enum):
    """CamelCase, so it can be a Kubernetes condition reason as is."""

    NO_TARGET = "NoTarget"
    INVALID_VERSION = "InvalidVersion"
    UP_TO_DATE = "UpToDate"
    PREVIOUSLY_FAILED = "PreviouslyFailed"
    STORE_UNAVAILABLE = "StoreUnavailable"
    NOT_IN_STORE = "NotInStore"
    INITIAL = "Initial"
    UPGRADE = "Upgrade"
    DOWNGRADE = "Downgrade"


@dataclass(frozen=True)
class Decision:
    action: Action
    version: str | None
    """What should be serving after this decision: the target for RUN/KEEP, the current version for HOLD."""
    target: str | None
    """What the pin or the channel asks for."""
    reason: Reason
    message: str
    failed: frozenset[str] = frozenset()
    """The failure history to keep after this decision (:func:`decide` fills it in)."""


class StoreReader(Protocol):
    def list_versions(self, model: str = ...) -> list[str]: ...
    def resolve_channel(self, model: str, channel: str) -> str | None: ...


@dataclass(frozen=True)
class StoreView:
    """What one read of the store found. ``versions is None`` when the store could not be read."""

    versions: tuple[str, ...] | None
    channel_version: str | None = None
    error: str | None = None
    transient: bool = False
    """Whether trying again later can help (throttling, an unreachable endpoint)."""


def read_store(store: StoreReader, model: str, channel: str | None) -> StoreView:
    """List the complete versions and read the channel pointer (blocking). Never raises: errors are reported."""
    try:
        versions = tuple(store.list_versions(model))
        channel_version = store.resolve_channel(model, channel) if channel else None
    except StoreError as e:
        return StoreView(None, error=e.message, transient=e.transient)
    except (IntegrityError, InputError) as e:  # a malformed channel pointer, an unusable store URI
        return StoreView(None, error=e.message, transient=False)
    return StoreView(versions, channel_version)


def target_version(channel_version: str | None, pinned: str | None) -> str | None:
    """A pinned version wins over the channel; empty strings count as unset (Helm values, env vars)."""
    return pinned or channel_version or None


def version_to_start(store: StoreReader, model: str, *, pinned: str | None = None, channel: str | None = None) -> str:
    """The version a server starts on (``serve``): the pinned one, else the channel's, else the newest complete
    version. Reads only what it needs. Raises ConfigError when there is none (a channel not set, an empty store)."""
    if pinned:
        return pinned
    if channel:
        version = store.resolve_channel(model, channel)
        if version is None:
            raise ConfigError(f"channel {channel!r} is not set; `resnet-serving promote` first")
        return version
    versions = store.list_versions(model)
    if not versions:
        raise ConfigError(f"no {model} versions: build one with `resnet-serving archive` (or `make serve`)")
    return max(versions, key=version_key)


def failures_after(failed: Set[str], previous_target: str | None, target: str | None) -> frozenset[str]:
    """The failure history to keep once the target is known: forgotten when the target moved."""
    return frozenset(failed) if previous_target == target else frozenset()


def resolve(
    *,
    versions: Iterable[str] | None,
    channel_version: str | None,
    pinned: str | None = None,
    current: str | None = None,
    failed: Set[str] = frozenset(),
) -> Decision:
    """Decide what to run. ``versions`` is what the store lists, or ``None`` when it could not be listed."""
    target = target_version(channel_version, pinned)
    kind = "pinned version" if pinned else "channel version"
    source = f"{kind} {target}"
    running = f"v{current} keeps serving" if current else "nothing is serving"

    def hold(reason: Reason, why: str) -> Decision:
        return Decision(Action.HOLD, current, target, reason, f"{why}; {running}")

    if target is None:
        return hold(Reason.NO_TARGET, "no version pinned and the channel is not set")
    if not VERSION_RE.match(target):
        return hold(Reason.INVALID_VERSION, f"{kind} {target!r} is not a valid version")
    if target == current:
        return Decision(Action.KEEP, current, target, Reason.UP_TO_DATE, f"v{current} is running, as wanted")
    if target in failed:
        return hold(Reason.PREVIOUSLY_FAILED, f"{source} failed to load or verify; waiting for a new target")
    if versions is None:
        return hold(Reason.STORE_UNAVAILABLE, f"the store could not be listed to check {source}")
    if target not in set(versions):
        return hold(Reason.NOT_IN_STORE, f"{source} is not a complete version in the store")
    if current is None or not VERSION_RE.match(current):
        reason = Reason.INITIAL
    elif version_key(target) > version_key(current):
        reason = Reason.UPGRADE
    else:
        reason = Reason.DOWNGRADE
    change = f"from v{current}" if current else "as the first version"
    return Decision(Action.RUN, target, target, reason, f"run {source} {change}")


def decide(
    view: StoreView,
    *,
    current: str | None,
    previous_target: str | None,
    failed: Set[str],
    pinned: str | None = None,
    follows_channel: bool = True,
) -> Decision:
    """The decision for one poll: target, failure history and :func:`resolve`, in that order.

    While the store cannot be read, the channel is taken to still point at ``previous_target`` (so a version
    that failed stays failed, and what runs keeps running). ``Decision.failed`` is the history to keep.
    """
    if view.error is None:
        channel_version = view.channel_version
    else:
        channel_version = previous_target if follows_channel else None
    kept = failures_after(failed, previous_target, target_version(channel_version, pinned))
    decision = resolve(
        versions=view.versions, channel_version=channel_version, pinned=pinned, current=current, failed=kept
    )
    return replace(decision, failed=kept)
