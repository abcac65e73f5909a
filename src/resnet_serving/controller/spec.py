"""The ModelDeployment custom resource: names, the typed spec, Go-style durations. Pure, no I/O.

The CRD (``charts/resnet50-serving/templates/operator-crds.yaml``) rejects bad specs at admission; this
module checks the same rules again, so an operator running against an older CRD never acts on a spec it does
not understand (:class:`~resnet_serving.errors.InvalidModelDeployment`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resnet_serving import MODEL_NAME
from resnet_serving.artifact.manifest import VERSION_RE
from resnet_serving.errors import InvalidModelDeployment
from resnet_serving.store.model_store import CHANNEL_RE, MODEL_RE

#: The operator's API group, one owner: the chart's CRD and RBAC, its NOTES and k8s/examples are held equal to it
#: by tests/unit/test_shared_names.py; kopf's annotations and finalizer live under it too (controller/run.py).
GROUP = "resnet-serving.io"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

# What the operator writes into the target Deployment's pod template (the chart renders both).
VERSION_ANNOTATION = f"{GROUP}/model-version"
DEFAULT_CONTAINER = "fetch-model"

DEFAULT_POLL_INTERVAL = "30s"
DEFAULT_ROLLOUT_TIMEOUT = "30m"
MIN_POLL_INTERVAL_S = 10.0
MAX_POLL_INTERVAL_S = 24 * 3600.0
MIN_ROLLOUT_TIMEOUT_S = 60.0

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
STORE_RE = re.compile(r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.+)$")
SAGEMAKER_ENDPOINT_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
DURATION_RE = re.compile(r"^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")


def parse_duration(text: str) -> float:
    """``"90s"``, ``"5m"``, ``"1h30m"`` → seconds. The subset of Go durations the CRD's pattern allows."""
    match = DURATION_RE.match(text) if isinstance(text, str) else None
    if not text or match is None:
        raise InvalidModelDeployment(f"invalid duration {text!r}: use e.g. 30s, 5m or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


@dataclass(frozen=True)
class ModelDeploymentSpec:
    """What one ModelDeployment asks for. ``channel`` and ``version`` are mutually exclusive."""

    store: str
    deployment: str
    model: str = MODEL_NAME
    channel: str | None = None
    version: str | None = None
    container: str = DEFAULT_CONTAINER
    endpoint_url: str | None = None
    poll_interval_s: float = 30.0
    rollout_timeout_s: float = 1800.0
    sagemaker_endpoint: str | None = None
    suspend: bool = False

    @property
    def source(self) -> str:
        """How the target is chosen, for messages: ``channel stable`` or ``pinned version 3``."""
        return f"pinned version {self.version}" if self.version else f"channel {self.channel}"


def parse_spec(spec: Mapping[str, Any]) -> ModelDeploymentSpec:
    """Validate a ModelDeployment's ``.spec``; :class:`InvalidModelDeployment` names the first bad field."""

    def text(key: str, pattern: re.Pattern[str] | None = None, *, required: bool = False) -> str | None:
        value = spec.get(key)
        if value is None or value == "":
            if required:
                raise InvalidModelDeployment(f"spec.{key} is required")
            return None
        if not isinstance(value, str):
            raise InvalidModelDeployment(f"spec.{key} must be a string, not {type(value).__name__}")
        if pattern is not None and not pattern.match(value):
            raise InvalidModelDeployment(f"spec.{key} {value!r} is not valid")
        return value

    store = text("store", STORE_RE, required=True)
    deployment = text("deployment", DNS_SUBDOMAIN_RE, required=True)
    model = text("model", MODEL_RE) or MODEL_NAME
    channel = text("channel", CHANNEL_RE)
    version = text("version", VERSION_RE)
    if (channel is None) == (version is None):
        raise InvalidModelDeployment("set exactly one of spec.channel (follow a channel) and spec.version (pin)")
    container = text("container", DNS_LABEL_RE) or DEFAULT_CONTAINER
    endpoint_url = text("endpointUrl")
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise InvalidModelDeployment(f"spec.endpointUrl {endpoint_url!r} must be an http(s) URL")
    poll = parse_duration(text("pollInterval") or DEFAULT_POLL_INTERVAL)
    if not MIN_POLL_INTERVAL_S <= poll <= MAX_POLL_INTERVAL_S:
        raise InvalidModelDeployment("spec.pollInterval must be between 10s and 24h")
    timeout = parse_duration(text("rolloutTimeout") or DEFAULT_ROLLOUT_TIMEOUT)
    if timeout < MIN_ROLLOUT_TIMEOUT_S:
        raise InvalidModelDeployment("spec.rolloutTimeout must be at least 1m")
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        raise InvalidModelDeployment("spec.suspend must be true or false")
    assert store is not None and deployment is not None
    return ModelDeploymentSpec(
        store=store,
        deployment=deployment,
        model=model,
        channel=channel,
        version=version,
        container=container,
        endpoint_url=endpoint_url,
        poll_interval_s=poll,
        rollout_timeout_s=timeout,
        sagemaker_endpoint=text("sagemakerEndpoint", SAGEMAKER_ENDPOINT_RE),
        suspend=suspend,
    )
