"""The kopf handlers' glue: gather facts, plan, patch, write status, post Events, count metrics, map errors.

No Kubernetes API server can run on these machines, so :class:`FakeAPI` stands in for it: it keeps Deployments
and ModelDeployment statuses in dicts and applies the operator's JSON patches with a small RFC 6902
implementation (``test``/``add``/``replace``), bumping ``generation`` and ``resourceVersion`` as the API server
does. The Deployment controller is simulated by setting the Deployment's status. The real store code runs
against a ``file://`` store with fake archives. Everything else (planner, patch builder, status) is the real
code. The patch itself is checked against the real ``kubectl patch --local`` in tests/chart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import kopf
import pytest

from resnet_serving.cli import build_parser
from resnet_serving.controller import handlers
from resnet_serving.controller.config import load_config
from resnet_serving.controller.handlers import SAGEMAKER_TASK, Runtime, reconcile_object
from resnet_serving.controller.observe import read_store
from resnet_serving.controller.reconcile import Phase, Plan, Retry, RetryKind, Step
from resnet_serving.controller.run import build_settings
from resnet_serving.controller.spec import GROUP, PLURAL, VERSION, parse_spec
from resnet_serving.errors import ConfigError, InvalidModelDeployment, KubernetesUnavailable
from resnet_serving.policy import StoreView
from resnet_serving.store import open_store
from tests.fixtures.archives import fake_archive
from tests.fixtures.json_patch import apply_json_patch

NS, NAME, DEPLOY = "resnet-serving", "resnet50-serving", "resnet50-serving"


# ---- a stand-in for the API server ------------------------------------------------------------------------
class FakeAPI:
    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self.patches: list[list[dict[str, Any]]] = []
        self.status_writes = 0
        self.events: list[tuple[str, str, str, str]] = []  # (kind, type, reason, message)
        self.fail_patch: KubernetesUnavailable | None = None
        self.fail_status: KubernetesUnavailable | None = None
        self.lose_patch_answer = False

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        d = self.deployments.get((namespace, name))
        return copy.deepcopy(d) if d is not None else None

    async def patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        if self.fail_patch is not None:
            raise self.fail_patch
        current = self.deployments[(namespace, name)]
        try:
            patched = apply_json_patch(current, ops)
        except ValueError as e:
            raise KubernetesUnavailable(str(e), status=422, retry_after=2) from e
        if patched["spec"] != current["spec"]:
            patched["metadata"]["generation"] += 1
        patched["metadata"]["resourceVersion"] = str(int(patched["metadata"]["resourceVersion"]) + 1)
        self.deployments[(namespace, name)] = patched
        self.patches.append(ops)
        if self.lose_patch_answer:  # written, but the answer is an error (a 500 after the commit, a cut)
            raise KubernetesUnavailable("HTTP 500 etcdserver: request timed out", status=500)
        return copy.deepcopy(patched)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        if self.fail_status is not None:
            raise self.fail_status
        merged = {**self.statuses.get((namespace, name), {}), **status}
        self.statuses[(namespace, name)] = {k: v for k, v in merged.items() if v is not None}
        self.status_writes += 1

    def post_event(self, objects: Iterable[Mapping[str, Any]], type_: str, reason: str, message: str) -> None:
        for obj in objects:
            self.events.append((obj["kind"], type_, reason, message))

    # the Deployment controller, simulated
    def settle(self, *, ready: bool = True, deadline: bool = False) -> None:
        d = self.deployments[(NS, DEPLOY)]
        replicas = d["spec"]["replicas"]
        d["status"] = {
            "observedGeneration": d["metadata"]["generation"],
            "replicas": replicas if ready else replicas + 1,
            "updatedReplicas": replicas if ready else 1,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                if deadline
                else {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ],
        }

    def template_version(self) -> tuple[str, str]:
        spec = self.deployments[(NS, DEPLOY)]["spec"]["template"]
        env = {e["name"]: e.get("value", "") for e in spec["spec"]["initContainers"][0]["env"]}
        return spec["metadata"]["annotations"]["resnet-serving.io/model-version"], env["RESNET_SERVING_MODEL_VERSION"]


def make_deployment(store: str, version: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOY, "namespace": NS, "generation": 1, "resourceVersion": "100", "uid": "d-1"},
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"annotations": {"resnet-serving.io/model-version": version}},
                "spec": {
                    "initContainers": [
                        {
                            "name": "fetch-model",
                            "env": [
                                {"name": "RESNET_SERVING_STORE", "value": store},
                                {"name": "RESNET_SERVING_MODEL_VERSION", "value": version},
                            ],
                        }
                    ],
                    "containers": [{"name": "torchserve"}],
                },
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
        },
    }


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class World:
    """One ModelDeployment, its Deployment, a file:// store with versions 1-3 and channel stable → 1."""

    def __init__(self, tmp_path: Path) -> None:
        root = tmp_path / "store"
        root.mkdir()
        self.store_uri = root.as_uri()
        self.store = open_store(self.store_uri)
        for v in ("1", "2", "3"):
            archive, manifest = fake_archive(tmp_path / "build" / v, v, size=256)
            self.store.push(archive, manifest)
        self.store.set_channel("resnet50", "stable", "1")
        self.api = FakeAPI()
        self.api.deployments[(NS, DEPLOY)] = make_deployment(self.store_uri)
        self.clock = Clock()
        self.runtime = Runtime(api=self.api, clock=self.clock)
        self.state: dict[str, Any] = {}
        self.body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME, "namespace": NS, "generation": 1, "uid": "md-1"},
            "spec": {"store": self.store_uri, "channel": "stable", "deployment": DEPLOY, "rolloutTimeout": "5m"},
        }

    def reconcile(self, *, spec_changed: bool = False) -> Plan:
        """One reconcile, then whatever it started in the background (a SageMaker update) to its end."""

        async def once() -> Plan:
            p = await reconcile_object(
                runtime=self.runtime, state=self.state, body=self.body, spec_changed=spec_changed
            )
            task = self.state.get(SAGEMAKER_TASK)
            if task is not None:
                await task
            return p

        return asyncio.run(once())

    @property
    def status(self) -> dict[str, Any]:
        return self.api.statuses[(NS, NAME)]

    def poll_later(self) -> None:
        self.clock.advance(31)

    def reasons(self) -> list[str]:
        return [e[2] for e in self.api.events]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_first_reconcile_rolls_the_channel_version_out(world: World) -> None:
    p = world.reconcile(spec_changed=True)
    assert p.step is Step.ROLL_OUT
    assert world.api.template_version() == ("1", "1")
    dep = world.api.deployments[(NS, DEPLOY)]
    assert dep["metadata"]["annotations"]["kubernetes.io/change-cause"] == (
        "resnet-serving operator: model v1 (channel stable)"
    )
    assert world.status["phase"] == "Progressing"
    assert world.status["rollout"]["generation"] == 2, "the Deployment's generation after the patch"
    assert world.status["rollout"]["previousVersion"] == ""
    assert ("Deployment", "Normal", "RolloutStarted") in [e[:3] for e in world.api.events]
    assert ("ModelDeployment", "Normal", "RolloutStarted") in [e[:3] for e in world.api.events]


def test_rollout_then_upgrade_then_rollback_of_a_broken_version(world: World) -> None:
    world.reconcile(spec_changed=True)
    world.api.settle()
    world.clock.advance(10)
    assert world.reconcile().step is Step.KEEP
    assert (world.status["phase"], world.status["currentVersion"]) == ("Ready", "1")

    world.store.set_channel("resnet50", "stable", "2")
    world.poll_later()
    assert world.reconcile().patch_version == "2"
    world.api.settle()
    world.clock.advance(10)
    world.reconcile()
    assert (world.status["phase"], world.status["currentVersion"]) == ("Ready", "2")

    world.store.set_channel("resnet50", "stable", "3")  # v3's fetch fails: pods never ready
    world.poll_later()
    world.reconcile()
    world.api.settle(ready=False, deadline=True)
    world.clock.advance(10)
    p = world.reconcile()
    assert (p.step, p.patch_version) == (Step.ROLL_BACK, "2")
    assert world.api.template_version() == ("2", "2")
    assert world.status["failedVersions"] == ["3"] and world.status["phase"] == "RollingBack"
    world.api.settle()
    world.clock.advance(10)
    world.reconcile()
    assert (world.status["phase"], world.status["currentVersion"], world.status["reason"]) == (
        "Degraded", "2", "RolledBack",
    )  # fmt: skip
    world.poll_later()
    assert world.reconcile().patch_version is None, "v3 is not retried while the channel points at it"
    text = world.runtime.metrics.render()
    assert 'resnet_serving_operator_rollbacks_total{namespace="resnet-serving",name="resnet50-serving"} 1' in text
    assert (
        'resnet_serving_operator_rollout_duration_seconds_count{namespace="resnet-serving",name="resnet50-serving",'
        'outcome="succeeded"} 2'
    ) in text
    assert 'outcome="failed"} 1' in text and 'outcome="rolled_back"} 1' in text
    assert (
        'resnet_serving_operator_model_version_info{namespace="resnet-serving",name="resnet50-serving",'
        'deployment="resnet50-serving",version="2"} 1'
    ) in text
    assert world.reasons().count("RolloutFailed") == 2  # on the ModelDeployment and on the Deployment


def test_rollout_undo_is_reported_and_never_reverted(world: World) -> None:
    world.reconcile(spec_changed=True)
    world.api.settle()
    world.reconcile()
    world.store.set_channel("resnet50", "stable", "2")
    world.poll_later()
    world.reconcile()
    world.api.settle()
    world.reconcile()
    patches = len(world.api.patches)
    # `kubectl rollout undo`: the Deployment controller copies the previous ReplicaSet's template back.
    dep = world.api.deployments[(NS, DEPLOY)]
    dep["spec"]["template"]["metadata"]["annotations"]["resnet-serving.io/model-version"] = "1"
    dep["spec"]["template"]["spec"]["initContainers"][0]["env"][1]["value"] = "1"
    dep["metadata"]["generation"] += 1
    world.api.settle()
    for _ in range(3):
        world.poll_later()
        assert world.reconcile().step is Step.DRIFT_HOLD
    assert len(world.api.patches) == patches, "no write while the drift is held"
    assert world.status["phase"] == "Drifted" and world.status["drift"]["expectedVersion"] == "2"
    assert world.reasons().count("DriftDetected") == 2  # once, on both objects
    assert "resnet_serving_operator_drift" in world.runtime.metrics.render()
    world.store.set_channel("resnet50", "stable", "3")  # the channel moves on: resume
    world.poll_later()
    p = world.reconcile()
    assert (p.step, p.patch_version) == (Step.ROLL_OUT, "3")
    assert world.status["rollout"]["previousVersion"] == "1", "a failure of v3 returns to the human's choice"


def test_pinning_in_the_spec_rolls_out_at_once(world: World) -> None:
    world.reconcile(spec_changed=True)
    world.api.settle()
    world.reconcile()
    world.body["spec"] = {**world.body["spec"], "version": "3"}
    del world.body["spec"]["channel"]
    world.body["metadata"]["generation"] = 2
    p = world.reconcile(spec_changed=True)
    assert p.patch_version == "3"
    assert world.status["observedGeneration"] == 2


def test_status_is_written_only_when_it_changes(world: World) -> None:
    world.reconcile(spec_changed=True)
    world.api.settle()
    world.reconcile()
    writes = world.api.status_writes
    for _ in range(3):
        world.clock.advance(5)  # ticks between polls: nothing new
        world.reconcile()
    assert world.api.status_writes == writes


def test_store_unreachable_keeps_serving_and_retries(world: World) -> None:
    world.reconcile(spec_changed=True)
    world.api.settle()
    world.reconcile()
    world.runtime.store_reader = lambda spec: StoreView(None, error="endpoint unreachable", transient=True)
    world.poll_later()
    p = world.reconcile()
    assert (p.step, p.retry) == (Step.KEEP, Retry(RetryKind.TEMPORARY, "model store: endpoint unreachable", 10.0))
    assert world.status["phase"] == "Ready"
    conditions = {c["type"]: c for c in world.status["conditions"]}
    assert conditions["StoreReachable"]["status"] == "False"
    assert 'source="store"} 1' in world.runtime.metrics.render()
    with pytest.raises(kopf.TemporaryError):
        handlers._to_kopf(p, retry_transient=True)
    handlers._to_kopf(p, retry_transient=False)  # the change handlers leave the retry to the timer


def test_a_conflicting_patch_writes_nothing(world: World) -> None:
    world.api.fail_patch = KubernetesUnavailable("changed since read", status=422, retry_after=2)
    with pytest.raises(KubernetesUnavailable):
        world.reconcile(spec_changed=True)
    assert (NS, NAME) not in world.api.statuses, "the rollout did not start, so nothing is recorded"
    world.api.fail_patch = None
    assert world.reconcile(spec_changed=True).step is Step.ROLL_OUT


def ready_at_v1_then_channel_moves_to_v2(world: World) -> None:
    world.reconcile(spec_changed=True)
    world.api.settle()
    world.reconcile()
    assert (world.status["phase"], world.status["currentVersion"]) == ("Ready", "1")
    world.store.set_channel("resnet50", "stable", "2")
    world.poll_later()


def test_a_patch_applied_despite_an_error_answer_is_followed_not_taken_for_drift(world: World) -> None:
    ready_at_v1_then_channel_moves_to_v2(world)
    world.api.lose_patch_answer = True
    with pytest.raises(KubernetesUnavailable):
        world.reconcile()
    assert world.api.template_version() == ("2", "2") and len(world.api.patches) == 2
    assert world.status["currentVersion"] == "1" and world.reasons().count("RolloutStarted") == 2, "v1's only"
    world.api.lose_patch_answer = False
    p = world.reconcile()
    assert p.step is Step.WAIT and p.patch_version is None, "the landed patch is not sent again"
    assert world.status["phase"] == "Progressing" and "DriftDetected" not in world.reasons()
    assert world.status["rollout"]["generation"] == world.api.deployments[(NS, DEPLOY)]["metadata"]["generation"]
    assert world.reasons().count("RolloutStarted") == 4, "v1 and v2, each on both objects, once"
    world.api.settle()
    world.reconcile()
    assert (world.status["phase"], world.status["currentVersion"]) == ("Ready", "2")
    assert len(world.api.patches) == 2


def test_a_patch_that_failed_is_decided_again(world: World) -> None:
    ready_at_v1_then_channel_moves_to_v2(world)
    world.api.fail_patch = KubernetesUnavailable("HTTP 500", status=500)
    with pytest.raises(KubernetesUnavailable):
        world.reconcile()
    world.api.fail_patch = None
    p = world.reconcile()
    assert (p.step, p.patch_version) == (Step.ROLL_OUT, "2") and world.api.template_version() == ("2", "2")


def test_a_failed_status_write_after_the_patch_loses_nothing_and_repeats_nothing(world: World) -> None:
    ready_at_v1_then_channel_moves_to_v2(world)
    world.api.fail_status = KubernetesUnavailable("HTTP 500", status=500)
    with pytest.raises(KubernetesUnavailable):
        world.reconcile()
    assert world.api.template_version() == ("2", "2")
    assert world.status["currentVersion"] == "1", "the status write failed"
    assert world.reasons().count("RolloutStarted") == 4, "posted with the patch, before the status write"
    world.api.fail_status = None
    world.clock.advance(1)
    p = world.reconcile()
    assert p.patch_version is None and len(world.api.patches) == 2
    assert world.status["phase"] == "Progressing" and world.status["rollout"]["version"] == "2"
    assert "DriftDetected" not in world.reasons() and world.reasons().count("RolloutStarted") == 4
    world.api.settle()
    world.reconcile()
    assert (world.status["phase"], world.status["currentVersion"]) == ("Ready", "2")


def test_an_invalid_spec_is_recorded_and_permanent(world: World) -> None:
    world.body["spec"]["version"] = "3"  # and channel: both
    with pytest.raises(InvalidModelDeployment):
        world.reconcile(spec_changed=True)
    assert world.status["phase"] == "Failed" and world.status["reason"] == "InvalidSpec"
    assert world.reasons() == ["InvalidSpec"]
    with pytest.raises(InvalidModelDeployment):
        world.reconcile()
    assert world.reasons() == ["InvalidSpec"], "reported once, not on every tick"
    memo = {"runtime": world.runtime, **world.state}
    with pytest.raises(kopf.PermanentError, match=r"exactly one of spec\.channel"):
        asyncio.run(handlers._handle(world.body, memo, spec_changed=True, retry_transient=True))


def test_api_errors_become_temporary_errors(world: World) -> None:
    world.api.fail_patch = KubernetesUnavailable("forbidden", status=403, retry_after=60)
    memo = {"runtime": world.runtime}
    with pytest.raises(kopf.TemporaryError) as caught:
        asyncio.run(handlers._handle(world.body, memo, spec_changed=True, retry_transient=False))
    assert caught.value.delay == 60
    assert 'source="kubernetes"} 2' in world.runtime.metrics.render()


def test_missing_deployment_is_waited_for(world: World) -> None:
    del world.api.deployments[(NS, DEPLOY)]
    p = world.reconcile(spec_changed=True)
    assert p.step is Step.NO_DEPLOYMENT and world.status["phase"] == "Pending"
    with pytest.raises(kopf.TemporaryError):
        handlers._to_kopf(p, retry_transient=True)


def test_invalid_target_is_permanent(world: World) -> None:
    world.body["spec"]["store"] = "s3://another-bucket/store"
    p = world.reconcile(spec_changed=True)
    assert p.step is Step.INVALID_TARGET and p.memory.phase is Phase.FAILED
    with pytest.raises(kopf.PermanentError, match="point both at the same store"):
        handlers._to_kopf(p, retry_transient=False)


def test_concurrent_reconciles_are_serialised(world: World) -> None:
    async def both() -> list[Plan]:
        return list(
            await asyncio.gather(
                reconcile_object(runtime=world.runtime, state=world.state, body=world.body, spec_changed=True),
                reconcile_object(runtime=world.runtime, state=world.state, body=world.body, spec_changed=True),
            )
        )

    steps = [p.step for p in asyncio.run(both())]
    assert sorted(s.value for s in steps) == sorted([Step.ROLL_OUT.value, Step.WAIT.value])
    assert len(world.api.patches) == 1


def test_a_sagemaker_update_failure_is_reported_and_the_rollout_stands(world: World) -> None:
    """The real update path: a file:// store is refused before any AWS call, as SageMaker reads only S3."""
    world.body["spec"]["sagemakerEndpoint"] = "resnet50-prod"
    world.reconcile(spec_changed=True)
    world.api.settle()
    world.reconcile()
    assert ("ModelDeployment", "Warning", "SageMakerNotUpdated") in [e[:3] for e in world.api.events]
    sm = world.status["sagemaker"]
    assert (sm["endpoint"], sm["version"], sm["outcome"]) == ("resnet50-prod", "1", "Failed")
    assert "not s3://" in sm["message"]
    assert world.status["phase"] == "Ready"


def test_a_sagemaker_update_follows_each_rollout_in_the_background(world: World) -> None:
    calls: list[tuple[str, str, str]] = []

    def update(endpoint: str, *, store: str, version: str, endpoint_url: str | None) -> None:
        calls.append((endpoint, store, version))

    world.runtime.sagemaker_updater = update
    world.body["spec"]["sagemakerEndpoint"] = "resnet50-prod"
    world.reconcile(spec_changed=True)
    assert calls == []  # nothing has rolled out yet
    world.api.settle()
    world.reconcile()
    assert calls == [("resnet50-prod", world.store_uri, "1")]
    assert ("ModelDeployment", "Normal", "SageMakerUpdated") in [e[:3] for e in world.api.events]
    assert world.status["sagemaker"]["outcome"] == "Updated"


def test_a_slow_sagemaker_update_does_not_hold_the_reconcile(world: World) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(endpoint: str, *, store: str, version: str, endpoint_url: str | None) -> None:
        started.set()
        assert release.wait(30)

    world.runtime.sagemaker_updater = slow
    world.body["spec"]["sagemakerEndpoint"] = "resnet50-prod"
    world.reconcile(spec_changed=True)
    world.api.settle()

    async def reconcile_while_updating() -> tuple[Plan, Plan]:
        first = await reconcile_object(runtime=world.runtime, state=world.state, body=world.body, spec_changed=False)
        await asyncio.to_thread(started.wait, 30)
        second = await reconcile_object(runtime=world.runtime, state=world.state, body=world.body, spec_changed=True)
        assert world.status["sagemaker"]["outcome"] == "Updating"
        release.set()
        await world.state[SAGEMAKER_TASK]
        return first, second

    first, second = asyncio.run(reconcile_while_updating())
    assert first.memory.current == "1" and second.memory.current == "1"
    assert world.status["sagemaker"]["outcome"] == "Updated"


def test_read_store(world: World, tmp_path: Path) -> None:
    spec = parse_spec(world.body["spec"])
    assert read_store(spec) == StoreView(("1", "2", "3"), "1")
    (tmp_path / "store" / "resnet50" / "channels" / "stable.json").write_text("not json")
    broken = read_store(spec)
    assert broken.versions is None and not broken.transient and "malformed channel pointer" in (broken.error or "")
    missing = read_store(parse_spec({**world.body["spec"], "store": (tmp_path / "nope").as_uri()}))
    assert missing.versions is None and missing.error


# ---- kopf wiring, settings, CLI ---------------------------------------------------------------------------
def test_handlers_are_registered_with_kopf() -> None:
    registry = kopf.get_default_registry()
    changing = {h.id for h in registry._changing.get_all_handlers()}
    spawning = {h.id for h in registry._spawning.get_all_handlers()}
    assert {"changed"} <= {i.split("/")[0] for i in changing}
    assert any(i.startswith("tick") for i in spawning)
    for h in [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]:
        if h.fn.__module__ == handlers.__name__:
            assert (h.selector.group, h.selector.version) == (GROUP, VERSION)
            assert PLURAL in (h.selector.plural, h.selector.any_name)


def test_kopf_settings() -> None:
    config = load_config(namespaces=["resnet-serving"], peering="resnet50-serving-operator", priority=7, environ={})
    s = build_settings(config)
    assert s.scanning.disabled and s.peering.mandatory and not s.peering.standalone
    assert (s.peering.name, s.peering.priority, s.peering.clusterwide) == ("resnet50-serving-operator", 7, False)
    assert s.persistence.finalizer.startswith("resnet-serving.io/")
    assert isinstance(s.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    standalone = build_settings(load_config(namespaces=["a"], standalone=True, environ={}))
    assert standalone.peering.standalone and not standalone.peering.mandatory


def test_config_from_the_environment() -> None:
    env = {
        "RESNET_SERVING_OPERATOR_NAMESPACES": "a, b,a",
        "RESNET_SERVING_OPERATOR_PEERING": "p",
        "RESNET_SERVING_OPERATOR_PRIORITY": "5",
        "RESNET_SERVING_OPERATOR_METRICS_PORT": "9000",
    }
    c = load_config(environ=env)
    assert (c.namespaces, c.peering, c.priority, c.metrics_port, c.metrics_host) == (
        ("a", "b"),
        "p",
        5,
        9000,
        "0.0.0.0",
    )
    assert load_config(environ={"POD_NAMESPACE": "ns"}).namespaces == ("ns",)
    assert load_config(namespaces=["x"], environ=env).namespaces == ("x",), "flags win"
    priorities = {load_config(namespaces=["x"], environ={}).priority for _ in range(5)}
    assert len(priorities) > 1, "replicas get distinct random priorities"


@pytest.mark.parametrize(
    ("kwargs", "env", "words"),
    [
        ({}, {}, "no namespace to watch"),
        ({"namespaces": ["x"], "all_namespaces": True}, {}, "not both"),
        ({"namespaces": ["Bad_NS"]}, {}, "invalid namespace"),
        ({"namespaces": ["x"], "peering": "Bad Name"}, {}, "invalid peering name"),
        ({"namespaces": ["x"]}, {"RESNET_SERVING_OPERATOR_PRIORITY": "high"}, "not an integer"),
        ({"namespaces": ["x"], "metrics_port": 70000}, {}, "out of range"),
    ],
)
def test_bad_config_fails_fast(kwargs: dict[str, Any], env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(environ=env, **kwargs)


def test_operator_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["operator", "-n", "a", "-n", "b", "--standalone", "--metrics-port", "0"])
    assert (args.command, args.namespaces, args.standalone, args.metrics_port) == ("operator", ["a", "b"], True, 0)


def test_startup_serves_metrics_and_health(world: World) -> None:
    from tests.helpers import free_port

    async def scenario() -> tuple[int, str, int]:
        import aiohttp

        port = free_port()
        runtime = Runtime(config=load_config(namespaces=["x"], metrics_host="127.0.0.1", metrics_port=port, environ={}))
        memo = kopf.Memo(runtime=runtime)
        await handlers.startup(memo=memo, settings=kopf.OperatorSettings(), logger=handlers.log)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                    ready = r.status
                async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                    kind = r.headers["Content-Type"]
        finally:
            await handlers.cleanup(memo=memo)
        assert runtime.server is None and not runtime.health.ready
        return ready, text + kind, port

    ready, text, _ = asyncio.run(scenario())
    assert ready == 200
    assert "# TYPE resnet_serving_operator_rollbacks_total counter" in text and "version=0.0.4" in text


def test_json_patch_applier_matches_rfc6902_for_the_ops_used() -> None:
    doc = {"a": {"b~c/d": 1}, "l": [1, 2]}
    out = apply_json_patch(
        doc, [{"op": "add", "path": "/a/b~0c~1d", "value": 2}, {"op": "add", "path": "/l/-", "value": 3}]
    )
    assert out == {"a": {"b~c/d": 2}, "l": [1, 2, 3]} and doc["l"] == [1, 2]
    with pytest.raises(ValueError):
        apply_json_patch(doc, [{"op": "test", "path": "/l/0", "value": 9}])
    assert json.dumps(out)


def test_the_operator_without_a_cluster_says_so_before_kopf_starts(tmp_path: Path) -> None:
    """No in-cluster token and no kubeconfig: a ConfigError naming both, not kopf's LoginError traceback."""
    from resnet_serving.controller.run import cluster_credentials

    token = tmp_path / "token"
    assert cluster_credentials({"HOME": str(tmp_path)}, token) is None
    assert cluster_credentials({"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}, token) is None
    token.write_text("t")
    assert cluster_credentials({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, token) == "in-cluster ServiceAccount"
    config = tmp_path / "kc"
    config.write_text("apiVersion: v1\n")
    assert (
        cluster_credentials({"KUBECONFIG": f"{tmp_path / 'none'}:{config}"}, tmp_path / "x") == f"kubeconfig {config}"
    )
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert cluster_credentials({"HOME": str(tmp_path)}, tmp_path / "x") == f"kubeconfig {tmp_path / '.kube' / 'config'}"


def test_the_operator_command_without_a_cluster_exits_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnet_serving.cli import main

    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["operator", "--standalone", "--namespace", "default"]) == 2
    err = capsys.readouterr().err
    assert "no Kubernetes cluster to talk to" in err and "kubeconfig" in err and "Traceback" not in err
