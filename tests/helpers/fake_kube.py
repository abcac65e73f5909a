"""A fake Kubernetes API server for running the operator end to end: no API server can run here, so this stands in.

It answers, on 127.0.0.1, exactly what kopf and the operator ask of a cluster, and nothing more:

* **discovery**: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>`` and ``/apis/<group>/<version>``
  for the built-in kinds below and for the CRDs given (their names, scope and subresources come from the CRD);
* **objects**: get, list, create (``generateName`` too), replace, delete, and patch as JSON merge patch (RFC 7386)
  or JSON patch (RFC 6902, a failed ``test`` is a 422); a strategic merge or apply patch is answered 415. The
  ``status`` subresource behaves as the API server's: the main resource ignores ``.status``, ``/status`` changes
  nothing else. ``resourceVersion`` (one counter, as etcd's) and ``generation`` (spec changes) move as a real
  server moves them; a write that changes nothing changes neither;
* **watch**: ``?watch=true`` streams JSON lines: the events after ``resourceVersion``, else ADDED for every object,
  then ADDED/MODIFIED/DELETED as writes happen, until ``timeoutSeconds``, the client leaves or the fake stops;
* **errors** as ``Status`` objects: 401 (wrong token), 404 (no such object, and any path the fake does not know),
  409 (exists, stale resourceVersion), 422, 400, 405, 415.

Built-in kinds: Namespaces, Events (v1), Deployments (apps/v1) and CustomResourceDefinitions. With
``deployment_controller=True`` it also stands in for the Deployment controller: every new Deployment generation is
reported rolled out at once (status: all replicas updated and available). No pods, no scheduling.

Not faked: admission (the CRD's OpenAPI schema, defaulting, pruning, webhooks), RBAC, field and label selectors,
server-side apply, list chunking, bookmarks, 410 Gone, peering objects (tests/chart/test_operator_process.py has
a stand-in of its own for peering, the chart's Role and injected faults). Every request is recorded
(:attr:`FakeKube.requests`), and those it could not route (:attr:`FakeKube.unknown`), for the tests' assertions.

The end of this module is the scenario that tests/integration/test_operator_fake_api.py (the operator on the host)
and tests/images/test_operator_image.py (the operator image) both run: the chart's Deployment and one
ModelDeployment following a store where v1 is on the ``stable`` channel.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import jsonpatch
import yaml
from aiohttp import web

from resnet_serving import MODEL_NAME
from resnet_serving.controller import spec
from resnet_serving.settings import ENV_VERSION
from tests.helpers import chart

T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
#: Seconds the test thread waits for the fake's own event loop to answer a call.
CALL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Kind:
    """One resource the fake serves (what discovery reports for it)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_generation: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


BUILTIN = (
    Kind("", "v1", "namespaces", "Namespace", False, ("status",), ("ns",), has_generation=False),
    Kind("", "v1", "events", "Event", True, (), ("ev",), has_generation=False),
    Kind("apps", "v1", "deployments", "Deployment", True, ("status", "scale"), ("deploy",), ("all",)),
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("status",),
        ("crd", "crds"),
    ),
)


def kinds_of_crd(crd: Mapping[str, Any]) -> list[Kind]:
    """The resources a CRD serves, one per served version."""
    spec, names = crd["spec"], crd["spec"]["names"]
    return [
        Kind(
            spec["group"],
            v["name"],
            names["plural"],
            names["kind"],
            spec["scope"] == "Namespaced",
            tuple(v.get("subresources") or {}),
            tuple(names.get("shortNames") or ()),
            tuple(names.get("categories") or ()),
        )
        for v in spec["versions"]
        if v.get("served", True)
    ]


@dataclass
class Request:
    """One request as the fake saw it, and the status it answered."""

    method: str
    path: str
    query: str
    content_type: str
    body: Any
    status: int = 0
    streamed: int = 0
    """Watch events sent on this request's stream."""

    def __str__(self) -> str:
        url = self.path + (f"?{self.query}" if self.query else "")
        body = "" if self.body is None else " " + json.dumps(self.body, sort_keys=True)[:300]
        events = f" ({self.streamed} events)" if self.streamed else ""
        return f"{self.method} {url} [{self.content_type or '-'}] -> {self.status}{events}{body}"


class ApiError(Exception):
    """Answered as a ``Status`` object, the way the API server reports failures."""

    def __init__(self, code: int, reason: str, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.unknown = unknown
        """A path the fake does not serve (recorded in :attr:`FakeKube.unknown`), not a missing object."""

    def response(self) -> web.Response:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        return web.json_response(body, status=self.code)


@dataclass(eq=False)  # each watch is itself, in a set
class _Watch:
    kind: Kind
    namespace: str | None
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def wants(self, kind: Kind, obj: Mapping[str, Any]) -> bool:
        return kind == self.kind and self.namespace in (None, obj["metadata"].get("namespace"))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge member by member, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKube:
    """The fake API server, in a background thread with its own event loop. Use it as a context manager.

    ``create``/``get``/``objects`` run on the fake's loop, so a test may call them while a client watches.
    """

    def __init__(self, *, crds: Iterable[Mapping[str, Any]] = (), deployment_controller: bool = False) -> None:
        self.crds = [dict(c) for c in crds]
        self.kinds = list(BUILTIN) + [k for c in self.crds for k in kinds_of_crd(c)]
        self.deployment_controller = deployment_controller
        self.token = secrets.token_hex(16)
        self.requests: list[Request] = []
        self.unknown: list[Request] = []
        self.port = 0
        self._objects: dict[tuple[Kind, str | None, str], dict[str, Any]] = {}
        self._history: list[tuple[int, Kind, dict[str, Any]]] = []  # (resourceVersion, kind, watch event)
        self._watches: set[_Watch] = set()
        self._rv = 100
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-kube", daemon=True)
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()  # the request record is read from the test thread

    # ---- life cycle --------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeKube:
        self._thread.start()
        self._call(self._start())
        for crd in self.crds:
            self.create({**crd, "status": {"conditions": [{"type": "Established", "status": "True"}]}})
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CALL_TIMEOUT_S)
            self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Watch handlers end when told (stop), so a short shutdown timeout loses nothing.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        for watch in self._watches:
            watch.queue.put_nowait(None)  # ends each stream cleanly (a terminated chunked response)
        await asyncio.sleep(0.1)
        if self._runner is not None:
            await self._runner.cleanup()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for this server and its token (what kopf's kubeconfig login reads), readable by all."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        path.chmod(0o644)  # a container's non-root user reads it through a bind mount
        return path

    # ---- the test's side -----------------------------------------------------------------------------------
    def kind(self, api_version: str, kind: str) -> Kind:
        found = [k for k in self.kinds if k.api_version == api_version and k.kind == kind]
        if not found:
            raise KeyError(f"the fake serves no {kind} in {api_version}")
        return found[0]

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object as a client's POST would (its namespace must exist); the stored copy."""
        kind = self.kind(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace") if kind.namespaced else None

        async def create() -> dict[str, Any]:
            return self._create(kind, namespace, copy.deepcopy(dict(obj)))

        return self._call(create())

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        k = self.kind(api_version, kind)

        async def get() -> dict[str, Any] | None:
            found = self._objects.get((k, namespace if k.namespaced else None, name))
            return copy.deepcopy(found)

        return self._call(get())

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        k = self.kind(api_version, kind)

        async def listed() -> list[dict[str, Any]]:
            return copy.deepcopy(self._list(k, namespace))

        return self._call(listed())

    def report(self, last: int = 80) -> str:
        """The request record for an assertion message: the unknown paths first, then the last requests."""
        with self._lock:
            unknown, seen = list(self.unknown), list(self.requests)
        lines = [f"requests the fake could not route ({len(unknown)}):", *map(str, unknown)]
        lines += [f"last {min(last, len(seen))} of {len(seen)} requests:", *map(str, seen[-last:])]
        return "\n".join(lines)

    # ---- the store -----------------------------------------------------------------------------------------
    def _list(self, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
        return [
            o
            for (k, ns, _), o in sorted(self._objects.items(), key=lambda i: (i[0][1] or "", i[0][2]))
            if k == kind and namespace in (None, ns)
        ]

    def _commit(self, kind: Kind, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store (or drop) an object with a new resourceVersion and tell the watches."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if event == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        self._history.append((self._rv, kind, {"type": event, "object": copy.deepcopy(obj)}))
        for watch in self._watches:
            if watch.wants(kind, obj):
                watch.queue.put_nowait({"type": event, "object": copy.deepcopy(obj)})
        if kind.kind == "Deployment" and event != "DELETED" and self.deployment_controller:
            asyncio.get_running_loop().call_soon(self._roll_out, key)
        return copy.deepcopy(obj)

    def _create(self, kind: Kind, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the request's")
            if (self.kind("v1", "Namespace"), None, namespace) not in self._objects:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", "metadata.name or metadata.generateName is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if (kind, namespace, meta["name"]) in self._objects:
            raise ApiError(409, "AlreadyExists", f'{kind.plural}.{kind.group} "{meta["name"]}" already exists')
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
        if kind.has_generation:
            meta["generation"] = 1
        if kind.kind == "Deployment":
            obj.setdefault("spec", {}).setdefault("replicas", 1)  # the API server's default
        return self._commit(kind, "ADDED", obj)

    def _update(self, kind: Kind, old: dict[str, Any], new: Any, subresource: str | None) -> dict[str, Any]:
        """Replace ``old`` by ``new`` (a PUT, or a patch's result) as the API server would."""
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise ApiError(422, "Invalid", "the object has no metadata")
        rv = new["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        for identity in ("name", "namespace", "uid", "creationTimestamp"):
            if new["metadata"].get(identity) != old["metadata"].get(identity):
                raise ApiError(422, "Invalid", f"metadata.{identity}: field is immutable")
        if subresource == "status":  # /status changes .status and nothing else
            new = {**copy.deepcopy(old), "status": new.get("status")}
            if new["status"] is None:
                del new["status"]
        elif "status" in kind.subresources:  # the main resource ignores .status
            new = {key: value for key, value in new.items() if key != "status"}
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if kind.has_generation:
            new["metadata"]["generation"] = old["metadata"]["generation"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write: no new resourceVersion, no event
        unchanged = ("metadata", "status") if "status" in kind.subresources else ("metadata",)
        if kind.has_generation and any(new.get(k) != old.get(k) for k in {*new, *old} - set(unchanged)):
            new["metadata"]["generation"] += 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._commit(kind, "DELETED", new)  # the last finalizer is gone
        return self._commit(kind, "MODIFIED", new)

    def _roll_out(self, key: tuple[Kind, str | None, str]) -> None:
        """The Deployment controller's part, done at once: the current generation runs on every replica."""
        obj = self._objects.get(key)
        if obj is None:
            return
        generation, replicas = obj["metadata"]["generation"], obj["spec"].get("replicas", 1)
        if (obj.get("status") or {}).get("observedGeneration") == generation:
            return
        status = {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        self._update(key[0], obj, {**copy.deepcopy(obj), "status": status}, "status")

    # ---- HTTP ----------------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text() if request.can_read_body else ""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        seen = Request(request.method, request.path, request.query_string, request.content_type if raw else "", body)
        with self._lock:
            self.requests.append(seen)
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            response = await self._route(request, body, seen)
        except ApiError as e:
            response = e.response()
            if e.unknown:
                with self._lock:
                    self.unknown.append(seen)
        except Exception as e:  # a bug of the fake, reported to the client as the server's
            response = ApiError(500, "InternalError", f"fake API server: {type(e).__name__}: {e}").response()
        seen.status = response.status
        return response

    async def _route(self, request: web.Request, body: Any, seen: Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        unknown = ApiError(404, "NotFound", f"the fake does not serve {request.method} {request.path}", unknown=True)
        if parts == ["version"]:
            return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "fake"})
        if parts == ["api"]:
            return web.json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                    ],
                }
            )
        if parts == ["apis"]:
            groups = sorted({k.group for k in self.kinds if k.group})
            return web.json_response(
                {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group(g) for g in groups]}
            )
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) == 2 and any(k.group == parts[1] for k in self.kinds):
            return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1])})
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise unknown
        served = [k for k in self.kinds if (k.group, k.version) == (group, version)]
        if not served:
            raise unknown
        if not rest:
            return web.json_response(self._resource_list(group, version, served))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and any(k.plural == rest[2] and k.namespaced for k in served):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise unknown
        plural, name, sub = [*rest, None, None][:3]
        kind = next((k for k in served if k.plural == plural), None)
        if kind is None or (sub is not None and sub not in kind.subresources):
            raise unknown
        if kind.namespaced and name is not None and namespace is None:
            raise unknown
        if name is None:
            return await self._collection(request, kind, namespace, body, seen)
        return self._object(request, kind, namespace, name, sub, body)

    def _group(self, group: str) -> dict[str, Any]:
        versions = sorted({k.version for k in self.kinds if k.group == group})
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _resource_list(self, group: str, version: str, served: list[Kind]) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for k in served:
            resources.append(
                {
                    "name": k.plural,
                    "singularName": k.singular,
                    "namespaced": k.namespaced,
                    "kind": k.kind,
                    "verbs": VERBS,
                    "shortNames": list(k.short_names),
                    "categories": list(k.categories),
                }
            )
            resources += [
                {
                    "name": f"{k.plural}/{s}",
                    "singularName": "",
                    "namespaced": k.namespaced,
                    "kind": "Scale" if s == "scale" else k.kind,
                    "verbs": ["get", "patch", "update"],
                }
                for s in k.subresources
            ]
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    async def _collection(
        self, request: web.Request, kind: Kind, namespace: str | None, body: Any, seen: Request
    ) -> web.StreamResponse:
        query = request.query
        for unsupported in ("labelSelector", "fieldSelector", "limit", "continue"):
            if query.get(unsupported):
                raise ApiError(400, "BadRequest", f"the fake does not implement {unsupported}")
        if request.method == "GET" and query.get("watch") in ("true", "1"):
            return await self._watch(request, kind, namespace, seen)
        if request.method == "GET":
            items = copy.deepcopy(self._list(kind, namespace))
            return web.json_response(
                {
                    "kind": f"{kind.kind}List",
                    "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": items,
                }
            )
        if request.method == "POST":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body is not a JSON object")
            if kind.namespaced and namespace is None:
                raise ApiError(404, "NotFound", f"the fake does not serve POST {request.path}", unknown=True)
            return web.json_response(self._create(kind, namespace, body), status=201)
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on a collection")

    def _object(
        self, request: web.Request, kind: Kind, namespace: str | None, name: str, sub: str | None, body: Any
    ) -> web.Response:
        if sub == "scale":
            raise ApiError(404, "NotFound", f"the fake does not serve {request.method} {request.path}", unknown=True)
        old = self._objects.get((kind, namespace, name))
        if old is None:
            raise ApiError(404, "NotFound", f'{kind.plural}.{kind.group or "core"} "{name}" not found')
        if request.method == "GET":
            return web.json_response(old)
        if request.method == "PUT":
            return web.json_response(self._update(kind, old, body, sub))
        if request.method == "PATCH":
            return web.json_response(self._update(kind, old, self._patched(request, old, body), sub))
        if request.method == "DELETE" and sub is None:
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return web.json_response(old, status=202)
                marked = copy.deepcopy(old)
                marked["metadata"]["deletionTimestamp"] = _now()
                return web.json_response(self._commit(kind, "MODIFIED", marked), status=202)
            return web.json_response(self._commit(kind, "DELETED", copy.deepcopy(old)))
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}")

    def _patched(self, request: web.Request, old: dict[str, Any], body: Any) -> Any:
        kind = request.content_type
        if kind == MERGE_PATCH:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            return merge_patch(old, body)
        if kind == JSON_PATCH:
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "a JSON patch must be a JSON array")
            try:
                return jsonpatch.apply_patch(old, body)
            except jsonpatch.InvalidJsonPatch as e:
                raise ApiError(400, "BadRequest", f"invalid JSON patch: {e}") from e
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:  # a failed test, a bad path
                raise ApiError(422, "Invalid", f"the JSON patch does not apply: {e}") from e
        raise ApiError(415, "UnsupportedMediaType", f"the fake does not implement {kind or 'this'} patches")

    async def _watch(
        self, request: web.Request, kind: Kind, namespace: str | None, seen: Request
    ) -> web.StreamResponse:
        since = request.query.get("resourceVersion")
        watch = _Watch(kind, namespace)
        if since and since != "0":  # what happened after it (the fake keeps its whole history: never 410 Gone)
            backlog = [e for rv, k, e in self._history if rv > int(since) and watch.wants(k, e["object"])]
        else:
            backlog = [{"type": "ADDED", "object": o} for o in self._list(kind, namespace)]
        for event in backlog:
            watch.queue.put_nowait(copy.deepcopy(event))
        self._watches.add(watch)  # no await since the backlog was read: no write falls between the two
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        timeout = float(request.query.get("timeoutSeconds") or 3600)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            await response.prepare(request)
            seen.status = response.status
            while True:
                left = deadline - asyncio.get_running_loop().time()
                try:
                    item = await asyncio.wait_for(watch.queue.get(), timeout=max(left, 0))
                except TimeoutError:
                    break
                if item is None:
                    break
                await response.write(json.dumps(item).encode() + b"\n")
                seen.streamed += 1
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):  # the client went away
            pass
        finally:
            self._watches.discard(watch)
        return response


# ---- the operator scenario both operator tests run (the host process, the image) -----------------------------
#: Where the chart renders the serving Deployment, and the ModelDeployment the tests create beside it.
NAMESPACE = chart.NAMESPACE
DEPLOYMENT = chart.RELEASE
MODEL_DEPLOYMENT = "resnet50"
CHANNEL = "stable"
CRD_FILE = chart.CHART / "crds" / f"{spec.PLURAL}.{spec.GROUP}.yaml"


def model_deployment_crd() -> dict[str, Any]:
    """The chart's ModelDeployment CRD (what the fake's discovery reports for the kind)."""
    return dict(yaml.safe_load(CRD_FILE.read_text(encoding="utf-8")))


def chart_deployment(helm: str, store: str) -> dict[str, Any]:
    """The serving Deployment as `helm template` renders it from the chart's defaults, reading ``store``."""
    docs = chart.Helm(helm).template([], sets=[f"model.store={store}"], skip_tests=True)
    return chart.deployment(docs)


def operator_grace_seconds(helm: str) -> int:
    """The operator pods' terminationGracePeriodSeconds as the chart renders it (SIGTERM to SIGKILL)."""
    docs = chart.Helm(helm).template([], sets=["operator.enabled=true"], skip_tests=True)
    (operator,) = [d for d in chart.find(docs, "Deployment") if d["metadata"]["name"].endswith("-operator")]
    return int(operator["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def publish(store: str, endpoint_url: str, work: Path, version: str = "1") -> None:
    """Push a small archive (random bytes, a real manifest: the operator reads only manifests and channels) as
    ``version`` and point the channel at it, as `resnet-serving push` and `promote` do."""
    from resnet_serving.store import open_store
    from tests.fixtures.archives import fake_archive

    archive, manifest = fake_archive(work / f"v{version}", version)
    s = open_store(store, endpoint_url=endpoint_url)
    s.push(archive, manifest)
    s.set_channel(MODEL_NAME, CHANNEL, version)


def seed(fake: FakeKube, deployment: Mapping[str, Any], store: str) -> None:
    """The cluster as an install leaves it: the namespace, the chart's Deployment, one ModelDeployment."""
    fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    fake.create(deployment)
    fake.create({
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": MODEL_DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {"store": store, "deployment": DEPLOYMENT, "channel": CHANNEL},
    })  # fmt: skip


def condition(obj: Mapping[str, Any], type_: str) -> str | None:
    """The ``status`` of condition ``type_`` in an object's status, if present."""
    found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_]
    return found[0].get("status") if found else None


def rollout(fake: FakeKube) -> dict[str, Any]:
    """What the operator wrote so far: the pod template's version (annotation, init container env) and the
    ModelDeployment's status."""
    dep = fake.get("apps/v1", "Deployment", DEPLOYMENT, NAMESPACE) or {}
    md = fake.get(spec.API_VERSION, spec.KIND, MODEL_DEPLOYMENT, NAMESPACE) or {}
    template = dep.get("spec", {}).get("template", {})
    inits = [c for c in template.get("spec", {}).get("initContainers", []) if c["name"] == spec.DEFAULT_CONTAINER]
    env = {e["name"]: e.get("value") for c in inits for e in c.get("env", [])}
    status = md.get("status") or {}
    return {
        "annotation": (template.get("metadata", {}).get("annotations") or {}).get(spec.VERSION_ANNOTATION),
        "env": env.get(ENV_VERSION),
        "phase": status.get("phase"),
        "applied": status.get("appliedVersion"),
        "current": status.get("currentVersion"),
        "ready": condition(md, "Ready"),
        "finalizers": md.get("metadata", {}).get("finalizers"),
        "annotations": sorted(md.get("metadata", {}).get("annotations") or {}),
    }


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    gone: Callable[[], str | None],
    details: Callable[[], str] = str,
) -> T:
    """Poll ``check`` until it returns something. Fail, saying ``what`` and then ``details()`` (logs, the request
    record), after ``timeout`` seconds or as soon as ``gone()`` says why the process under test is no more."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        why = gone()
        assert why is None, f"{what}: {why}\n{details()}"
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s\n{details()}"
        time.sleep(0.2)


def wait_for_v1(
    fake: FakeKube, t0: float, budget: float, gone: Callable[[], str | None], details: Callable[[], str]
) -> tuple[dict[str, Any], dict[str, Any], float, float]:
    """Wait until the operator has asked the pod template for v1, then until the status says v1 runs; return both
    states and the seconds from ``t0`` to each, failing with ``details()`` past ``budget`` seconds in all."""

    def state(**want: object) -> dict[str, Any] | None:
        now = rollout(fake)
        return now if all(now[k] == v for k, v in want.items()) else None

    patched = wait_for("the pod template never asked for v1", lambda: state(annotation="1", env="1"), budget, gone,
                       details)  # fmt: skip
    t_patched = time.monotonic() - t0
    ready = wait_for("the status never said v1 runs",
                     lambda: state(phase="Ready", current="1", applied="1", ready="True"),
                     budget - t_patched, gone, details)  # fmt: skip
    return patched, ready, t_patched, time.monotonic() - t0


def assert_rollout_events(events: list[dict[str, Any]]) -> None:
    """The Events one successful rollout posts: started on both objects, succeeded on the ModelDeployment."""
    reasons = {(e["involvedObject"]["kind"], e["reason"]) for e in events}
    assert {("ModelDeployment", "RolloutStarted"), ("Deployment", "RolloutStarted")} <= reasons, reasons
    assert ("ModelDeployment", "RolloutSucceeded") in reasons, reasons
