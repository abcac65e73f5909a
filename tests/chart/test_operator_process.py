"""The real `resnet-serving operator` process (kopf, peering, login, handlers, metrics) against a stand-in for
the Kubernetes API, and every request it makes checked against the chart's Role.

No Kubernetes API server can run on these machines, so the stand-in is the one mock here: a small aiohttp
server on loopback that answers discovery, lists, watches (every change after the resourceVersion asked for),
GET/PATCH of the objects and Event creation the way the API server does, and applies JSON and merge patches.
The Deployment controller is simulated by setting the Deployment's status. Everything else is real: the CLI,
kopf with the settings the operator gives it, the kubeconfig login, peering through a KopfPeering object, the
store (file://), and the chart's rendered Role.

The stand-in also injects the API server's failures (:class:`Fault`): 409 Conflict and 500 on PATCH, a PATCH
applied whose answer is lost (500 after the write), a watch ended by 410 Gone or cut mid-stream, and slow
answers. The fault tests run the same operator process against them and count the PATCH requests it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import urlopen

import pytest
from aiohttp import web

from resnet_serving.controller.reconcile import Memory, Phase
from resnet_serving.controller.status import render
from resnet_serving.store import open_store
from tests.fixtures.archives import fake_archive
from tests.fixtures.json_patch import apply_json_patch
from tests.helpers import REPO, free_port
from tests.helpers.chart import NAMESPACE, RELEASE, Helm, one

T = TypeVar("T")
OPERATOR = f"{RELEASE}-operator"
GROUPS = {
    "apps/v1": [("deployments", "Deployment", True)],
    "resnet-serving.io/v1alpha1": [
        ("modeldeployments", "ModelDeployment", True),
        ("modeldeployments/status", "ModelDeployment", True),
    ],
    "kopf.dev/v1": [("kopfpeerings", "KopfPeering", True)],
    "apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
}


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


@dataclass
class Fault:
    """One failure the stand-in injects into the next ``times`` requests that match ``method`` and ``resource``.

    ``method`` is an HTTP method, or ``WATCH`` for a watch stream. ``kind``:

    * ``conflict``: 409 Conflict, nothing written (another writer won);
    * ``error``: 500, nothing written;
    * ``lost``: the write is applied, then answered 500 (an etcd timeout after the commit, a proxy cut);
    * ``slow``: answered normally after ``delay`` seconds;
    * ``gone`` (``WATCH``): the open stream ends with a 410 Gone ERROR event: the client must list again;
    * ``drop`` (``WATCH``): the open stream's connection is cut: the client resumes from its resourceVersion.
    """

    method: str
    resource: str
    kind: str
    times: int = 1
    delay: float = 0.0
    hits: int = 0


@dataclass
class Seen:
    """One request the stand-in answered: what came in, what went out, whether it was written."""

    method: str
    path: str
    resource: str
    query: dict[str, str]
    body: Any
    status: int = 200
    applied: bool = False
    fault: str | None = None


@dataclass
class Change:
    resource: str
    rv: int
    obj: dict[str, Any] = field(repr=False)


GONE = {
    "type": "ERROR",
    "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired",
               "message": "too old resource version"},
}  # fmt: skip


def status_error(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    return web.json_response({**body, "message": message}, status=code)


class FakeKubeAPI:
    """The API-server stand-in: one ModelDeployment, its Deployment, the peering object; records requests.

    Writes bump one resourceVersion counter, as etcd's revision does, and open watches stream every change
    after the resourceVersion they asked for.
    """

    def __init__(self, store: str) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.seen: list[Seen] = []
        self.events: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.changes: list[Change] = []
        self.rv = 10
        meta = {"namespace": NAMESPACE, "resourceVersion": "10", "generation": 1}
        self.objects: dict[str, dict[str, Any]] = {
            "modeldeployments": {
                "apiVersion": "resnet-serving.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {**meta, "name": RELEASE, "uid": "md-uid"},
                "spec": {"store": store, "channel": "stable", "deployment": RELEASE, "pollInterval": "10s"},
            },
            "kopfpeerings": {
                "apiVersion": "kopf.dev/v1",
                "kind": "KopfPeering",
                "metadata": {**meta, "name": OPERATOR, "uid": "peering-uid"},
            },
            "deployments": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {**meta, "name": RELEASE, "uid": "deploy-uid"},
                "spec": {
                    "replicas": 2,
                    "template": {
                        "metadata": {"annotations": {"resnet-serving.io/model-version": ""}},
                        "spec": {
                            "initContainers": [
                                {
                                    "name": "fetch-model",
                                    "env": [
                                        {"name": "RESNET_SERVING_STORE", "value": store},
                                        {"name": "RESNET_SERVING_MODEL_VERSION", "value": ""},
                                    ],
                                }
                            ],
                            "containers": [{"name": "torchserve"}],
                        },
                    },
                },
                "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
            },
        }
        self.lock = threading.Lock()
        self.closing = False

    def discovery(self, path: str) -> dict[str, Any] | None:
        def resources(items: list[tuple[str, str, bool]]) -> list[dict[str, Any]]:
            verbs = ["get", "list", "watch", "patch", "create"]
            return [{"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": verbs} for n, k, ns in items]

        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/api/v1":
            core = [("namespaces", "Namespace", False), ("events", "Event", True)]
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources(core)}
        if path == "/apis":
            groups = []
            for gv in GROUPS:
                group, version = gv.split("/")
                entry = {"groupVersion": gv, "version": version}
                groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
            return {"kind": "APIGroupList", "groups": groups}
        for gv, items in GROUPS.items():
            if path == f"/apis/{gv}":
                return {"kind": "APIResourceList", "groupVersion": gv, "resources": resources(items)}
        return None

    def take(self, method: str, resource: str) -> Fault | None:
        """The armed fault for this request, counted as used (call with the lock held)."""
        for fault in self.faults:
            if fault.method == method and fault.resource == resource and fault.hits < fault.times:
                fault.hits += 1
                return fault
        return None

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def write(self, resource: str, obj: dict[str, Any]) -> None:
        """Store a changed object under a new resourceVersion and feed it to the watches (lock held)."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[resource] = obj
        self.changes.append(Change(resource, self.rv, copy.deepcopy(obj)))

    def edit(self, resource: str, change: Callable[[dict[str, Any]], None], *faults: Fault) -> None:
        """What `kubectl edit` does, with ``faults`` armed in the same step (so no watch sees one without the
        other). A spec change bumps the generation."""
        with self.lock:
            obj = copy.deepcopy(self.objects[resource])
            before = copy.deepcopy(obj.get("spec"))
            change(obj)
            if obj.get("spec") != before:
                obj["metadata"]["generation"] += 1
            self.faults.extend(faults)
            self.write(resource, obj)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = json.loads(await request.text()) if request.can_read_body else None
        with self.lock:
            self.requests.append((request.method, path, dict(request.query)))
        found = self.discovery(path)
        if found is not None:
            return web.json_response(found)
        parts = path.strip("/").split("/")
        # /api/v1/namespaces/NS/RES[/NAME[/SUB]] or /apis/G/V/namespaces/NS/RES[/NAME[/SUB]]
        rest = parts[4:] if parts[0] == "api" else parts[5:]
        resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
        sub = resource + (f"/{rest[2]}" if len(rest) > 2 else "")
        seen = Seen(request.method, path, sub, dict(request.query), body)
        with self.lock:
            self.seen.append(seen)
        if resource == "events" and request.method == "POST":
            self.events.append(body)
            return web.json_response(body, status=201)
        obj = self.objects.get(resource)
        if obj is None or (name is not None and name != obj["metadata"]["name"]):
            return status_error(404, "NotFound", f"{resource} {name} not found")
        if request.query.get("watch") == "true":
            return await self.watch(request, resource)
        with self.lock:
            fault = self.take(request.method, sub)
        seen.fault = fault.kind if fault else None
        if fault is not None and fault.kind == "slow":
            until = time.monotonic() + fault.delay
            while time.monotonic() < until and fault in self.faults:  # clear_faults() ends the wait
                await asyncio.sleep(0.05)
        if fault is not None and fault.kind in ("conflict", "error"):
            seen.status = 409 if fault.kind == "conflict" else 500
            if fault.kind == "conflict":
                return status_error(409, "Conflict", "the object has been modified; please apply your changes")
            return status_error(500, "InternalError", "etcdserver: request timed out")
        if name is None:
            return web.json_response({"kind": "List", "metadata": {"resourceVersion": str(self.rv)}, "items": [obj]})
        if request.method == "PATCH":
            with self.lock:
                patched = copy.deepcopy(obj)
                if request.headers["Content-Type"] == "application/json-patch+json":
                    try:
                        patched = apply_json_patch(obj, body)
                    except ValueError as e:
                        seen.status = 422
                        return status_error(422, "Invalid", str(e))
                    if patched.get("spec") != obj.get("spec"):
                        patched["metadata"]["generation"] += 1
                else:
                    merge(patched, body)
                self.write(resource, patched)
                obj = patched
                seen.applied = True
            if fault is not None and fault.kind == "lost":
                seen.status = 500
                return status_error(500, "InternalError", "etcdserver: request timed out")
        return web.json_response(obj)

    async def watch(self, request: web.Request, resource: str) -> web.StreamResponse:
        """A watch from ``?resourceVersion`` on: every later change of ``resource``, then the stream ends
        after a few seconds (kopf reconnects from the last resourceVersion it saw). An armed ``gone`` or
        ``drop`` fault ends the open stream its way."""
        sent = int(request.query.get("resourceVersion") or self.rv)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.closing:
            with self.lock:
                fault = self.take("WATCH", resource)
                pending = [c for c in self.changes if c.resource == resource and c.rv > sent]
            if fault is not None and fault.kind == "gone":
                await response.write(json.dumps(GONE).encode() + b"\n")
                return response
            if fault is not None and fault.kind == "drop":
                assert request.transport is not None
                request.transport.abort()
                return response
            try:
                for change in pending:
                    await response.write(json.dumps({"type": "MODIFIED", "object": change.obj}).encode() + b"\n")
                    sent = change.rv
            except ConnectionResetError:  # the operator went away
                return response
            await asyncio.sleep(0.05)
        return response

    def serve(self, port: int) -> Callable[[], None]:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(self.app(), access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        def stop() -> None:
            self.closing = True
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

        return stop

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", self.handle)
        return application

    def status(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.objects["modeldeployments"].get("status") or {})

    def template_version(self) -> str:
        with self.lock:
            return self.objects["deployments"]["spec"]["template"]["metadata"]["annotations"][
                "resnet-serving.io/model-version"
            ]

    def finish_rollout(self) -> None:
        """What the Deployment controller reports once the new pods are available."""
        with self.lock:
            d = copy.deepcopy(self.objects["deployments"])
            d["status"] = {**d["status"], "observedGeneration": d["metadata"]["generation"]}
            self.write("deployments", d)


def wait_for(what: str, probe: Callable[[], T], timeout: float = 30.0, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def rbac_request(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str, str | None] | None:
    """(apiGroup, resource, verb, name) of a resource request; None for discovery (non-resource URLs)."""
    parts = path.strip("/").split("/")
    if "namespaces" not in parts:
        return None
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2 :]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    name = rest[1] if len(rest) > 1 else None
    if method == "GET":
        verb = "watch" if query.get("watch") == "true" else ("get" if name else "list")
    else:
        verb = {"PATCH": "patch", "POST": "create", "PUT": "update", "DELETE": "delete"}[method]
    return group, resource, verb, name


def allowed(role: dict[str, Any], group: str, resource: str, verb: str, name: str | None) -> bool:
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or name in names:
                return True
    return False


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeKubeAPI, int, Path]]:
    root = tmp_path / "store"
    root.mkdir()
    store = open_store(root.as_uri())
    for v in ("1", "2"):
        archive, manifest = fake_archive(tmp_path / "build" / v, v, size=128)
        store.push(archive, manifest)
    store.set_channel("resnet50", "stable", "2")
    api = FakeKubeAPI(root.as_uri())
    port = free_port()
    stop = api.serve(port)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t0ken}}]\n"
        f"contexts: [{{name: fake, context: {{cluster: fake, user: u, namespace: {NAMESPACE}}}}}]\n"
    )
    try:
        yield api, port, kubeconfig
    finally:
        stop()


@contextlib.contextmanager
def operator_process(kubeconfig: Path, log: Path, metrics_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`resnet-serving operator` against the stand-in, ticking every second; stopped with SIGTERM on exit."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "RESNET_SERVING_OPERATOR_TICK_SECONDS": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "resnet_serving", "operator", "-n", NAMESPACE, "--peering", OPERATOR,
             "--priority", "5", "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_operator_process_rolls_out_within_its_rbac(
    world: tuple[FakeKubeAPI, int, Path], helm: Helm, tmp_path: Path
) -> None:
    api, _, kubeconfig = world
    metrics_port = free_port()
    log = tmp_path / "operator.log"
    with operator_process(kubeconfig, log, metrics_port) as proc:
        wait_for("the rollout of v2", lambda: api.status().get("phase") == "Progressing", timeout=40, log=log)
        assert api.template_version() == "2"
        api.finish_rollout()
        ready = wait_for("Ready", lambda: (s := api.status()).get("phase") == "Ready" and s, timeout=20, log=log)
        assert ready["currentVersion"] == "2" and ready["observedGeneration"] == 1
        with urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'version="2"' in text and 'phase="Ready"' in text
    output = log.read_text()
    assert proc.returncode == 0, output
    reasons = [e["reason"] for e in api.events]
    assert {"Adopted", "RolloutStarted", "RolloutSucceeded"} <= set(reasons), output
    kinds = {e["involvedObject"]["kind"] for e in api.events if e["reason"] == "RolloutStarted"}
    assert kinds == {"ModelDeployment", "Deployment"}
    # Peering: this replica wrote its heartbeat with its priority, and removed it on the way out.
    patches = [r for r in api.requests if r[0] == "PATCH" and r[1].endswith(f"/kopfpeerings/{OPERATOR}")]
    assert len(patches) >= 2
    assert api.objects["kopfpeerings"].get("status", {}) == {}
    # kopf's finalizer, under the operator's prefix, so the timer stops before a ModelDeployment goes.
    assert api.objects["modeldeployments"]["metadata"]["finalizers"] == ["resnet-serving.io/operator"]

    role = one(helm.template([], sets=["operator.enabled=true"]), "Role", OPERATOR)
    denied = []
    for method, path, query in api.requests:
        req = rbac_request(method, path, query)
        if req is not None and not allowed(role, *req):
            denied.append(req)
    assert not denied, f"requests the chart's Role would refuse: {sorted(set(denied))}"
    used = {rbac_request(*r)[:3] for r in api.requests if rbac_request(*r)}  # type: ignore[index]
    assert ("apps", "deployments", "patch") in used and (
        "resnet-serving.io",
        "modeldeployments/status",
        "patch",
    ) in used


# ---- faults of the API server ----------------------------------------------------------------------------
ALWAYS = 10**6
V1_STATUS_MESSAGE = "v1 runs (seeded: a previous operator run rolled it out)"


def seed_v1(api: FakeKubeAPI) -> None:
    """The state a previous operator run left: the Deployment runs v1, the ModelDeployment's status says so.

    A reconcile then starts from a remembered status, as after an operator restart, and the channel (v2) asks
    for a rollout."""
    with api.lock:
        d = api.objects["deployments"]
        d["spec"]["template"]["metadata"]["annotations"]["resnet-serving.io/model-version"] = "1"
        d["spec"]["template"]["spec"]["initContainers"][0]["env"][1]["value"] = "1"
        memory = Memory(
            adopted=True, applied="1", current="1", desired="1", target="1", phase=Phase.READY,
            reason="UpToDate", message=V1_STATUS_MESSAGE,
        )  # fmt: skip
        now = datetime.now(timezone.utc) - timedelta(hours=1)
        api.objects["modeldeployments"]["status"] = render(memory, now=now, generation=1)


def version_written(seen: Seen) -> str:
    """The model version a Deployment JSON patch writes into the pod template annotation."""
    (value,) = [op["value"] for op in seen.body if op["path"].endswith("resnet-serving.io~1model-version")]
    return str(value)


def patches(api: FakeKubeAPI, resource: str) -> list[Seen]:
    with api.lock:
        return [r for r in api.seen if r.method == "PATCH" and r.resource == resource]


def assert_nothing_patched_twice(api: FakeKubeAPI) -> None:
    """No identical Deployment or status patch was applied twice (a re-sent request that failed is a retry)."""
    for resource in ("deployments", "modeldeployments/status"):
        bodies = [json.dumps(r.body, sort_keys=True) for r in patches(api, resource) if r.applied]
        repeated = {b for b in bodies if bodies.count(b) > 1}
        assert not repeated, f"{resource}: the same patch applied more than once: {repeated}"


def pin(spec: dict[str, Any], version: str | None) -> None:
    """Pin ``version`` (the spec then names no channel), or follow channel stable again."""
    if version is None:
        spec.pop("version", None)
        spec["channel"] = "stable"
    else:
        spec.pop("channel", None)
        spec["version"] = version


def reasons(api: FakeKubeAPI, kind: str = "ModelDeployment") -> list[str]:
    return [e["reason"] for e in api.events if e["involvedObject"]["kind"] == kind]


def converge(api: FakeKubeAPI, version: str, log: Path, timeout: float = 30) -> dict[str, Any]:
    """Wait for the template to ask for ``version``, finish the rollout as the Deployment controller would, and
    wait for phase Ready on it; then two more ticks, so a late repeated patch would still be seen."""
    wait_for(f"the pod template at v{version}", lambda: api.template_version() == version, timeout=timeout, log=log)
    wait_for("phase Progressing", lambda: api.status().get("phase") == "Progressing", timeout=timeout, log=log)
    api.finish_rollout()
    ready = wait_for(
        f"Ready at v{version}",
        lambda: (s := api.status()).get("phase") == "Ready" and s.get("currentVersion") == version and s,
        timeout=timeout,
        log=log,
    )
    time.sleep(2.0)
    return ready


PATCH_FAULTS = {
    # name: (faults, Deployment PATCH requests the stand-in should see in all)
    "409-conflict": ([Fault("PATCH", "deployments", "conflict")], 2),
    # three 500s exhaust kopf's in-request retries (three attempts), so the reconcile itself fails, both on the
    # Deployment and, in the next reconcile, on the status after the Deployment patch went through.
    "500-errors": (
        [Fault("PATCH", "deployments", "error", times=3), Fault("PATCH", "modeldeployments/status", "error", times=3)],
        4,
    ),
    # applied, answered 500: kopf re-sends it, the resourceVersion test answers 422, the operator reads again.
    "500-after-write": ([Fault("PATCH", "deployments", "lost")], 2),
    "slow-2s": (
        [
            Fault("PATCH", "deployments", "slow", times=ALWAYS, delay=2.0),
            Fault("PATCH", "modeldeployments/status", "slow", times=ALWAYS, delay=2.0),
        ],
        1,
    ),
}


@pytest.mark.parametrize("case", list(PATCH_FAULTS))
def test_operator_rolls_out_once_through_api_faults(
    world: tuple[FakeKubeAPI, int, Path], tmp_path: Path, case: str
) -> None:
    """From a remembered v1, the channel asks for v2 while the API server fails the way ``case`` says: the
    rollout converges (pod template v2, status Ready at v2), the v2 patch is applied once, no status patch is
    applied twice, and nothing is taken for a manual change (no drift)."""
    api, _, kubeconfig = world
    faults, requests = PATCH_FAULTS[case]
    seed_v1(api)
    api.inject(*faults)
    log = tmp_path / "operator.log"
    started = time.monotonic()
    with operator_process(kubeconfig, log, free_port()) as proc:
        ready = converge(api, "2", log)
        api.clear_faults()  # so the operator's shutdown waits for no slow answer
    output = log.read_text()
    assert proc.returncode == 0, output
    assert all(f.hits == f.times or (f.times == ALWAYS and f.hits > 0) for f in faults), (faults, output)
    deployment = patches(api, "deployments")
    assert [version_written(r) for r in deployment if r.applied] == ["2"], output
    assert len(deployment) == requests, [(r.status, r.fault) for r in deployment]
    assert_nothing_patched_twice(api)
    assert ready["appliedVersion"] == "2" and ready["failedVersions"] == [] and "drift" not in ready
    md = reasons(api)
    assert md.count("RolloutStarted") == 1 and md.count("RolloutSucceeded") == 1, md
    assert "DriftDetected" not in md, output
    statuses = patches(api, "modeldeployments/status")
    print(f"{case}: converged in {time.monotonic() - started:.1f}s; PATCH requests: {len(deployment)} Deployment, "
          f"{len(statuses)} status ({sum(r.applied for r in statuses)} applied)")  # fmt: skip


def test_operator_follows_spec_changes_across_a_410_and_a_cut_watch(
    world: tuple[FakeKubeAPI, int, Path], tmp_path: Path
) -> None:
    """The ModelDeployment watch ends with 410 Gone just as the spec is pinned to v1: kopf lists again, sees the
    new spec and rolls v1 out. Then the watch's connection is cut just as the pin is removed: kopf resumes the
    watch from its last resourceVersion (no new list), sees the change and rolls the channel's v2 out again.
    Each version is patched once per rollout."""
    api, _, kubeconfig = world
    seed_v1(api)
    log = tmp_path / "operator.log"

    def lists() -> int:
        with api.lock:
            return sum(1 for r in api.seen if r.resource == "modeldeployments" and r.method == "GET" and
                       "watch" not in r.query)  # fmt: skip

    with operator_process(kubeconfig, log, free_port()) as proc:
        converge(api, "2", log)
        listed = lists()
        gone = Fault("WATCH", "modeldeployments", "gone")
        api.edit("modeldeployments", lambda md: pin(md["spec"], "1"), gone)
        converge(api, "1", log)
        assert gone.hits == 1 and lists() > listed, "kopf did not list again after 410 Gone"

        listed = lists()
        with api.lock:
            resumes_before = len(api.seen)
        drop = Fault("WATCH", "modeldeployments", "drop")
        api.edit("modeldeployments", lambda md: pin(md["spec"], None), drop)
        converge(api, "2", log)
        assert drop.hits == 1 and lists() == listed, "kopf listed again after a cut watch instead of resuming"
        with api.lock:
            resumed = [r for r in api.seen[resumes_before:] if r.resource == "modeldeployments" and
                       r.query.get("watch") == "true" and r.query.get("resourceVersion")]  # fmt: skip
        assert resumed, "no watch resumed from a resourceVersion after the cut"
    output = log.read_text()
    assert proc.returncode == 0, output
    assert [version_written(r) for r in patches(api, "deployments") if r.applied] == ["2", "1", "2"], output
    assert_nothing_patched_twice(api)
    assert "DriftDetected" not in reasons(api), output
