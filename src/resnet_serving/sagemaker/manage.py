"""``status`` (what is live, read off the tags deploy wrote) and ``delete`` (only what deploy created)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from resnet_serving.errors import SageMakerInvalid, SageMakerNotFound
from resnet_serving.sagemaker.aws import Clients
from resnet_serving.sagemaker.deploy import (
    alarm_is_ours,
    config_tags,
    describe_endpoint,
    find_guardrails,
    policy_name,
    resource_id,
    scalable_targets,
    scaling_policies,
    tags_of,
)
from resnet_serving.sagemaker.errors import call
from resnet_serving.sagemaker.spec import (
    MANAGED,
    SCALABLE_DIMENSION,
    TAG_DIGEST,
    TAG_ENDPOINT,
    TAG_LAST_UPDATE,
    TAG_MANAGED,
    TAG_SETTINGS,
    TAG_VERSION,
    alarm_names,
)


def status(clients: Clients, endpoint: str) -> dict[str, Any]:
    """Live version, variants, autoscaling, alarm states and the last update's outcome, as plain JSON data."""
    desc = describe_endpoint(clients, endpoint)
    if desc is None:
        raise SageMakerNotFound(f"endpoint {endpoint} does not exist")
    tags = tags_of(clients, desc["EndpointArn"], f"endpoint {endpoint}")
    live = desc.get("EndpointConfigName")
    live_tags = config_tags(clients, live) if live else {}
    targets = scalable_targets(clients, endpoint)
    policies = scaling_policies(clients, endpoint)
    autoscaling = None
    if targets:
        t = targets[0]
        tt: dict[str, Any] = next(
            (
                p.get("TargetTrackingScalingPolicyConfiguration", {})
                for p in policies
                if p["PolicyName"] == policy_name(endpoint)
            ),
            {},
        )
        autoscaling = {
            "min": t["MinCapacity"],
            "max": t["MaxCapacity"],
            "target_invocations_per_instance_per_minute": tt.get("TargetValue"),
            "scale_in_cooldown_s": tt.get("ScaleInCooldown"),
            "scale_out_cooldown_s": tt.get("ScaleOutCooldown"),
        }
    named = tags.get(TAG_SETTINGS + "alarms", "").split()
    if named:
        found = call(clients.cw, "describe_alarms", f"alarms of {endpoint}", AlarmNames=named)
        alarms = {a["AlarmName"]: a for a in found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])}
    else:  # no --alarm: the guardrails deploy picks, the stack's where they exist
        guardrails = find_guardrails(clients, endpoint)
        named, alarms = list(guardrails.names), guardrails.found
    states = {name: a.get("StateValue") for name, a in alarms.items()}
    return {
        "endpoint": endpoint,
        "status": desc["EndpointStatus"],
        "managed": tags.get(TAG_MANAGED) == MANAGED,
        "config": live,
        "version": live_tags.get(TAG_VERSION),
        "digest": live_tags.get(TAG_DIGEST),
        "variants": [
            {
                "name": v.get("VariantName"),
                "current_instances": v.get("CurrentInstanceCount"),
                "desired_instances": v.get("DesiredInstanceCount"),
                "serverless": v.get("CurrentServerlessConfig") or v.get("DesiredServerlessConfig"),
            }
            for v in desc.get("ProductionVariants", [])
        ],
        "autoscaling": autoscaling,
        "alarms": [{"name": n, "state": states.get(n, "MISSING")} for n in named],
        "last_update": {
            "outcome": tags.get(TAG_LAST_UPDATE),
            "failure_reason": desc.get("FailureReason"),
            "last_modified": str(desc.get("LastModifiedTime")) if desc.get("LastModifiedTime") else None,
        },
    }


@dataclass
class Owned:
    """What ``deploy`` created for one endpoint, found by its tags (alarms: by its own alarm names and its tags)."""

    endpoint: str | None = None
    configs: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    scalable_target: str | None = None

    def empty(self) -> bool:
        return not (self.endpoint or self.configs or self.models or self.alarms or self.scalable_target)

    def lines(self) -> list[str]:
        out = [f"endpoint {self.endpoint}"] if self.endpoint else []
        out += [f"scalable target {self.scalable_target} (and its policies)"] if self.scalable_target else []
        out += [f"alarm {a}" for a in self.alarms]
        out += [f"endpoint config {c}" for c in self.configs]
        out += [f"model {m}" for m in self.models]
        return out


def _ours(tags: dict[str, str], endpoint: str) -> bool:
    return tags.get(TAG_MANAGED) == MANAGED and tags.get(TAG_ENDPOINT) == endpoint


def _listed(
    clients: Clients, operation: str, key: str, name_key: str, arn_key: str, prefix: str
) -> list[tuple[str, str]]:
    out, token = [], None
    while True:
        page = call(
            clients.sm,
            operation,
            f"{key} named {prefix}*",
            NameContains=prefix,
            **({"NextToken": token} if token else {}),
        )
        out += [(item[name_key], item[arn_key]) for item in page.get(key, []) if item[name_key].startswith(prefix)]
        token = page.get("NextToken")
        if not token:
            return out


def find_owned(clients: Clients, endpoint: str) -> Owned:
    owned = Owned()
    desc = describe_endpoint(clients, endpoint)
    if desc is not None:
        tags = tags_of(clients, desc["EndpointArn"], f"endpoint {endpoint}")
        if not _ours(tags, endpoint):
            raise SageMakerInvalid(
                f"endpoint {endpoint} was not created by `resnet-serving sagemaker deploy` (no {TAG_MANAGED} tag): "
                "refusing to delete it"
            )
        owned.endpoint = endpoint
    prefix = endpoint[:24].rstrip("-")  # names start with the endpoint name, cut to fit 63 characters
    for name, arn in _listed(
        clients, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn", prefix
    ):
        if _ours(tags_of(clients, arn, f"endpoint config {name}"), endpoint):
            owned.configs.append(name)
    for name, arn in _listed(clients, "list_models", "Models", "ModelName", "ModelArn", prefix):
        if _ours(tags_of(clients, arn, f"model {name}"), endpoint):
            owned.models.append(name)
    # deploy's own alarms carry its name rule and its tags; the stack's names are never looked at here
    found = call(clients.cw, "describe_alarms", f"alarms of {endpoint}", AlarmNames=list(alarm_names(endpoint)))
    for alarm in found.get("MetricAlarms", []):
        if alarm_is_ours(clients, alarm, endpoint):
            owned.alarms.append(alarm["AlarmName"])
    if owned.endpoint and scalable_targets(clients, endpoint):
        owned.scalable_target = resource_id(endpoint)
    return owned


def delete(clients: Clients, owned: Owned) -> None:
    """Remove what :func:`find_owned` found: scaling first, then alarms, the endpoint, configs and models."""
    if owned.scalable_target:
        call(
            clients.aas,
            "deregister_scalable_target",
            f"scalable target {owned.scalable_target}",
            ServiceNamespace="sagemaker",
            ResourceId=owned.scalable_target,
            ScalableDimension=SCALABLE_DIMENSION,
        )
    if owned.alarms:
        call(clients.cw, "delete_alarms", f"alarms {', '.join(owned.alarms)}", AlarmNames=owned.alarms)
    if owned.endpoint:
        call(clients.sm, "delete_endpoint", f"endpoint {owned.endpoint}", EndpointName=owned.endpoint)
    for c in owned.configs:
        call(clients.sm, "delete_endpoint_config", f"endpoint config {c}", EndpointConfigName=c)
    for m in owned.models:
        call(clients.sm, "delete_model", f"model {m}", ModelName=m)
