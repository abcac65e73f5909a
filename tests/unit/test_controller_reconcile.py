"""The operator's decisions as tables: state (memory, Deployment, store) → step, patch, phase, Events, retry.

Every case the operator issue names is a row group: new version, same version, failed rollout → rollback,
drift → hold, store unreachable → keep and retry, pinned version. `kubectl rollout undo` cannot run without a
cluster, so drift is given as the pure facts it leaves behind: a pod template that asks for another version
than the operator applied.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import pytest

from resnet_serving.controller.observe import DeploymentView
from resnet_serving.controller.reconcile import (
    Drift,
    Memory,
    Phase,
    Plan,
    RetryKind,
    Rollout,
    Step,
    plan,
    poll_due,
    record_patch,
    store_backoff,
)
from resnet_serving.controller.spec import ModelDeploymentSpec
from resnet_serving.policy import StoreView

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
STORE_URI = "s3://models/store"
SPEC = ModelDeploymentSpec(store=STORE_URI, deployment="resnet50-serving", channel="stable")
VERSIONS = ("1", "2", "3", "4", "5")


def pinned(version: str) -> ModelDeploymentSpec:
    return replace(SPEC, channel=None, version=version)


def dep(
    version: str | None = "3",
    *,
    env: str | None = None,
    replicas: int = 3,
    updated: int | None = None,
    available: int | None = None,
    total: int | None = None,
    generation: int = 5,
    observed: int | None = None,
    deadline: bool = False,
    paused: bool = False,
    container: bool = True,
    store: str = STORE_URI,
    env_from_ref: bool = False,
) -> DeploymentView:
    """A Deployment; by default fully rolled out at ``version`` (annotation and env agree)."""
    updated = replicas if updated is None else updated
    return DeploymentView(
        name="resnet50-serving",
        generation=generation,
        observed_generation=generation if observed is None else observed,
        replicas=replicas,
        updated_replicas=updated,
        ready_replicas=updated if available is None else available,
        available_replicas=updated if available is None else available,
        total_replicas=replicas if total is None else total,
        paused=paused,
        progress_deadline_exceeded=deadline,
        annotation=version,
        env_version=version if env is None else env,
        store=store,
        container_found=container,
        env_from_ref=env_from_ref,
    )


def rolling(version: str, **kw: object) -> DeploymentView:
    """A Deployment mid-rollout to ``version`` (generation 6 observed, one of three pods updated)."""
    defaults: dict[str, object] = {"generation": 6, "updated": 1, "available": 3, "total": 4}
    defaults.update(kw)
    return dep(version, **defaults)  # type: ignore[arg-type]


def store(channel: str | None = "3", versions: tuple[str, ...] = VERSIONS) -> StoreView:
    return StoreView(versions, channel)


def store_down(transient: bool = True) -> StoreView:
    return StoreView(None, error="s3://models/store: endpoint unreachable", transient=transient)


def mem(current: str | None = "3", **kw: object) -> Memory:
    """What the operator remembers after ``current`` rolled out from the channel."""
    base = Memory(
        adopted=True,
        applied=current,
        current=current,
        desired=current,
        target=current,
        last_poll=NOW - timedelta(seconds=5),
        phase=Phase.READY,
        reason="UpToDate",
        message=f"v{current} is running, as wanted",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def rollout(version: str, previous: str | None = "3", *, age_s: float = 60, rollback_of: str | None = None) -> Rollout:
    return Rollout(version, previous, NOW - timedelta(seconds=age_s), generation=6, rollback_of=rollback_of)


def in_flight(version: str = "4", previous: str | None = "3", **kw: object) -> Memory:
    """A rollout of ``version`` in flight; with ``rollback_of``, the restore after that version failed."""
    r = rollout(version, previous, **kw)  # type: ignore[arg-type]
    m = mem(previous, applied=version, rollout=r, target=version, desired=version, phase=Phase.PROGRESSING)
    if r.rollback_of:
        m = replace(m, failed=frozenset({r.rollback_of}), target=r.rollback_of, phase=Phase.ROLLING_BACK)
    return m


def drifted(expected: str = "4", seen: str = "3", target: str = "4") -> Memory:
    d = Drift(seen, seen, expected, target, NOW - timedelta(minutes=5))
    return mem(expected, drift=d, phase=Phase.DRIFTED, reason="ManualChange", target=target)


@dataclass(frozen=True)
class Case:
    id: str
    memory: Memory
    deployment: DeploymentView | None
    store: StoreView | None
    step: Step
    patch: str | None
    phase: Phase
    events: tuple[str, ...] = ()
    retry: RetryKind | None = None
    spec: ModelDeploymentSpec = SPEC


TABLE = [
    # ---- new version ----------------------------------------------------------------------------------
    Case("new-version", mem("3"), dep("3"), store("4"), Step.ROLL_OUT, "4", Phase.PROGRESSING, ("RolloutStarted",)),
    Case("promote-to-older", mem("3"), dep("3"), store("2"), Step.ROLL_OUT, "2", Phase.PROGRESSING,
         ("RolloutStarted",)),
    Case("target-not-in-store", mem("3"), dep("3"), store("9"), Step.HOLD, None, Phase.DEGRADED, ("NotInStore",)),
    Case("channel-unset", mem("3"), dep("3"), store(None), Step.HOLD, None, Phase.DEGRADED, ("NoTarget",)),
    Case("first-sight-adopts", Memory(), dep("3"), store("3"), Step.KEEP, None, Phase.READY, ("Adopted", "UpToDate")),
    Case(
        "first-sight-channel-template", Memory(), dep(""), store("3"), Step.ROLL_OUT, "3", Phase.PROGRESSING,
        ("Adopted", "RolloutStarted"),
    ),
    Case(
        "first-sight-mid-rollout", Memory(), rolling("4"), store("4"), Step.WAIT, None, Phase.PROGRESSING,
        ("Adopted", "RolloutInProgress"),
    ),
    Case("first-sight-empty-store", Memory(), dep(""), store(None, ()), Step.HOLD, None, Phase.PENDING, ("Adopted",)),
    # ---- same version ---------------------------------------------------------------------------------
    Case("same-version", mem("3"), dep("3"), store("3"), Step.KEEP, None, Phase.READY),
    Case("same-version-no-poll-due", mem("3"), dep("3"), None, Step.IDLE, None, Phase.READY),
    # ---- rollout in flight ----------------------------------------------------------------------------
    Case("rollout-progressing", in_flight(), rolling("4"), None, Step.WAIT, None, Phase.PROGRESSING),
    Case(
        "rollout-not-yet-observed", in_flight(), dep("4", generation=6, observed=5), None, Step.WAIT, None,
        Phase.PROGRESSING,
    ),
    Case(
        "rollout-completes", in_flight(), dep("4", generation=6), None, Step.KEEP, None, Phase.READY,
        ("RolloutSucceeded",),
    ),
    Case(
        "rollout-completes-then-polls", in_flight(), dep("4", generation=6), store("4"), Step.KEEP, None, Phase.READY,
        ("RolloutSucceeded",),
    ),
    Case(
        "rollout-superseded", in_flight(), rolling("4"), store("5"), Step.ROLL_OUT, "5", Phase.PROGRESSING,
        ("RolloutStarted",),
    ),
    Case(
        "paused-deployment-waits", in_flight(age_s=7200), rolling("4", paused=True), None, Step.WAIT, None,
        Phase.PROGRESSING, ("DeploymentPaused",),
    ),
    # ---- failed rollout → rollback --------------------------------------------------------------------
    Case(
        "deadline-exceeded-rolls-back", in_flight(), rolling("4", deadline=True), None, Step.ROLL_BACK, "3",
        Phase.ROLLING_BACK, ("RolloutFailed",),
    ),
    Case(
        "timeout-rolls-back", in_flight(age_s=1801), rolling("4"), store("4"), Step.ROLL_BACK, "3",
        Phase.ROLLING_BACK, ("RolloutFailed",),
    ),
    Case(
        "stale-deadline-ignored", in_flight(), rolling("4", observed=5, deadline=True), None, Step.WAIT, None,
        Phase.PROGRESSING,
    ),
    Case(
        "rollback-to-channel-template", in_flight("3", previous=""), rolling("3", deadline=True), None,
        Step.ROLL_BACK, "", Phase.ROLLING_BACK, ("RolloutFailed",),
    ),
    Case(
        "rollback-completes",
        in_flight("3", "3", rollback_of="4"),
        dep("3", generation=6), None, Step.KEEP, None, Phase.DEGRADED, ("RolledBack",),
    ),
    Case(
        "failed-version-held",
        mem("3", failed=frozenset({"4"}), target="4", phase=Phase.DEGRADED, reason="RolledBack"),
        dep("3"), store("4"), Step.HOLD, None, Phase.DEGRADED,
    ),
    Case(
        "failure-forgotten-when-channel-moves",
        mem("3", failed=frozenset({"4"}), target="4", phase=Phase.DEGRADED, reason="RolledBack"),
        dep("3"), store("5"), Step.ROLL_OUT, "5", Phase.PROGRESSING, ("RolloutStarted",),
    ),
    Case(
        "rollback-fails", in_flight("3", "3", rollback_of="4"),
        rolling("3", deadline=True), None, Step.FAILED, None, Phase.FAILED, ("RollbackFailed",),
    ),
    Case(
        "first-rollout-fails-no-previous", in_flight("3", previous=None), rolling("3", deadline=True), None,
        Step.FAILED, None, Phase.FAILED, ("RolloutFailed",),
    ),
    # ---- drift → hold ---------------------------------------------------------------------------------
    Case("rollout-undo-detected", mem("4"), dep("3"), store("4"), Step.DRIFT_HOLD, None, Phase.DRIFTED,
         ("DriftDetected",)),
    Case(
        "hand-edited-env-detected", mem("4"), dep("4", env="5"), None, Step.DRIFT_HOLD, None, Phase.DRIFTED,
        ("DriftDetected",),
    ),
    Case(
        "undo-during-rollout-detected", in_flight(), dep("3", generation=7), None, Step.DRIFT_HOLD, None,
        Phase.DRIFTED, ("DriftDetected",),
    ),
    Case("drift-held-same-target", drifted(), dep("3"), store("4"), Step.DRIFT_HOLD, None, Phase.DRIFTED),
    Case("drift-held-no-poll", drifted(), dep("3"), None, Step.DRIFT_HOLD, None, Phase.DRIFTED),
    Case("drift-held-store-down", drifted(), dep("3"), store_down(), Step.DRIFT_HOLD, None, Phase.DRIFTED,
         retry=RetryKind.TEMPORARY),
    Case(
        "drift-released-channel-moves", drifted(), dep("3"), store("5"), Step.ROLL_OUT, "5", Phase.PROGRESSING,
        ("DriftReleased", "RolloutStarted"),
    ),
    Case(
        "drift-released-to-human-version", drifted(), dep("3"), store("3"), Step.KEEP, None, Phase.READY,
        ("DriftReleased", "UpToDate"),
    ),
    Case(
        "drift-resolved-by-restore", drifted(), dep("4"), store("4"), Step.KEEP, None, Phase.READY,
        ("DriftResolved", "UpToDate"),
    ),
    Case(
        "pinned-drift-released-by-new-pin", replace(drifted(target="4")), dep("3"), store("4"), Step.ROLL_OUT, "2",
        Phase.PROGRESSING, ("DriftReleased", "RolloutStarted"), spec=pinned("2"),
    ),
    # ---- store unreachable → keep and retry -----------------------------------------------------------
    Case("store-down-keeps-current", mem("3"), dep("3"), store_down(), Step.KEEP, None, Phase.READY,
         retry=RetryKind.TEMPORARY),
    Case(
        "store-down-pin-unverifiable", mem("3"), dep("3"), store_down(), Step.HOLD, None, Phase.DEGRADED,
        ("StoreUnavailable",), RetryKind.TEMPORARY, pinned("4"),
    ),
    Case("store-access-denied", mem("3"), dep("3"), store_down(transient=False), Step.KEEP, None, Phase.READY,
         retry=RetryKind.PERMANENT),
    Case(
        "store-down-during-rollout", in_flight(), rolling("4"), store_down(), Step.WAIT, None, Phase.PROGRESSING,
        retry=RetryKind.TEMPORARY,
    ),
    # ---- pinned version -------------------------------------------------------------------------------
    Case("pinned-rolls-out", mem("3"), dep("3"), store("4"), Step.ROLL_OUT, "2", Phase.PROGRESSING,
         ("RolloutStarted",), spec=pinned("2")),
    Case("pinned-running", mem("2"), dep("2"), store("4"), Step.KEEP, None, Phase.READY, spec=pinned("2")),
    Case("pinned-not-in-store", mem("3"), dep("3"), store("4"), Step.HOLD, None, Phase.DEGRADED, ("NotInStore",),
         spec=pinned("7")),
    Case(
        "pinned-previously-failed", mem("3", failed=frozenset({"2"}), target="2"), dep("3"), store("4"), Step.HOLD,
        None, Phase.DEGRADED, ("PreviouslyFailed",), spec=pinned("2"),
    ),
    # ---- what the operator will not touch -------------------------------------------------------------
    Case("suspended", mem("3"), dep("3"), store("4"), Step.SUSPENDED, None, Phase.SUSPENDED, ("Suspended",),
         spec=replace(SPEC, suspend=True)),
    Case("deployment-missing", mem("3"), None, None, Step.NO_DEPLOYMENT, None, Phase.PENDING, ("DeploymentNotFound",),
         RetryKind.TEMPORARY),
    Case("no-fetch-container", mem("3"), dep("3", container=False), store("4"), Step.INVALID_TARGET, None,
         Phase.FAILED, ("InvalidTarget",), RetryKind.PERMANENT),
    Case("version-from-configmap", mem("3"), dep("3", env_from_ref=True), store("4"), Step.INVALID_TARGET, None,
         Phase.FAILED, ("InvalidTarget",), RetryKind.PERMANENT),
    Case("other-store", mem("3"), dep("3", store="s3://elsewhere/x"), store("4"), Step.INVALID_TARGET, None,
         Phase.FAILED, ("InvalidTarget",), RetryKind.PERMANENT),
]  # fmt: skip


def run(case: Case) -> Plan:
    return plan(spec=case.spec, memory=case.memory, deployment=case.deployment, store=case.store, now=NOW)


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_decision_table(case: Case) -> None:
    p = run(case)
    got = (p.step, p.patch_version, p.memory.phase, tuple(e.reason for e in p.events))
    assert got == (case.step, case.patch, case.phase, case.events)
    assert (p.retry.kind if p.retry else None) is case.retry
    assert p.memory.message, "every state says something a human can read"
    for e in p.events:
        assert e.type in ("Normal", "Warning") and e.message


def test_every_issue_case_has_rows() -> None:
    groups = {
        "new version": {"new-version", "first-sight-channel-template"},
        "same version": {"same-version"},
        "failed rollout → rollback": {"deadline-exceeded-rolls-back", "timeout-rolls-back", "rollback-completes"},
        "drift → hold": {"rollout-undo-detected", "drift-held-same-target", "drift-released-channel-moves"},
        "store unreachable → keep and retry": {"store-down-keeps-current"},
        "pinned version": {"pinned-rolls-out", "pinned-running"},
    }
    ids = {c.id for c in TABLE}
    for name, rows in groups.items():
        assert rows <= ids, name


# ---- the details behind the rows ------------------------------------------------------------------------
def by_id(case_id: str) -> Case:
    return next(c for c in TABLE if c.id == case_id)


def test_a_rollout_remembers_what_to_roll_back_to() -> None:
    p = run(by_id("new-version"))
    assert p.memory.rollout == Rollout("4", "3", NOW)
    assert (p.memory.applied, p.memory.desired, p.memory.current, p.memory.target) == ("4", "4", "3", "4")
    assert "kubectl rollout status deployment/resnet50-serving" in p.events[0].message
    patched = record_patch(p, generation=6)
    assert patched.memory.rollout is not None and patched.memory.rollout.generation == 6


def test_a_completed_rollout_is_current_and_timed() -> None:
    p = run(by_id("rollout-completes"))
    assert (p.memory.current, p.memory.applied, p.memory.rollout) == ("4", "4", None)
    assert [(f.outcome, f.seconds) for f in p.finished] == [("succeeded", 60.0)]


def test_a_failed_rollout_marks_the_version_and_restores_the_previous_one() -> None:
    p = run(by_id("deadline-exceeded-rolls-back"))
    assert p.memory.failed == {"4"}
    assert p.memory.rollout is not None
    assert (p.memory.rollout.version, p.memory.rollout.rollback_of) == ("3", "4")
    assert p.rollbacks == 1
    assert [f.outcome for f in p.finished] == ["failed"]
    assert "ProgressDeadlineExceeded" in p.events[0].message and "rolling back to v3" in p.events[0].message
    assert p.events[0].type == "Warning"


def test_the_rollback_then_holds_the_bad_version_without_new_events() -> None:
    done = run(by_id("rollback-completes"))
    assert (done.memory.current, done.memory.failed) == ("3", {"4"})
    assert [f.outcome for f in done.finished] == ["rolled_back"]
    again = plan(spec=SPEC, memory=done.memory, deployment=dep("3"), store=store("4"), now=NOW)
    assert (again.step, again.patch_version, again.events) == (Step.HOLD, None, ())
    assert again.memory.reason == "RolledBack"


def test_a_stuck_deployment_is_not_rolled_back_twice() -> None:
    p = run(by_id("rollback-fails"))
    assert p.memory.rollout is None and p.rollbacks == 0
    later = plan(spec=SPEC, memory=p.memory, deployment=rolling("3", deadline=True), store=store("4"), now=NOW)
    assert later.patch_version is None and later.memory.phase is Phase.FAILED


def test_drift_is_held_without_writing_and_says_how_to_resume() -> None:
    p = run(by_id("rollout-undo-detected"))
    assert p.memory.drift == Drift("3", "3", "4", "4", NOW)
    message = p.events[0].message
    assert "will not revert" in message and "channel stable" in message
    # However often it looks again, it never writes while the target stays.
    m = p.memory
    for _ in range(3):
        again = plan(spec=SPEC, memory=m, deployment=dep("3"), store=store("4"), now=NOW)
        assert (again.step, again.patch_version, again.events) == (Step.DRIFT_HOLD, None, ())
        m = again.memory


def test_a_released_drift_takes_the_human_version_as_the_baseline() -> None:
    p = run(by_id("drift-released-channel-moves"))
    assert p.memory.drift is None
    assert p.memory.rollout == Rollout("5", "3", NOW), "a failure of v5 rolls back to the human's v3, not to v4"


def test_drift_keeps_the_latest_manual_value() -> None:
    p = plan(spec=SPEC, memory=drifted(), deployment=dep("2"), store=None, now=NOW)
    assert p.memory.drift is not None and p.memory.drift.annotation == "2"
    assert p.events == ()


def test_paused_deployment_restarts_the_rollout_clock() -> None:
    p = run(by_id("paused-deployment-waits"))
    assert p.memory.rollout is not None and p.memory.rollout.started == NOW
    resumed = plan(spec=SPEC, memory=p.memory, deployment=rolling("4"), store=None, now=NOW + timedelta(minutes=1))
    assert resumed.step is Step.WAIT, "the hours spent paused do not count against rolloutTimeout"


def test_a_superseded_rollout_keeps_the_last_good_version_for_rollback() -> None:
    p = run(by_id("rollout-superseded"))
    assert p.memory.rollout == Rollout("5", "3", NOW)
    assert [f.outcome for f in p.finished] == ["superseded"]


def test_store_errors_back_off_and_reset() -> None:
    p = run(by_id("store-down-keeps-current"))
    assert (p.memory.store_errors, p.memory.current, p.memory.last_poll) == (1, "3", NOW)
    assert p.store_error and p.retry is not None and p.retry.delay == 10.0
    assert p.memory.store_error and p.memory.last_error == p.memory.store_error
    second = plan(spec=SPEC, memory=p.memory, deployment=dep("3"), store=store_down(), now=NOW)
    assert second.retry is not None and second.retry.delay == 20.0
    healed = plan(spec=SPEC, memory=second.memory, deployment=dep("3"), store=store("3"), now=NOW)
    assert (healed.memory.store_errors, healed.memory.store_error, healed.retry) == (0, None, None)


@pytest.mark.parametrize(
    ("errors", "poll", "expected"),
    [(0, 30, 30), (1, 30, 10), (2, 30, 20), (3, 30, 30), (1, 3600, 10), (6, 3600, 300), (20, 3600, 300)],
)
def test_store_backoff(errors: int, poll: float, expected: float) -> None:
    assert store_backoff(errors, poll) == expected


def test_poll_due() -> None:
    assert poll_due(SPEC, Memory(), NOW)
    m = mem("3", last_poll=NOW - timedelta(seconds=29))
    assert not poll_due(SPEC, m, NOW)
    assert poll_due(SPEC, m, NOW + timedelta(seconds=1))
    failing = replace(m, store_errors=1)
    assert poll_due(SPEC, failing, NOW - timedelta(seconds=19)), "after an error: 10 s, not the poll interval"


def test_suspend_stops_watching_a_rollout() -> None:
    p = plan(spec=replace(SPEC, suspend=True), memory=in_flight(), deployment=rolling("4"), store=None, now=NOW)
    assert p.memory.rollout is None and p.memory.applied == "4"
    assert [f.outcome for f in p.finished] == ["interrupted"]
    resumed = plan(spec=SPEC, memory=p.memory, deployment=rolling("4"), store=store("4"), now=NOW)
    assert (resumed.step, resumed.patch_version) == (Step.WAIT, None), "watches it again, without patching"


def test_events_only_on_transitions() -> None:
    p = run(by_id("target-not-in-store"))
    again = plan(spec=SPEC, memory=p.memory, deployment=dep("3"), store=store("9"), now=NOW)
    assert again.events == ()
