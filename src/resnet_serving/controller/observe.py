"""The facts a reconcile decision is made from: the target Deployment (parsed, pure) and the model store.

:func:`view_deployment` and :func:`rollout_progress` are pure functions of the Deployment object as the API
returns it. :func:`read_store` opens the ModelDeployment's store and reads it with
:func:`resnet_serving.policy.read_store`, the same reader ``sync`` uses; it never raises, it reports.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resnet_serving.controller.spec import VERSION_ANNOTATION, ModelDeploymentSpec
from resnet_serving.errors import InputError, StoreError
from resnet_serving.policy import StoreView
from resnet_serving.policy import read_store as read_policy_store
from resnet_serving.settings import ENV_STORE as STORE_ENV
from resnet_serving.settings import ENV_VERSION as VERSION_ENV
from resnet_serving.store import POLL_RETRY, open_store


@dataclass(frozen=True)
class DeploymentView:
    """What the operator needs to know about the target Deployment."""

    name: str
    generation: int
    observed_generation: int
    replicas: int
    """``spec.replicas`` (the HPA sets it through the scale subresource)."""
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    total_replicas: int
    """``status.replicas``: old and new pods together."""
    paused: bool
    progress_deadline_exceeded: bool
    annotation: str | None
    """The pod template's ``resnet-serving.io/model-version`` (``None``: absent)."""
    env_version: str | None
    """The init container's ``RESNET_SERVING_MODEL_VERSION`` (``None``: absent or set through ``valueFrom``)."""
    store: str | None
    """The init container's ``RESNET_SERVING_STORE``."""
    container_found: bool
    env_from_ref: bool
    """``RESNET_SERVING_MODEL_VERSION`` is set from a ConfigMap/Secret/field: the operator cannot patch it."""

    @property
    def template_version(self) -> str | None:
        """The version the pod template asks for when the annotation and the env agree, else ``None``."""
        if self.annotation is None or self.annotation != (self.env_version or ""):
            return None
        return self.annotation

    @property
    def consistent(self) -> bool:
        return self.template_version is not None


def _env(container: Mapping[str, Any], name: str) -> tuple[str | None, bool]:
    """(value, set through valueFrom) of one env var; (None, False) when absent."""
    for entry in container.get("env") or []:
        if entry.get("name") == name:
            if "valueFrom" in entry:
                return None, True
            return str(entry.get("value") or ""), False
    return None, False


def find_container(deployment: Mapping[str, Any], container: str) -> tuple[int, Mapping[str, Any]] | None:
    """(index, container) of the init container named ``container`` in the pod template, if present."""
    inits = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("initContainers") or []
    for i, c in enumerate(inits):
        if c.get("name") == container:
            return i, c
    return None


def view_deployment(deployment: Mapping[str, Any], container: str) -> DeploymentView:
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    template_meta = spec.get("template", {}).get("metadata") or {}
    annotation = (template_meta.get("annotations") or {}).get(VERSION_ANNOTATION)
    found = find_container(deployment, container)
    env_version, env_from_ref, store = None, False, None
    if found is not None:
        env_version, env_from_ref = _env(found[1], VERSION_ENV)
        store, _ = _env(found[1], STORE_ENV)
    exceeded = any(
        c.get("type") == "Progressing" and c.get("status") == "False" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    return DeploymentView(
        name=str(meta.get("name", "")),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int(spec["replicas"]) if spec.get("replicas") is not None else 1,
        updated_replicas=int(status.get("updatedReplicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        total_replicas=int(status.get("replicas") or 0),
        paused=bool(spec.get("paused")),
        progress_deadline_exceeded=exceeded,
        annotation=None if annotation is None else str(annotation),
        env_version=env_version,
        store=store,
        container_found=found is not None,
        env_from_ref=env_from_ref,
    )


class Progress(str, enum.Enum):
    COMPLETE = "Complete"
    PROGRESSING = "Progressing"
    FAILED = "Failed"
    PAUSED = "Paused"


@dataclass(frozen=True)
class RolloutProgress:
    state: Progress
    reason: str
    message: str


def rollout_progress(
    view: DeploymentView,
    *,
    generation: int | None,
    started: datetime,
    timeout_s: float,
    now: datetime,
) -> RolloutProgress:
    """Where the rollout the operator started (at Deployment ``generation``) stands.

    The same test as ``kubectl rollout status``: the controller has seen the change, every replica is
    updated, no old replica is left, every updated replica is available. It fails when the Deployment
    reports ``ProgressDeadlineExceeded`` for this generation, or when ``timeout_s`` has passed.
    """
    seen = view.observed_generation >= (generation if generation is not None else view.generation)
    if view.paused:
        return RolloutProgress(Progress.PAUSED, "DeploymentPaused", f"deployment {view.name} is paused")
    if seen and view.progress_deadline_exceeded:
        return RolloutProgress(
            Progress.FAILED,
            "ProgressDeadlineExceeded",
            f"deployment {view.name} exceeded its progress deadline: the new pods did not become ready",
        )
    if (
        seen
        and view.updated_replicas >= view.replicas
        and view.total_replicas <= view.updated_replicas
        and view.available_replicas >= view.updated_replicas
    ):
        return RolloutProgress(Progress.COMPLETE, "RolloutComplete", f"{view.updated_replicas} pods updated")
    elapsed = (now - started).total_seconds()
    if elapsed > timeout_s:
        return RolloutProgress(
            Progress.FAILED,
            "RolloutTimeout",
            f"deployment {view.name} did not finish rolling out within {timeout_s:.0f}s "
            f"({view.available_replicas}/{view.replicas} available, {view.updated_replicas} updated)",
        )
    return RolloutProgress(
        Progress.PROGRESSING,
        "RolloutInProgress",
        f"{view.updated_replicas}/{view.replicas} pods updated, {view.available_replicas} available",
    )


def read_store(spec: ModelDeploymentSpec) -> StoreView:
    """What the store says for this ModelDeployment (blocking: run it in a thread). Never raises."""
    try:
        store = open_store(spec.store, endpoint_url=spec.endpoint_url, retry=POLL_RETRY)
    except (StoreError, InputError) as e:  # an unusable store URI
        return StoreView(None, error=e.message, transient=isinstance(e, StoreError) and e.transient)
    return read_policy_store(store, spec.model, spec.channel)
