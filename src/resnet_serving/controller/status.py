"""The ModelDeployment's ``.status``: the operator's :class:`~.reconcile.Memory` and standard conditions.

Pure builders. :func:`render` turns a memory into the status written with a JSON merge patch, so every field
is always present (``None`` deletes it): a merge patch keeps stale members of nested objects otherwise.
:func:`memory_from_status` reads it back; an unreadable field is treated as absent, never fatal.

Conditions (``metav1.Condition`` shape; ``lastTransitionTime`` changes only when ``status`` does):

=================  ==============================================================================
``Ready``          the target version runs (phase Ready)
``Progressing``    a rollout or rollback is in flight
``Degraded``       an older version serves: the target failed, was rolled back, or cannot run now
``Drifted``        the pod template was changed by someone else; the operator holds
``StoreReachable`` the last poll of the model store succeeded
=================  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from resnet_serving.artifact.manifest import VERSION_RE, version_key
from resnet_serving.controller.reconcile import Drift, Memory, Phase, Rollout

CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "Drifted", "StoreReachable")


def fmt_time(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _versions(values: object) -> frozenset[str]:
    if not isinstance(values, list):
        return frozenset()
    return frozenset(v for v in values if isinstance(v, str) and VERSION_RE.match(v))


def _rollout(raw: object) -> Rollout | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("version"), str):
        return None
    started = parse_time(raw.get("startedAt"))
    if started is None:
        return None
    generation = raw.get("generation")
    return Rollout(
        version=raw["version"],
        previous=_str(raw.get("previousVersion")),
        started=started,
        generation=generation if isinstance(generation, int) else None,
        rollback_of=_str(raw.get("rollbackOf")),
    )


def _drift(raw: object) -> Drift | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("expectedVersion"), str):
        return None
    detected = parse_time(raw.get("detectedAt"))
    if detected is None:
        return None
    return Drift(
        annotation=_str(raw.get("annotation")),
        env=_str(raw.get("env")),
        expected=raw["expectedVersion"],
        target=_str(raw.get("targetVersion")),
        detected=detected,
    )


def memory_from_status(status: Mapping[str, Any] | None) -> Memory:
    """The operator's memory from a ModelDeployment's status (an empty memory for a new resource)."""
    if not status:
        return Memory()
    try:
        phase = Phase(status.get("phase"))
    except ValueError:
        phase = Phase.PENDING
    errors = status.get("storeErrors")
    return Memory(
        adopted=status.get("adopted") is True,
        applied=_str(status.get("appliedVersion")),
        current=_str(status.get("currentVersion")),
        desired=_str(status.get("desiredVersion")),
        target=_str(status.get("targetVersion")),
        failed=_versions(status.get("failedVersions")),
        rollout=_rollout(status.get("rollout")),
        drift=_drift(status.get("drift")),
        last_poll=parse_time(status.get("lastPollTime")),
        store_errors=errors if isinstance(errors, int) and errors >= 0 else 0,
        store_error=_str(status.get("storeError")),
        phase=phase,
        reason=_str(status.get("reason")) or "",
        message=_str(status.get("message")) or "",
        last_error=_str(status.get("lastError")),
    )


def condition(
    type_: str,
    ok: bool | None,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
    previous: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One condition; keeps the previous ``lastTransitionTime`` while the status stays the same."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    before = next((c for c in previous if c.get("type") == type_), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else None
    out: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason or "Unknown",
        "message": message,
        "lastTransitionTime": since or fmt_time(now),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def conditions(
    memory: Memory,
    *,
    now: datetime,
    generation: int | None,
    previous: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    m = memory
    kw: dict[str, Any] = {"now": now, "generation": generation, "previous": previous}
    ready = m.phase is Phase.READY
    rolling = m.rollout is not None
    degraded = m.phase in (Phase.DEGRADED, Phase.FAILED, Phase.ROLLING_BACK)
    if m.drift is not None:
        drifted = condition("Drifted", True, "ManualChange", m.message, **kw)
    else:
        drifted = condition("Drifted", False, "InSync", "the pod template asks for what the operator applied", **kw)
    if m.last_poll is None:
        store = condition("StoreReachable", None, "NotPolled", "the model store has not been read yet", **kw)
    elif m.store_error:
        store = condition("StoreReachable", False, "StoreError", m.store_error, **kw)
    else:
        store = condition("StoreReachable", True, "Polled", f"read at {fmt_time(m.last_poll)}", **kw)
    if rolling:
        assert m.rollout is not None
        what = f"restoring v{m.rollout.version}" if m.rollout.rollback_of else f"rolling out v{m.rollout.version}"
        progressing = condition("Progressing", True, m.reason, f"{what}: {m.message}", **kw)
    else:
        progressing = condition("Progressing", False, m.reason, m.message, **kw)
    return [
        condition("Ready", ready, m.reason, m.message, **kw),
        progressing,
        condition("Degraded", degraded, m.reason if degraded else "AsExpected", m.message if degraded else "", **kw),
        drifted,
        store,
    ]


def sorted_versions(versions: frozenset[str]) -> list[str]:
    return sorted(versions, key=version_key)


def render(
    memory: Memory,
    *,
    now: datetime,
    generation: int | None,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The whole ``.status`` for a merge patch (``None`` deletes a field)."""
    m = memory
    rollout = None
    if m.rollout is not None:
        r = m.rollout
        rollout = {
            "version": r.version,
            "previousVersion": r.previous,
            "startedAt": fmt_time(r.started),
            "generation": r.generation,
            "rollbackOf": r.rollback_of,
        }
    drift = None
    if m.drift is not None:
        d = m.drift
        drift = {
            "annotation": d.annotation,
            "env": d.env,
            "expectedVersion": d.expected,
            "targetVersion": d.target,
            "detectedAt": fmt_time(d.detected),
        }
    return {
        "phase": m.phase.value,
        "reason": m.reason,
        "message": m.message,
        "adopted": m.adopted,
        "currentVersion": m.current,
        "desiredVersion": m.desired,
        "targetVersion": m.target,
        "appliedVersion": m.applied,
        "failedVersions": sorted_versions(m.failed),
        "rollout": rollout,
        "drift": drift,
        "lastPollTime": fmt_time(m.last_poll),
        "storeErrors": m.store_errors,
        "storeError": m.store_error,
        "lastError": m.last_error,
        "observedGeneration": generation,
        "conditions": conditions(m, now=now, generation=generation, previous=previous_conditions),
    }
