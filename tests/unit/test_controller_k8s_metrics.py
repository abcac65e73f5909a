"""The operator's API client (k8s.py) and its metrics exposition.

No Kubernetes API server can run on these machines. The client is exercised against a small aiohttp server on
loopback that answers like the API server for the few endpoints it uses (GET/PATCH a Deployment, PATCH a status
subresource, Status objects for errors), reached through kopf's own credentials vault as in the operator. It
checks the URLs, methods, content types and bodies the client sends, and how API errors become typed errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import kopf
import pytest
from aiohttp import web
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import auth as kopf_auth
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.structs import credentials

from resnet_serving.controller.k8s import KopfAPI, deployment_url, status_url
from resnet_serving.controller.metrics import Metrics
from resnet_serving.errors import KubernetesUnavailable

Request = tuple[str, str, str, Any]  # method, path, content type, JSON body


def status_error(code: int, reason: str) -> web.Response:
    body = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
            "message": f"{reason} (fake)"}  # fmt: skip
    return web.json_response(body, status=code)


@asynccontextmanager
async def fake_api(respond: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[list[Request]]:
    """An API-server stand-in on loopback, installed in kopf's vault for the duration."""
    seen: list[Request] = []

    async def handler(request: web.Request) -> web.Response:
        body = json.loads(await request.text()) if request.can_read_body else None
        seen.append((request.method, request.path, request.headers.get("Content-Type", ""), body))
        return await respond(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    vault = credentials.Vault()
    await vault.populate({"fake": credentials.ConnectionInfo(server=f"http://127.0.0.1:{port}", token="t0ken")})
    token = kopf_auth.vault_var.set(vault)
    try:
        yield seen
    finally:
        kopf_auth.vault_var.reset(token)
        await vault.close()
        await runner.cleanup()


def client() -> KopfAPI:
    settings = kopf.OperatorSettings()
    settings.networking.request_timeout = 5
    return KopfAPI(settings)


def test_the_kopf_internals_this_module_relies_on_exist() -> None:
    """k8s.py uses kopf's internal API client; a kopf upgrade that moves it must fail here, not in a cluster."""
    assert callable(kopf_api.request)
    for name in (
        "APIError",
        "APINotFoundError",
        "APIForbiddenError",
        "APIConflictError",
        "APIUnprocessableEntityError",
    ):
        assert issubclass(getattr(kopf_errors, name), Exception)


def test_urls() -> None:
    assert deployment_url("ns", "web") == "/apis/apps/v1/namespaces/ns/deployments/web"
    assert status_url("ns", "m") == "/apis/resnet-serving.io/v1alpha1/namespaces/ns/modeldeployments/m/status"


def test_get_and_patch_send_what_the_api_server_expects() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "generation": 4}}

    async def respond(request: web.Request) -> web.Response:
        if request.path.endswith("/deployments/missing"):
            return status_error(404, "NotFound")
        if request.path.endswith("/modeldeployments/gone/status"):
            return status_error(404, "NotFound")
        return web.json_response(deployment)

    async def scenario() -> list[Request]:
        async with fake_api(respond) as seen:
            api = client()
            assert await api.get_deployment("ns", "web") == deployment
            assert await api.get_deployment("ns", "missing") is None
            ops = [{"op": "add", "path": "/spec/template/metadata/annotations/x", "value": "4"}]
            assert (await api.patch_deployment("ns", "web", ops))["metadata"]["generation"] == 4
            await api.patch_status("ns", "m", {"phase": "Ready", "drift": None})
            await api.patch_status("ns", "gone", {"phase": "Ready"})  # deleted meanwhile: not an error
        return seen

    seen = asyncio.run(scenario())
    assert seen[0][:2] == ("GET", "/apis/apps/v1/namespaces/ns/deployments/web")
    method, path, kind, body = seen[2]
    assert (method, path, kind) == (
        "PATCH",
        "/apis/apps/v1/namespaces/ns/deployments/web",
        "application/json-patch+json",
    )
    assert body == [{"op": "add", "path": "/spec/template/metadata/annotations/x", "value": "4"}]
    method, path, kind, body = seen[3]
    assert (method, kind) == ("PATCH", "application/merge-patch+json")
    assert path == "/apis/resnet-serving.io/v1alpha1/namespaces/ns/modeldeployments/m/status"
    assert body == {"status": {"phase": "Ready", "drift": None}}


@pytest.mark.parametrize(
    ("code", "reason", "words", "retry_after"),
    [
        (403, "Forbidden", "forbidden", 60.0),
        (422, "Invalid", "changed since it was read", 2.0),
        (409, "Conflict", "changed since it was read", 2.0),
        (400, "BadRequest", "HTTP 400", None),
    ],
)
def test_api_errors_become_typed_errors(code: int, reason: str, words: str, retry_after: float | None) -> None:
    async def respond(request: web.Request) -> web.Response:
        return status_error(code, reason)

    async def scenario() -> KubernetesUnavailable:
        async with fake_api(respond):
            api = client()
            api.settings.networking.error_backoffs = [0.01]
            with pytest.raises(KubernetesUnavailable) as caught:
                await api.patch_deployment("ns", "web", [])
            return caught.value

    error = asyncio.run(scenario())
    assert words in error.message and error.status == code and error.retry_after == retry_after
    assert error.transient


def test_a_deleted_deployment_while_patching_is_an_error() -> None:
    async def respond(request: web.Request) -> web.Response:
        return status_error(404, "NotFound")

    async def scenario() -> None:
        async with fake_api(respond):
            with pytest.raises(KubernetesUnavailable, match="gone"):
                await client().patch_deployment("ns", "web", [])

    asyncio.run(scenario())


# ---- metrics exposition -----------------------------------------------------------------------------------
def test_metrics_exposition_format() -> None:
    m = Metrics()
    m.observe_state("ns", "md", deployment="web", version="3", phase="Ready", drifted=False)
    m.sync_error("ns", "md", "store")
    m.sync_error("ns", "md", "store")
    m.rollback("ns", "md")
    m.rollout_finished("ns", "md", "succeeded", 45.0)
    m.rollout_finished("ns", "md", "succeeded", 4000.0)
    text = m.render()
    lines = text.splitlines()
    assert text.endswith("\n")
    assert (
        'resnet_serving_operator_model_version_info{namespace="ns",name="md",deployment="web",version="3"} 1' in lines
    )
    assert 'resnet_serving_operator_phase{namespace="ns",name="md",phase="Ready"} 1' in lines
    assert 'resnet_serving_operator_sync_errors_total{namespace="ns",name="md",source="store"} 2' in lines
    assert 'resnet_serving_operator_rollbacks_total{namespace="ns",name="md"} 1' in lines
    bucket = 'resnet_serving_operator_rollout_duration_seconds_bucket{namespace="ns",name="md",outcome="succeeded",'
    assert bucket + 'le="30"} 0' in lines
    assert bucket + 'le="60"} 1' in lines, "buckets are cumulative"
    assert bucket + 'le="3600"} 1' in lines
    assert bucket + 'le="+Inf"} 2' in lines
    assert (
        'resnet_serving_operator_rollout_duration_seconds_sum{namespace="ns",name="md",outcome="succeeded"} 4045'
        in lines
    )
    for family in ("model_version_info", "phase", "drift", "sync_errors_total", "rollbacks_total"):
        assert f"# TYPE resnet_serving_operator_{family} " in text
    assert "# TYPE resnet_serving_operator_rollout_duration_seconds histogram" in text


def test_metrics_escape_labels_and_forget_deleted_objects() -> None:
    m = Metrics()
    m.observe_state("ns", 'we"ird\\', deployment="web", version="3", phase="Ready", drifted=True)
    assert 'name="we\\"ird\\\\"' in m.render()
    m.forget("ns", 'we"ird\\')
    assert "we" not in m.render().split("# TYPE resnet_serving_operator_sync_errors_total")[0].split("drift")[-1]
    m.observe_state("ns", "md", deployment="web", version=None, phase="Pending", drifted=False)
    assert "model_version_info{" not in m.render()
