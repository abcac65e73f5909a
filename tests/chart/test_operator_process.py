"""The real `resnet-serving operator` process (kopf, peering, login, handlers, metrics) against a stand-in for
the Kubernetes API, and every request it makes checked against the chart's Role.

No Kubernetes API server can run on these machines. The stand-in is a small aiohttp server on loopback that
answers discovery, lists (its watches stay silent), GET/PATCH of the objects and Event creation the way the
API server does, and applies JSON and merge patches. The Deployment controller is simulated by setting the
Deployment's status. Everything else is real: the CLI, kopf with the settings the operator gives it, the
kubeconfig login, peering through a KopfPeering object, the store (file://), and the chart's rendered Role.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import urlopen

import pytest
from aiohttp import web

from resnet_serving.store import open_store
from tests.chart.chart_helpers import NAMESPACE, RELEASE, Helm, one
from tests.fixtures.archives import fake_archive
from tests.fixtures.json_patch import apply_json_patch
from tests.helpers import REPO, free_port

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


class FakeKubeAPI:
    """The API-server stand-in: one ModelDeployment, its Deployment, the peering object; records requests."""

    def __init__(self, store: str) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.events: list[dict[str, Any]] = []
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
        if resource == "events" and request.method == "POST":
            self.events.append(body)
            return web.json_response(body, status=201)
        obj = self.objects.get(resource)
        if obj is None or (name is not None and name != obj["metadata"]["name"]):
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            await asyncio.sleep(5)  # a quiet watch; kopf reconnects
            return response
        if name is None:
            return web.json_response({"kind": "List", "metadata": {"resourceVersion": "1"}, "items": [obj]})
        if request.method == "PATCH":
            with self.lock:
                if request.headers["Content-Type"] == "application/json-patch+json":
                    try:
                        patched = apply_json_patch(obj, body)
                    except ValueError as e:
                        return web.json_response({"kind": "Status", "code": 422, "message": str(e)}, status=422)
                    if patched.get("spec") != obj.get("spec"):
                        patched["metadata"]["generation"] += 1
                    obj = self.objects[resource] = patched
                else:
                    merge(obj, body)
                obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        return web.json_response(obj)

    def serve(self, port: int) -> Callable[[], None]:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(self.app(), access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        def stop() -> None:
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
            d = self.objects["deployments"]
            d["status"] = {**d["status"], "observedGeneration": d["metadata"]["generation"]}


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


def test_operator_process_rolls_out_within_its_rbac(
    world: tuple[FakeKubeAPI, int, Path], helm: Helm, tmp_path: Path
) -> None:
    api, _, kubeconfig = world
    metrics_port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "RESNET_SERVING_OPERATOR_TICK_SECONDS": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    log = tmp_path / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "resnet_serving", "operator", "-n", NAMESPACE, "--peering", OPERATOR,
             "--priority", "5", "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for("the rollout of v2", lambda: api.status().get("phase") == "Progressing", timeout=40, log=log)
        assert api.template_version() == "2"
        api.finish_rollout()
        ready = wait_for("Ready", lambda: (s := api.status()).get("phase") == "Ready" and s, timeout=20, log=log)
        assert ready["currentVersion"] == "2" and ready["observedGeneration"] == 1
        with urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'version="2"' in text and 'phase="Ready"' in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
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
