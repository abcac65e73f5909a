"""The operator's decisions: pure functions from observed state to a :class:`Plan`. No I/O, no clock.

One reconcile looks at the ModelDeployment's spec, what the operator remembers (:class:`Memory`, persisted in
the custom resource's ``.status``), the target Deployment (:class:`~.observe.DeploymentView`) and, when a poll
was due, the model store (:class:`~resnet_serving.policy.StoreView`). It returns what to write into the pod template (at
most one version), the new memory, the Events to post and whether to retry. Which version should run is
:func:`resnet_serving.policy.decide`'s decision, shared with ``resnet-serving sync``; this module adds what
only a Kubernetes rollout has: progress, rollback on failure, and drift.

Steps, in order (each is a row group in ``tests/unit/test_controller_reconcile.py``):

1. ``spec.suspend``: do nothing (:attr:`Step.SUSPENDED`).
2. No target Deployment: wait for it (:attr:`Step.NO_DEPLOYMENT`, retried).
3. A Deployment the operator cannot roll out (no ``fetch`` init container, a version set through
   ``valueFrom``, another store): :attr:`Step.INVALID_TARGET`, not retried until something changes.
4. First sight: adopt what the pod template asks for as the baseline; a complete rollout of a concrete
   version is the current version.
5. **Drift.** The pod template no longer asks for the version the operator wrote (``kubectl rollout undo``,
   ``kubectl edit``, ``kubectl set env``): report it and hold (:attr:`Step.DRIFT_HOLD`). The operator never
   writes over it. It resumes when the target (the channel's version or the pin) moves away from what it was
   when the drift was seen, taking the human's version as the new baseline; or when someone restores the
   operator's version.
6. **A rollout in progress.** Complete: the version is current. Failed (the Deployment's progress deadline,
   or ``spec.rolloutTimeout``): the version is marked failed and the previous pod-template version is
   written back (:attr:`Step.ROLL_BACK`). A failed rollback is reported and left alone (:attr:`Step.FAILED`).
   A paused Deployment is a human's decision: wait, and do not count the time.
7. **The store decision** (only when a poll happened): :func:`resolve` → roll out (:attr:`Step.ROLL_OUT`),
   keep (:attr:`Step.KEEP`) or hold (:attr:`Step.HOLD`). An unreachable store keeps what runs and retries
   with backoff.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from resnet_serving.controller.observe import DeploymentView, Progress, RolloutProgress, rollout_progress
from resnet_serving.controller.spec import ModelDeploymentSpec
from resnet_serving.policy import Action, Reason, StoreView, decide
from resnet_serving.settings import ENV_STORE as STORE_ENV
from resnet_serving.settings import ENV_VERSION as VERSION_ENV
from resnet_serving.store.retry import backoff

# How long to wait before looking for a missing Deployment again, and the store-error backoff bounds.
MISSING_DEPLOYMENT_RETRY_S = 30.0
STORE_BACKOFF_BASE_S = 10.0
STORE_BACKOFF_MAX_S = 300.0


class Phase(str, enum.Enum):
    PENDING = "Pending"  # nothing the operator rolled out runs yet, and nothing can be rolled out now
    PROGRESSING = "Progressing"  # rolling a new version out
    READY = "Ready"  # the target version runs
    ROLLING_BACK = "RollingBack"  # a rollout failed; the previous version is being restored
    DEGRADED = "Degraded"  # serving an older version: the target failed, or cannot be run now
    DRIFTED = "Drifted"  # someone changed the pod template's version; holding, not reverting
    FAILED = "Failed"  # a rollout or rollback failed with nothing to fall back on, or the target is unusable
    SUSPENDED = "Suspended"  # spec.suspend


class Step(str, enum.Enum):
    """What one reconcile did; the first column of the decision tables."""

    SUSPENDED = "suspended"
    NO_DEPLOYMENT = "no-deployment"
    INVALID_TARGET = "invalid-target"
    DRIFT_HOLD = "drift-hold"
    WAIT = "wait"
    ROLL_OUT = "roll-out"
    ROLL_BACK = "roll-back"
    FAILED = "failed"
    KEEP = "keep"
    HOLD = "hold"
    IDLE = "idle"  # no poll due and nothing in flight


@dataclass(frozen=True)
class Rollout:
    """A pod-template change the operator made and is watching."""

    version: str
    """What the template now asks for (``""`` only when restoring a channel-resolving template)."""
    previous: str | None
    """The template's version before the change: what a failure rolls back to (``None``: unknown)."""
    started: datetime
    generation: int | None = None
    """The Deployment's ``metadata.generation`` after the patch (filled in by the handler)."""
    rollback_of: str | None = None
    """Set when this rollout restores ``previous`` after ``rollback_of`` failed."""


@dataclass(frozen=True)
class Drift:
    """The pod template stopped asking for what the operator wrote. Held until ``target`` changes."""

    annotation: str | None
    env: str | None
    expected: str
    target: str | None
    detected: datetime


@dataclass(frozen=True)
class Memory:
    """What the operator remembers between reconciles. Persisted in ``.status`` (see :mod:`.status`)."""

    adopted: bool = False
    applied: str | None = None
    """The version the operator last wrote into the pod template (or found there on adoption)."""
    current: str | None = None
    """The version that last finished rolling out."""
    desired: str | None = None
    target: str | None = None
    """What the pin or the channel asked for at the last poll."""
    failed: frozenset[str] = frozenset()
    rollout: Rollout | None = None
    drift: Drift | None = None
    last_poll: datetime | None = None
    store_errors: int = 0
    store_error: str | None = None
    phase: Phase = Phase.PENDING
    reason: str = "Created"
    message: str = "waiting for the first reconcile"
    last_error: str | None = None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


class RetryKind(str, enum.Enum):
    TEMPORARY = "temporary"  # kopf.TemporaryError(delay): try again soon
    PERMANENT = "permanent"  # kopf.PermanentError: nothing to retry until the spec or the target changes


@dataclass(frozen=True)
class Retry:
    kind: RetryKind
    message: str
    delay: float = 0.0


@dataclass(frozen=True)
class Finished:
    """A rollout the operator stopped watching, for the rollout-duration histogram."""

    outcome: str  # succeeded | failed | rolled_back | rollback_failed | superseded | interrupted
    seconds: float


@dataclass(frozen=True)
class Plan:
    step: Step
    memory: Memory
    patch_version: str | None = None
    """Write this version into the pod template (annotation and init-container env), then record the
    Deployment's new generation in ``memory.rollout``."""
    events: tuple[Event, ...] = ()
    retry: Retry | None = None
    finished: tuple[Finished, ...] = ()
    rollbacks: int = 0
    store_error: bool = False


def store_backoff(errors: int, poll_interval_s: float) -> float:
    """Seconds before the next poll after ``errors`` consecutive store failures (10 s, 20 s, 40 s, ...)."""
    if errors <= 0:
        return poll_interval_s
    return backoff(errors - 1, base=STORE_BACKOFF_BASE_S, cap=min(poll_interval_s, STORE_BACKOFF_MAX_S))


def poll_due(spec: ModelDeploymentSpec, memory: Memory, now: datetime) -> bool:
    """Whether the store should be read in this reconcile (the spec changing forces it in the handler)."""
    if memory.last_poll is None:
        return True
    wait = store_backoff(memory.store_errors, spec.poll_interval_s)
    return (now - memory.last_poll).total_seconds() >= wait


def target_problem(spec: ModelDeploymentSpec, deployment: DeploymentView) -> str | None:
    """Why the operator cannot roll this Deployment out, or ``None``."""
    if not deployment.container_found:
        return (
            f"deployment {deployment.name} has no init container {spec.container!r} to read the model version "
            f"(set spec.container to the container that runs `resnet-serving fetch`)"
        )
    if deployment.env_from_ref:
        return (
            f"deployment {deployment.name}: {VERSION_ENV} of init container {spec.container!r} is set through "
            f"valueFrom, so the operator cannot patch it; give it a plain value"
        )
    if deployment.store is not None and deployment.store.rstrip("/") != spec.store.rstrip("/"):
        return (
            f"deployment {deployment.name} fetches from {STORE_ENV}={deployment.store} but this ModelDeployment "
            f"reads {spec.store}: point both at the same store"
        )
    return None


def _asked(version: str | None) -> str:
    """How messages name what a pod template asks for (``""``: no version, each pod resolves the channel)."""
    if version is None:
        return "an unknown version"
    return f"v{version}" if version else "the channel-resolving template"


def _complete(view: DeploymentView, now: datetime) -> bool:
    state = rollout_progress(view, generation=None, started=now, timeout_s=float("inf"), now=now).state
    return state is Progress.COMPLETE


class _Planner:
    """One reconcile. A class only to share the inputs between the steps; every method is pure."""

    def __init__(
        self,
        spec: ModelDeploymentSpec,
        memory: Memory,
        deployment: DeploymentView | None,
        store: StoreView | None,
        now: datetime,
    ) -> None:
        self.spec = spec
        self.m = memory
        self.dep = deployment
        self.store = store
        self.now = now
        self.events: list[Event] = []
        self.finished: list[Finished] = []

    # ---- helpers ---------------------------------------------------------------------------------------
    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def settle(self, phase: Phase, reason: str, message: str, *, warn: bool = False, note: bool = False) -> None:
        """Set the phase. An Event marks a new phase, or a new reason when it is a warning or worth a note;
        never every tick."""
        if self.m.phase is not phase or ((warn or note) and self.m.reason != reason):
            self.event("Warning" if warn else "Normal", reason, message)
        self.m = replace(self.m, phase=phase, reason=reason, message=message)

    def plan(self, step: Step, *, patch: str | None = None, retry: Retry | None = None, rollbacks: int = 0) -> Plan:
        return Plan(
            step=step,
            memory=self.m,
            patch_version=patch,
            events=tuple(self.events),
            retry=retry,
            finished=tuple(self.finished),
            rollbacks=rollbacks,
            store_error=self.store is not None and self.store.error is not None,
        )

    def target_now(self) -> str | None:
        """The target as of this reconcile: the pin, or the channel's version when the store was read."""
        if self.spec.version:
            return self.spec.version
        if self.store is not None and self.store.error is None:
            return self.store.channel_version
        return None

    def seconds(self, rollout: Rollout) -> float:
        return max(0.0, (self.now - rollout.started).total_seconds())

    # ---- the steps -------------------------------------------------------------------------------------
    def run(self) -> Plan:
        spec = self.spec
        if spec.suspend:
            if self.m.rollout is not None:  # stop watching; a resumed operator re-checks from the template
                self.finished.append(Finished("interrupted", self.seconds(self.m.rollout)))
                self.m = replace(self.m, rollout=None, applied=self.m.rollout.version)
            self.settle(Phase.SUSPENDED, "Suspended", "spec.suspend is true: the operator changes nothing")
            return self.plan(Step.SUSPENDED)

        dep = self.dep
        if dep is None:
            message = f"deployment {spec.deployment} not found in this namespace; waiting for it"
            self.settle(Phase.PENDING, "DeploymentNotFound", message, warn=True)
            self.m = replace(self.m, last_error=message)
            return self.plan(Step.NO_DEPLOYMENT, retry=Retry(RetryKind.TEMPORARY, message, MISSING_DEPLOYMENT_RETRY_S))

        problem = target_problem(spec, dep)
        if problem is not None:
            self.settle(Phase.FAILED, "InvalidTarget", problem, warn=True)
            self.m = replace(self.m, last_error=problem)
            return self.plan(Step.INVALID_TARGET, retry=Retry(RetryKind.PERMANENT, problem))

        if not self.m.adopted:
            self.adopt(dep)

        held = self.check_drift(dep)
        if held is not None:
            return held

        if self.m.rollout is not None:
            tracked = self.track(dep, self.m.rollout)
            if tracked is not None:
                return tracked

        if self.store is None:  # no poll due: nothing else to decide
            return self.plan(Step.WAIT if self.m.rollout else Step.IDLE)
        return self.decide(dep, self.store)

    def adopt(self, dep: DeploymentView) -> None:
        baseline = dep.template_version
        current = baseline if baseline and _complete(dep, self.now) else None
        self.m = replace(self.m, adopted=True, applied=baseline, current=current)
        if baseline is None:
            what = "a version the annotation and the init container's env disagree on"
        elif baseline:
            what = f"v{baseline}" + (" (rolled out)" if current else " (rolling out)")
        else:
            what = "no version (each pod resolves the channel when it starts)"
        self.event("Normal", "Adopted", f"now managing deployment {dep.name}; its pod template asks for {what}")

    def check_drift(self, dep: DeploymentView) -> Plan | None:
        m = self.m
        expected = m.rollout.version if m.rollout is not None else m.applied
        live = dep.template_version
        if expected is None or live == expected:
            if m.drift is not None:
                self.event(
                    "Normal",
                    "DriftResolved",
                    f"the pod template asks for {_asked(live)} again, as the operator applied; resuming",
                )
                self.m = replace(self.m, drift=None)
            return None

        target = self.target_now()
        if m.drift is None:
            if m.rollout is not None:
                self.finished.append(Finished("interrupted", self.seconds(m.rollout)))
            seen_target = target if target is not None else m.target
            drift = Drift(dep.annotation, dep.env_version, expected, seen_target, self.now)
            found = (
                f"annotation {dep.annotation!r}, env {dep.env_version!r}"
                if live is None
                else f"asks for {_asked(live)}"
            )
            moves = "spec.version changes" if self.spec.version else f"channel {self.spec.channel} moves"
            message = (
                f"the pod template of deployment {dep.name} {found}, but the operator applied {_asked(expected)} "
                f"(kubectl rollout undo, or a hand edit). The operator will not revert it: it holds until "
                f"{moves} away from {_asked(seen_target)}"
            )
            self.m = replace(
                self.m, drift=drift, rollout=None, phase=Phase.DRIFTED, reason="ManualChange", message=message
            )
            self.event("Warning", "DriftDetected", message)
            return self.plan(Step.DRIFT_HOLD, retry=self.store_retry())

        if target is not None and target != m.drift.target:
            current = live if live and _complete(dep, self.now) else None
            self.event(
                "Normal",
                "DriftReleased",
                f"the target moved from {_asked(m.drift.target)} to {_asked(target)}: taking {_asked(live)} "
                f"(the manual change) as the baseline and resuming",
            )
            self.m = replace(self.m, drift=None, applied=live, current=current, rollout=None)
            return None

        # Still held: keep the record current if the human changed the template again.
        if (dep.annotation, dep.env_version) != (m.drift.annotation, m.drift.env):
            self.m = replace(self.m, drift=replace(m.drift, annotation=dep.annotation, env=dep.env_version))
        if self.store is not None:
            self.m = self.with_poll(self.store)
        return self.plan(Step.DRIFT_HOLD, retry=self.store_retry())

    def track(self, dep: DeploymentView, rollout: Rollout) -> Plan | None:
        """Follow the rollout in flight; a plan when it ends this reconcile, ``None`` to go on deciding."""
        progress = rollout_progress(
            dep,
            generation=rollout.generation,
            started=rollout.started,
            timeout_s=self.spec.rollout_timeout_s,
            now=self.now,
        )
        if progress.state is Progress.PAUSED:
            # The pause is someone's decision: the rollout timeout restarts when the Deployment resumes.
            self.m = replace(self.m, rollout=replace(rollout, started=self.now))
            rolling = Phase.ROLLING_BACK if rollout.rollback_of else Phase.PROGRESSING
            message = f"{progress.message}; waiting for `kubectl rollout resume`"
            self.settle(rolling, "DeploymentPaused", message, note=True)
            return self.plan(Step.WAIT)
        if progress.state is Progress.PROGRESSING:
            if rollout.rollback_of:
                message = f"restoring {_asked(rollout.version)} after v{rollout.rollback_of} failed: {progress.message}"
                self.settle(Phase.ROLLING_BACK, "RollingBack", message, warn=True)
            else:
                self.settle(Phase.PROGRESSING, "RolloutInProgress", f"v{rollout.version}: {progress.message}")
            return None  # a poll may still supersede it with a newer target
        if progress.state is Progress.COMPLETE:
            return self.completed(rollout)
        return self.failed(rollout, progress)

    def completed(self, rollout: Rollout) -> Plan | None:
        seconds = self.seconds(rollout)
        current = rollout.version or None
        self.m = replace(self.m, rollout=None, applied=rollout.version, current=current, desired=current)
        if rollout.rollback_of:
            self.finished.append(Finished("rolled_back", seconds))
            failed = rollout.rollback_of
            message = (
                f"{_asked(rollout.version)} restored after v{failed} failed; v{failed} is held until the target moves"
            )
            self.event("Normal", "RolledBack", message)
            self.m = replace(self.m, phase=Phase.DEGRADED, reason="RolledBack", message=message)
        else:
            self.finished.append(Finished("succeeded", seconds))
            message = f"v{rollout.version} rolled out in {seconds:.0f}s"
            self.event("Normal", "RolloutSucceeded", message)
            self.m = replace(self.m, phase=Phase.READY, reason="RolloutSucceeded", message=message)
        if self.store is None:
            return self.plan(Step.KEEP)
        return None

    def failed(self, rollout: Rollout, progress: RolloutProgress) -> Plan:
        seconds = self.seconds(rollout)
        if rollout.rollback_of:
            self.finished.append(Finished("rollback_failed", seconds))
            message = (
                f"rolling back to {_asked(rollout.version)} after v{rollout.rollback_of} failed did not finish either: "
                f"{progress.message}. The operator stops here; check the pods (kubectl describe deployment "
                f"{self.spec.deployment})"
            )
            self.event("Warning", "RollbackFailed", message)
            self.m = replace(
                self.m,
                rollout=None,
                applied=rollout.version,
                phase=Phase.FAILED,
                reason="RollbackFailed",
                message=message,
                last_error=message,
            )
            return self.plan(Step.FAILED)

        self.finished.append(Finished("failed", seconds))
        failed = self.m.failed | {rollout.version}
        if rollout.previous is not None and rollout.previous != rollout.version:
            message = (
                f"v{rollout.version} failed to roll out ({progress.reason}: {progress.message}); "
                f"rolling back to {_asked(rollout.previous)}"
            )
            self.event("Warning", "RolloutFailed", message)
            restore = Rollout(rollout.previous, rollout.previous, self.now, rollback_of=rollout.version)
            self.m = replace(
                self.m,
                failed=failed,
                rollout=restore,
                applied=rollout.previous,
                desired=rollout.previous or None,
                phase=Phase.ROLLING_BACK,
                reason="RollingBack",
                message=message,
                last_error=message,
            )
            return self.plan(Step.ROLL_BACK, patch=rollout.previous, rollbacks=1)

        message = (
            f"v{rollout.version} failed to roll out ({progress.reason}: {progress.message}) and there is no "
            f"earlier version to roll back to; old pods keep serving while the Deployment retries"
        )
        self.event("Warning", "RolloutFailed", message)
        self.m = replace(
            self.m,
            failed=failed,
            rollout=None,
            applied=rollout.version,
            phase=Phase.FAILED,
            reason="NoPreviousVersion",
            message=message,
            last_error=message,
        )
        return self.plan(Step.FAILED)

    def with_poll(self, store: StoreView) -> Memory:
        """The memory after a poll: when it happened, and the store's health."""
        errors = self.m.store_errors + 1 if store.error else 0
        m = replace(self.m, last_poll=self.now, store_errors=errors, store_error=store.error)
        return replace(m, last_error=store.error) if store.error else m

    def store_retry(self) -> Retry | None:
        if self.store is None or self.store.error is None:
            return None
        kind = RetryKind.TEMPORARY if self.store.transient else RetryKind.PERMANENT
        delay = store_backoff(self.m.store_errors, self.spec.poll_interval_s)
        return Retry(kind, f"model store: {self.store.error}", delay)

    def decide(self, dep: DeploymentView, store: StoreView) -> Plan:
        spec, m = self.spec, self.m
        running = m.rollout.version if m.rollout is not None else m.current
        d = decide(
            store,
            current=running or None,
            previous_target=m.target,
            failed=m.failed,
            pinned=spec.version,
            follows_channel=bool(spec.channel),
        )
        self.m = replace(self.with_poll(store), target=d.target, failed=d.failed)
        retry = self.store_retry()

        if d.action is Action.RUN:
            assert d.version is not None
            return self.roll_out(dep, d.version, d.reason, retry)
        if m.rollout is not None:  # keep watching the rollout in flight
            return self.plan(Step.WAIT, retry=retry)
        if d.action is Action.KEEP:
            self.m = replace(self.m, current=d.version, desired=d.version)
            self.settle(Phase.READY, Reason.UP_TO_DATE.value, d.message)
            return self.plan(Step.KEEP, retry=retry)

        self.m = replace(self.m, desired=self.m.current)
        if d.reason is Reason.PREVIOUSLY_FAILED and self.m.phase is Phase.FAILED:
            return self.plan(Step.HOLD, retry=retry)  # keep the failure visible until the target moves
        if d.reason is Reason.PREVIOUSLY_FAILED and m.reason == "RolledBack":
            return self.plan(Step.HOLD, retry=retry)
        pending = self.m.current is None and d.reason is not Reason.PREVIOUSLY_FAILED
        warn = d.reason in (Reason.STORE_UNAVAILABLE, Reason.PREVIOUSLY_FAILED, Reason.INVALID_VERSION)
        self.settle(Phase.PENDING if pending else Phase.DEGRADED, d.reason.value, d.message, warn=warn)
        return self.plan(Step.HOLD, retry=retry)

    def roll_out(self, dep: DeploymentView, version: str, reason: Reason, retry: Retry | None) -> Plan:
        m = self.m
        if m.rollout is not None:
            self.finished.append(Finished("superseded", self.seconds(m.rollout)))
            # The last version known to work: what the superseded rollout would have rolled back to.
            previous = m.rollout.version if m.rollout.rollback_of else m.rollout.previous
        else:
            previous = dep.template_version
        if dep.template_version == version:
            # The template already asks for it (adopted mid-rollout, or resumed after spec.suspend): watch it.
            baseline = m.current if m.current != version else None
            self.m = replace(self.m, rollout=Rollout(version, baseline, self.now, dep.generation), applied=version)
            self.m = replace(self.m, desired=version)
            self.settle(Phase.PROGRESSING, "RolloutInProgress", f"v{version} is already in the pod template")
            return self.plan(Step.WAIT, retry=retry)
        message = (
            f"rolling out v{version} ({self.spec.source}, {reason.value.lower()} from {_asked(previous)}): "
            f"kubectl rollout status deployment/{dep.name}"
        )
        self.m = replace(
            self.m,
            rollout=Rollout(version, previous, self.now),
            applied=version,
            desired=version,
            phase=Phase.PROGRESSING,
            reason=reason.value,
            message=message,
        )
        self.event("Normal", "RolloutStarted", message)
        return self.plan(Step.ROLL_OUT, patch=version, retry=retry)


def plan(
    *,
    spec: ModelDeploymentSpec,
    memory: Memory,
    deployment: DeploymentView | None,
    store: StoreView | None,
    now: datetime,
) -> Plan:
    """Decide one reconcile. ``store`` is ``None`` when no poll was due; ``deployment`` when it is missing."""
    return _Planner(spec, memory, deployment, store, now).run()


def record_patch(p: Plan, generation: int) -> Plan:
    """The plan after its patch was applied: the rollout remembers the Deployment's new generation."""
    if p.memory.rollout is None:
        return p
    return replace(p, memory=replace(p.memory, rollout=replace(p.memory.rollout, generation=generation)))
