"""The only module that calls the Kubernetes API (docs/architecture.md): read and patch the target Deployment, patch
the ModelDeployment's status, post Events.

It reuses kopf's own API client (``kopf._cogs.clients.api``), so the operator authenticates once, the way kopf
does (in-cluster ServiceAccount token, kubeconfig, or the ``kubernetes`` client's login when installed),
including re-login on 401, and adds no HTTP client of its own. That module is internal to kopf: every use of
it is in this file, and ``tests/unit/test_controller_k8s.py`` checks the names this file relies on, so a kopf
upgrade that moves them fails a test, not a cluster. Every failure leaves here as a typed
:class:`~resnet_serving.errors.KubernetesUnavailable` (transient) or as ``None`` for "not found".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, cast
from urllib.parse import quote

import aiohttp
import kopf
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import errors as kopf_errors

from resnet_serving.controller.patches import JsonPatch
from resnet_serving.controller.spec import GROUP, PLURAL, VERSION
from resnet_serving.errors import KubernetesUnavailable

# One quick retry inside a reconcile; the operator's own tick is the longer retry loop.
BACKOFFS = (0.5, 1.0)
CONFLICT_RETRY_S = 2.0
FORBIDDEN_RETRY_S = 60.0


def deployment_url(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments/{quote(name)}"


def status_url(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}/status"


class KubernetesAPI(Protocol):
    """What the handlers need from the API; tests substitute a fake."""

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch_deployment(self, namespace: str, name: str, ops: JsonPatch) -> dict[str, Any]: ...

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    def post_event(self, objects: Iterable[Mapping[str, Any]], type_: str, reason: str, message: str) -> None: ...


def _translate(e: Exception, what: str) -> KubernetesUnavailable:
    if isinstance(e, kopf_errors.APIForbiddenError):
        return KubernetesUnavailable(
            f"{what}: forbidden ({e}). The operator's Role allows only the Deployments listed in the chart's "
            f"operator RBAC (this release's, plus operator.extraDeployments)",
            status=403,
            retry_after=FORBIDDEN_RETRY_S,
        )
    if isinstance(e, kopf_errors.APIUnprocessableEntityError | kopf_errors.APIConflictError):
        return KubernetesUnavailable(
            f"{what}: the object changed since it was read ({e}); looking again",
            status=e.status,
            retry_after=CONFLICT_RETRY_S,
        )
    if isinstance(e, kopf_errors.APIError):
        return KubernetesUnavailable(f"{what}: HTTP {e.status} {e}", status=e.status)
    return KubernetesUnavailable(f"{what}: {type(e).__name__}: {e}")


class KopfAPI:
    """:class:`KubernetesAPI` over kopf's authenticated client. Use it inside a running kopf operator."""

    def __init__(
        self, settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any] | None = None
    ) -> None:
        self.settings = settings
        self.logger = logger or logging.getLogger(__name__)

    async def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        try:
            response = await kopf_api.request(
                method, url, settings=self.settings, backoffs=BACKOFFS, logger=self.logger, **kwargs
            )
            async with response:
                return await response.json()
        except kopf_errors.APINotFoundError:
            raise
        except (kopf_errors.APIError, aiohttp.ClientError, TimeoutError) as e:
            raise _translate(e, what) from e

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body = await self._request("get", deployment_url(namespace, name), f"get deployment {namespace}/{name}")
        except kopf_errors.APINotFoundError:
            return None
        return dict(body)

    async def patch_deployment(self, namespace: str, name: str, ops: JsonPatch) -> dict[str, Any]:
        what = f"patch deployment {namespace}/{name}"
        try:
            body = await self._request(
                "patch",
                deployment_url(namespace, name),
                what,
                payload=ops,
                headers={"Content-Type": "application/json-patch+json"},
            )
        except kopf_errors.APINotFoundError as e:
            raise KubernetesUnavailable(f"{what}: the Deployment is gone", status=404) from e
        return dict(body)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        what = f"patch modeldeployment {namespace}/{name} status"
        try:
            await self._request(
                "patch",
                status_url(namespace, name),
                what,
                payload={"status": dict(status)},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        except kopf_errors.APINotFoundError:
            self.logger.debug("%s: the ModelDeployment is gone", what)

    def post_event(self, objects: Iterable[Mapping[str, Any]], type_: str, reason: str, message: str) -> None:
        """Queue an Event on each object (kopf posts them in the background; Event messages ≤ 1 kB)."""
        for obj in objects:
            kopf.event(kopf.Body(cast(kopf.RawBody, dict(obj))), type=type_, reason=reason, message=message[:1024])
