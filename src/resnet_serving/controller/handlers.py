"""kopf handlers: thin. They gather the facts, call the pure planner, apply its plan, map errors to kopf's.

* ``@kopf.on.create/update/resume``: reconcile at once when a ModelDeployment appears, its spec changes, or
  the operator (re)starts; the store is read immediately.
* ``@kopf.timer`` every :data:`TICK_S` seconds (10) per ModelDeployment: follow the rollout in flight and
  watch for drift on every tick; read the store when ``spec.pollInterval`` has passed (sooner after an error,
  with backoff). One lock per object serialises the two. kopf puts a finalizer on each ModelDeployment for
  its timer (``resnet-serving.io/operator``): it is removed when the operator sees the deletion.
* ``@kopf.on.startup``: the metrics/health endpoint; ``@kopf.on.cleanup`` stops it.

Errors cross into kopf here and only here: a transient problem (store or API unreachable, a conflict)
becomes ``kopf.TemporaryError`` with a delay; an invalid spec or an unusable target becomes
``kopf.PermanentError`` (nothing to retry until something changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import kopf

from resnet_serving.controller import metrics as metrics_mod
from resnet_serving.controller.config import OperatorConfig, tick_seconds
from resnet_serving.controller.k8s import KopfAPI, KubernetesAPI
from resnet_serving.controller.observe import DeploymentView, StoreView, read_store, view_deployment
from resnet_serving.controller.patches import change_cause, json_patch
from resnet_serving.controller.reconcile import (
    Memory,
    Phase,
    Plan,
    RetryKind,
    Step,
    plan,
    poll_due,
    record_patch,
)
from resnet_serving.controller.spec import GROUP, PLURAL, VERSION, ModelDeploymentSpec, parse_spec
from resnet_serving.controller.status import memory_from_status, render
from resnet_serving.errors import InvalidModelDeployment, InvalidTarget, KubernetesUnavailable

log = logging.getLogger(__name__)

TICK_S = tick_seconds()
API_RETRY_S = 10.0
# Events that concern the Deployment too: posted on it as well, so `kubectl describe deployment` shows them.
#: Per-object memo keys: the SageMaker update in flight, and the version to update to after it.
SAGEMAKER_TASK = "sagemaker_task"
SAGEMAKER_PENDING = "sagemaker_pending"
#: Per-object memo keys: the status a reconcile meant to write but could not, and the plan whose Deployment
#: patch failed (it may have landed all the same).
UNSAVED_STATUS = "unsaved_status"
PATCH_SENT = "patch_sent"
DEPLOYMENT_EVENTS = frozenset({"RolloutStarted", "RolloutFailed", "RolledBack", "RollbackFailed", "DriftDetected"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _update_sagemaker_endpoint(endpoint: str, *, store: str, version: str, endpoint_url: str | None) -> Any:
    """The same code as `resnet-serving sagemaker deploy` (imported here: it brings boto3's SageMaker clients)."""
    from resnet_serving.sagemaker import update_endpoint_version

    return update_endpoint_version(endpoint, store=store, version=version, endpoint_url=endpoint_url)


@dataclass
class Runtime:
    """What every handler shares, kept in kopf's global memo (per-object memos are shallow copies)."""

    config: OperatorConfig | None = None
    api: KubernetesAPI | None = None
    metrics: metrics_mod.Metrics = field(default_factory=metrics_mod.Metrics)
    health: metrics_mod.Health = field(default_factory=metrics_mod.Health)
    clock: Callable[[], datetime] = utcnow
    store_reader: Callable[[ModelDeploymentSpec], StoreView] = read_store
    sagemaker_updater: Callable[..., Any] = _update_sagemaker_endpoint
    server: Any = None


def _fail_status(memory: Memory, message: str) -> Memory:
    return replace(memory, phase=Phase.FAILED, reason="InvalidSpec", message=message, last_error=message)


async def reconcile_object(
    *,
    runtime: Runtime,
    state: MutableMapping[str, Any],
    body: Mapping[str, Any],
    spec_changed: bool,
) -> Plan:
    """One reconcile of one ModelDeployment. ``state`` is its per-object memo (lock, last status written).

    What a reconcile did is recorded in this order: the Deployment patch, the Events and metrics, then the
    status. Until the status write succeeds, the next reconcile starts from the status it meant to write
    (:data:`UNSAVED_STATUS`), so a failed status write neither loses the rollout nor repeats its Events.
    A Deployment patch that failed is kept (:data:`PATCH_SENT`) until the next reconcile reads the Deployment:
    a write can land although its answer was an error (a 500 after the commit, a cut connection), and a
    landed patch is the operator's own rollout, not a manual change.

    Raises :class:`InvalidModelDeployment` (after recording it in the status) and
    :class:`KubernetesUnavailable`; the kopf handlers map both.
    """
    assert runtime.api is not None, "the startup handler sets the API client"
    api = runtime.api
    meta = body.get("metadata", {})
    namespace, name = meta["namespace"], meta["name"]
    generation = meta.get("generation")
    lock = state.setdefault("lock", asyncio.Lock())
    async with lock:
        now = runtime.clock()
        last: Mapping[str, Any] = state.get(UNSAVED_STATUS) or state.get("status") or body.get("status") or {}
        memory = memory_from_status(last)
        try:
            spec = parse_spec(body.get("spec") or {})
        except InvalidModelDeployment as e:
            if (memory.reason, memory.message) != ("InvalidSpec", e.message):
                api.post_event([body], "Warning", "InvalidSpec", e.message)
            await _write_status(api, state, namespace, name, _fail_status(memory, e.message), last, now, generation)
            raise

        raw = await api.get_deployment(namespace, spec.deployment)
        view = view_deployment(raw, spec.container) if raw is not None else None
        landed = _landed_patch(state, view)
        if landed is not None:
            memory = landed.memory
            log.info("%s/%s: the patch to v%s landed although its answer was an error", namespace, name,
                     landed.patch_version)  # fmt: skip
        store = None
        if view is not None and not spec.suspend and (spec_changed or poll_due(spec, memory, now)):
            store = await asyncio.to_thread(runtime.store_reader, spec)
        p = plan(spec=spec, memory=memory, deployment=view, store=store, now=now)

        if p.patch_version is not None:
            assert raw is not None
            try:
                ops = json_patch(
                    raw, p.patch_version, container=spec.container, cause=change_cause(p.patch_version, spec.source)
                )
            except InvalidTarget as e:  # the planner checked this already; the patch builder double-checks
                raise KubernetesUnavailable(e.message) from e
            state[PATCH_SENT] = p
            try:
                patched = await api.patch_deployment(namespace, spec.deployment, ops)
            except KubernetesUnavailable:
                runtime.metrics.sync_error(namespace, name, "kubernetes")
                raise  # the next reconcile reads the Deployment and finds out whether it landed
            state.pop(PATCH_SENT, None)
            p = record_patch(p, int(patched.get("metadata", {}).get("generation") or 0))

        for done in (landed, p) if landed is not None else (p,):
            _report(runtime, state, body, raw, spec, done)
        await _write_status(api, state, namespace, name, p.memory, last, now, generation)
        return p


def _landed_patch(state: MutableMapping[str, Any], view: DeploymentView | None) -> Plan | None:
    """The plan whose Deployment patch failed, with the Deployment's generation, if the pod template shows the
    patch applied anyway; ``None`` otherwise (the failed patch is forgotten: this reconcile decides again)."""
    sent: Plan | None = state.pop(PATCH_SENT, None)
    if sent is None or view is None or view.template_version != sent.patch_version:
        return None
    return record_patch(sent, view.generation)


def _report(
    runtime: Runtime,
    state: MutableMapping[str, Any],
    body: Mapping[str, Any],
    raw: Mapping[str, Any] | None,
    spec: ModelDeploymentSpec,
    p: Plan,
) -> None:
    """A plan's Events, metrics and SageMaker follow-up, once, when its Deployment patch (if any) is applied."""
    assert runtime.api is not None
    meta = body.get("metadata", {})
    namespace, name = meta["namespace"], meta["name"]
    for event in p.events:
        targets: list[Mapping[str, Any]] = [body]
        if raw is not None and event.reason in DEPLOYMENT_EVENTS:
            targets.append(raw)
        runtime.api.post_event(targets, event.type, event.reason, event.message)
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(level, "%s/%s: %s: %s", namespace, name, event.reason, event.message)
    _record_metrics(runtime.metrics, namespace, name, spec, p)
    if spec.sagemaker_endpoint and any(f.outcome == "succeeded" for f in p.finished):
        _sagemaker_step(runtime, state, body, spec, p)


async def _write_status(
    api: KubernetesAPI,
    state: MutableMapping[str, Any],
    namespace: str,
    name: str,
    memory: Memory,
    last: Mapping[str, Any],
    now: datetime,
    generation: int | None,
) -> None:
    status = render(memory, now=now, generation=generation, previous_conditions=last.get("conditions") or [])
    if status == state.get("status"):
        state.pop(UNSAVED_STATUS, None)
        return  # nothing changed since the last write: no API call
    state[UNSAVED_STATUS] = status
    await api.patch_status(namespace, name, status)
    state["status"] = status
    state.pop(UNSAVED_STATUS, None)


def _record_metrics(m: metrics_mod.Metrics, namespace: str, name: str, spec: ModelDeploymentSpec, p: Plan) -> None:
    memory = p.memory
    m.observe_state(
        namespace,
        name,
        deployment=spec.deployment,
        version=memory.current,
        phase=memory.phase.value,
        drifted=memory.drift is not None,
    )
    if p.store_error:
        m.sync_error(namespace, name, "store")
    for _ in range(p.rollbacks):
        m.rollback(namespace, name)
    for f in p.finished:
        m.rollout_finished(namespace, name, f.outcome, f.seconds)


def _sagemaker_step(
    runtime: Runtime, state: MutableMapping[str, Any], body: Mapping[str, Any], spec: ModelDeploymentSpec, p: Plan
) -> None:
    """Keep ``spec.sagemakerEndpoint`` on the version that just rolled out, in the background.

    A SageMaker update takes minutes, so it runs in a thread, outside this object's lock, one at a time per
    ModelDeployment (a newer version waits for the running update). Its outcome goes to an Event and to
    ``status.sagemaker``; a failure never rolls back or blocks the Kubernetes side.
    """
    version = p.memory.current
    if version is None or spec.sagemaker_endpoint is None:
        return
    running = state.get(SAGEMAKER_TASK)
    if running is not None and not running.done():
        state[SAGEMAKER_PENDING] = version
        return
    state[SAGEMAKER_TASK] = asyncio.get_running_loop().create_task(
        _sagemaker_update(runtime, state, body, spec, version), name=f"sagemaker {spec.sagemaker_endpoint}"
    )


async def _sagemaker_update(
    runtime: Runtime, state: MutableMapping[str, Any], body: Mapping[str, Any], spec: ModelDeploymentSpec, version: str
) -> None:
    assert runtime.api is not None and spec.sagemaker_endpoint is not None
    api, endpoint = runtime.api, spec.sagemaker_endpoint
    meta = body.get("metadata", {})
    while True:
        record: dict[str, Any] = {"endpoint": endpoint, "version": version, "outcome": "Updating", "message": ""}
        await api.patch_status(meta["namespace"], meta["name"], {"sagemaker": record})
        try:
            await asyncio.to_thread(
                runtime.sagemaker_updater, endpoint, store=spec.store, version=version, endpoint_url=spec.endpoint_url
            )
        except Exception as e:  # reported, never fatal to the Kubernetes rollout
            message = getattr(e, "message", None) or f"{e.__class__.__name__}: {e}"
            api.post_event([body], "Warning", "SageMakerNotUpdated", f"{endpoint} → v{version}: {message}")
            record = {**record, "outcome": "Failed", "message": message}
        else:
            api.post_event([body], "Normal", "SageMakerUpdated", f"{endpoint} → v{version}")
            record = {**record, "outcome": "Updated", "message": f"{endpoint} serves v{version}"}
        record["time"] = runtime.clock().isoformat()
        try:
            await api.patch_status(meta["namespace"], meta["name"], {"sagemaker": record})
        except KubernetesUnavailable as e:
            log.warning("%s: recording the SageMaker outcome failed: %s", endpoint, e.message)
        pending = state.pop(SAGEMAKER_PENDING, None)
        if pending is None or pending == version:
            return
        version = pending


def _to_kopf(p: Plan, *, retry_transient: bool) -> None:
    """Map the plan's retry advice to kopf's errors (after the status is written)."""
    if p.retry is None:
        return
    if p.retry.kind is RetryKind.PERMANENT:
        raise kopf.PermanentError(p.retry.message)
    if retry_transient:
        raise kopf.TemporaryError(p.retry.message, delay=p.retry.delay)
    log.info("%s; the timer retries in %.0fs", p.retry.message, p.retry.delay)


async def _handle(
    body: Mapping[str, Any], memo: MutableMapping[str, Any], *, spec_changed: bool, retry_transient: bool
) -> None:
    runtime: Runtime = memo["runtime"]
    try:
        p = await reconcile_object(runtime=runtime, state=memo, body=body, spec_changed=spec_changed)
    except InvalidModelDeployment as e:
        raise kopf.PermanentError(e.message) from e
    except KubernetesUnavailable as e:
        meta = body.get("metadata", {})
        runtime.metrics.sync_error(meta.get("namespace", ""), meta.get("name", ""), "kubernetes")
        # Retried on the next tick, 10 s at most; the API's own advice (a conflict, a 403) takes precedence.
        raise kopf.TemporaryError(e.message, delay=e.retry_after or min(API_RETRY_S, TICK_S)) from e
    if p.step is not Step.IDLE:
        log.debug(
            "%s/%s: %s (%s)", body["metadata"]["namespace"], body["metadata"]["name"], p.step.value, p.memory.message
        )
    _to_kopf(p, retry_transient=retry_transient)


# ---- kopf registrations -------------------------------------------------------------------------------
@kopf.on.startup()
async def startup(
    memo: Any, settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    runtime: Runtime = memo.setdefault("runtime", Runtime())
    runtime.api = runtime.api or KopfAPI(settings, logger)
    config = runtime.config
    if config is not None and config.metrics_port:
        host, port = config.metrics_host, config.metrics_port
        runtime.server = await metrics_mod.serve(runtime.metrics, runtime.health, host, port)
        logger.info("metrics and health on http://%s:%d/metrics", config.metrics_host, config.metrics_port)
    runtime.health.ready = True


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    runtime.health.ready = False
    if runtime.server is not None:
        await runtime.server.cleanup()
        runtime.server = None


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A new or changed spec, or an operator restart: reconcile now (the timer retries transient errors)."""
    await _handle(body, memo, spec_changed=True, retry_transient=False)


@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_S, initial_delay=TICK_S)
async def tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Follow rollouts and drift every tick; poll the store when due."""
    await _handle(body, memo, spec_changed=False, retry_transient=True)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def deleted(type: str, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """A deleted ModelDeployment leaves its Deployment as it is; only its gauges go."""
    if type == "DELETED" and "runtime" in memo:
        memo["runtime"].metrics.forget(namespace or "", name)
