"""Create or update a SageMaker endpoint for a store version; roll back; the operator's entry point.

Flow of :func:`deploy`: read the version's manifest → names from version + digest + settings → nothing to do
if that config is already live → ``model.tar.gz`` (uploaded once per sha256) → Model → EndpointConfig (kept,
tagged with the config it replaces, so ``rollback`` can go back) → guardrail alarms (the observability stack's
where they exist, read only; else deploy's own) → create the endpoint, or update it
blue/green with auto-rollback on the alarms → wait → compare the live config with the new one (the waiter says
InService after an automatic rollback too) → autoscaling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resnet_serving import ui
from resnet_serving.errors import (
    DeploymentFailed,
    ResnetServingError,
    SageMakerError,
    SageMakerInvalid,
    SageMakerNotFound,
    SageMakerUnavailable,
)
from resnet_serving.sagemaker.aws import Clients, make_clients
from resnet_serving.sagemaker.errors import call
from resnet_serving.sagemaker.package import ensure_tarball
from resnet_serving.sagemaker.spec import (
    MANAGED,
    SCALABLE_DIMENSION,
    TAG_ENDPOINT,
    TAG_LAST_UPDATE,
    TAG_MANAGED,
    TAG_PREVIOUS,
    TAG_VERSION,
    VARIANT,
    DeploySpec,
    Names,
    Traffic,
    alarm_names,
    spec_from_tags,
    stack_alarm_names,
)
from resnet_serving.settings import ENV_SAGEMAKER_MODE
from resnet_serving.store import Store, open_store, parse_store_uri

TERMINAL = frozenset({"InService", "Failed", "OutOfService", "UpdateRollbackFailed"})
POLL_S = 15.0


@dataclass(frozen=True)
class Outcome:
    endpoint: str
    action: str  # created | updated | unchanged | rolled-back
    config: str
    version: str | None
    changes: tuple[str, ...] = ()


@dataclass
class Waiting:
    """How to wait: tests pass ``poll=0`` and a fake clock."""

    poll: float = POLL_S
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tags_of(clients: Clients, arn: str, resource: str) -> dict[str, str]:
    out: dict[str, str] = {}
    token: str | None = None
    while True:
        page = call(clients.sm, "list_tags", resource, ResourceArn=arn, **({"NextToken": token} if token else {}))
        out.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        token = page.get("NextToken")
        if not token:
            return out


def describe_endpoint(clients: Clients, endpoint: str) -> dict[str, Any] | None:
    try:
        return dict(call(clients.sm, "describe_endpoint", f"endpoint {endpoint}", EndpointName=endpoint))
    except SageMakerNotFound:
        return None


def describe_config(clients: Clients, name: str) -> dict[str, Any] | None:
    try:
        return dict(call(clients.sm, "describe_endpoint_config", f"endpoint config {name}", EndpointConfigName=name))
    except SageMakerNotFound:
        return None


def config_tags(clients: Clients, name: str) -> dict[str, str]:
    desc = describe_config(clients, name)
    return tags_of(clients, desc["EndpointConfigArn"], f"endpoint config {name}") if desc else {}


# ---- the pieces ---------------------------------------------------------------------------------------
def ensure_model(clients: Clients, spec: DeploySpec, names: Names, sha256: str, data_url: str) -> bool:
    try:
        call(clients.sm, "describe_model", f"model {names.model}", ModelName=names.model)
        return False  # same name = same version, digest and settings
    except SageMakerNotFound:
        pass
    container: dict[str, Any] = {
        "Image": spec.image,
        "ModelDataUrl": data_url,
        "Mode": "SingleModel",
        "Environment": {**dict(spec.model_env), ENV_SAGEMAKER_MODE: "serverless" if spec.serverless else "realtime"},
    }
    kwargs: dict[str, Any] = {
        "ModelName": names.model,
        "ExecutionRoleArn": spec.role,
        "PrimaryContainer": container,
        "Tags": _tag_list(spec.resource_tags(sha256)),
    }
    if spec.vpc_subnets:
        kwargs["VpcConfig"] = {"Subnets": list(spec.vpc_subnets), "SecurityGroupIds": list(spec.vpc_security_groups)}
        kwargs["EnableNetworkIsolation"] = True
    call(clients.sm, "create_model", f"model {names.model}", **kwargs)
    return True


def config_request(spec: DeploySpec, names: Names, sha256: str, previous: str | None) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": names.model}
    if spec.serverless:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": spec.serverless_memory_mb,
            "MaxConcurrency": spec.serverless_max_concurrency,
        }
    else:
        variant.update(
            InstanceType=spec.instance_type, InitialInstanceCount=spec.instance_count, InitialVariantWeight=1.0
        )
        if spec.startup_timeout_s:
            variant["ContainerStartupHealthCheckTimeoutInSeconds"] = spec.startup_timeout_s
        if spec.download_timeout_s:
            variant["ModelDataDownloadTimeoutInSeconds"] = spec.download_timeout_s
    tags = spec.resource_tags(sha256)
    if previous:
        tags[TAG_PREVIOUS] = previous
    req: dict[str, Any] = {"EndpointConfigName": names.config, "ProductionVariants": [variant], "Tags": _tag_list(tags)}
    if spec.kms_key and not spec.serverless:  # serverless endpoints have no ML storage volume to encrypt
        req["KmsKeyId"] = spec.kms_key
    if spec.data_capture:
        capture: dict[str, Any] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": spec.capture_percent,
            "DestinationS3Uri": spec.data_capture,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
        if spec.kms_key:
            capture["KmsKeyId"] = spec.kms_key
        req["DataCaptureConfig"] = capture
    return req


def ensure_config(clients: Clients, spec: DeploySpec, names: Names, sha256: str, previous: str | None) -> bool:
    existing = describe_config(clients, names.config)
    if existing is not None:
        if previous and previous != names.config:  # keep the rollback pointer true to what it replaces now
            call(
                clients.sm,
                "add_tags",
                f"endpoint config {names.config}",
                ResourceArn=existing["EndpointConfigArn"],
                Tags=[{"Key": TAG_PREVIOUS, "Value": previous}],
            )
        return False
    call(
        clients.sm,
        "create_endpoint_config",
        f"endpoint config {names.config}",
        **config_request(spec, names, sha256, previous),
    )
    return True


def alarm_requests(spec: DeploySpec) -> list[dict[str, Any]]:
    """Deploy's own 5xx and p99 ModelLatency alarms, tagged at creation as deploy's (its mark, with the name)."""
    five, p99 = alarm_names(spec.endpoint)
    dims = [{"Name": "EndpointName", "Value": spec.endpoint}, {"Name": "VariantName", "Value": VARIANT}]
    tags = _tag_list({TAG_MANAGED: MANAGED, TAG_ENDPOINT: spec.endpoint})
    common = {
        "Namespace": "AWS/SageMaker",
        "Dimensions": dims,
        "Period": 60,
        "TreatMissingData": "notBreaching",
        "Tags": tags,
    }
    return [
        {
            "AlarmName": five,
            "AlarmDescription": f"5xx answers of SageMaker endpoint {spec.endpoint} (rolls back a deployment; "
            "created by resnet-serving sagemaker deploy)",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            **common,
        },
        {
            "AlarmName": p99,
            "AlarmDescription": f"p99 ModelLatency of {spec.endpoint} above {spec.p99_latency_ms:g} ms (rolls back a "
            "deployment; created by resnet-serving sagemaker deploy)",
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p99",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "Threshold": spec.p99_latency_ms * 1000.0,  # ModelLatency is in microseconds
            "ComparisonOperator": "GreaterThanThreshold",
            **common,
        },
    ]


@dataclass(frozen=True)
class Guardrails:
    """The alarms an endpoint's updates roll back on when no --alarm is named: per guardrail kind, the
    observability stack's alarm where it exists, else deploy's own."""

    names: tuple[str, ...]  # in GUARDRAIL_ALARM_KINDS order
    stack: tuple[str, ...]  # those of ``names`` the stack owns: read, never written
    found: dict[str, dict[str, Any]]  # every stack and own guardrail alarm that exists, by name

    def own(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n not in self.stack)


def find_guardrails(clients: Clients, endpoint: str) -> Guardrails:
    stack, own = stack_alarm_names(endpoint), alarm_names(endpoint)
    described = call(clients.cw, "describe_alarms", f"alarms of {endpoint}", AlarmNames=[*stack, *own])
    found = {a["AlarmName"]: a for a in described.get("MetricAlarms", []) + described.get("CompositeAlarms", [])}
    names = tuple(s if s in found else o for s, o in zip(stack, own, strict=True))
    return Guardrails(names, tuple(n for n in names if n in stack), found)


def alarm_is_ours(clients: Clients, alarm: dict[str, Any], endpoint: str) -> bool:
    """Deploy's mark on an alarm: its tags say deploy created it for ``endpoint`` (the name is checked apart)."""
    name = alarm["AlarmName"]
    found = call(clients.cw, "list_tags_for_resource", f"alarm {name}", ResourceARN=alarm["AlarmArn"])
    tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
    return tags.get(TAG_MANAGED) == MANAGED and tags.get(TAG_ENDPOINT) == endpoint


def ensure_alarms(clients: Clients, spec: DeploySpec) -> list[str]:
    """The alarms to roll back on: the --alarm ones (checked to exist), else the stack's where they exist (never
    written: PutMetricAlarm would replace their actions), else deploy's own, created or refreshed."""
    if spec.alarms:
        found = call(clients.cw, "describe_alarms", f"alarms {', '.join(spec.alarms)}", AlarmNames=list(spec.alarms))
        have = {a["AlarmName"] for a in found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])}
        missing = [a for a in spec.alarms if a not in have]
        if missing:
            raise SageMakerNotFound(f"--alarm {', '.join(missing)}: no such CloudWatch alarm in this region")
        return list(spec.alarms)
    g = find_guardrails(clients, spec.endpoint)
    if g.stack:
        ui.info(f"guardrails: the observability stack's alarms {', '.join(g.stack)} (read only)")
    unused = [n for n in alarm_names(spec.endpoint) if n in g.found and n not in g.names]
    if unused:
        ui.info(f"deploy's own {', '.join(unused)} no longer used (the stack's are); `sagemaker delete` removes them")
    for req in alarm_requests(spec):
        name = req["AlarmName"]
        if name not in g.own():
            continue
        if name in g.found and not alarm_is_ours(clients, g.found[name], spec.endpoint):
            raise SageMakerInvalid(
                f"alarm {name} exists and was not created by `resnet-serving sagemaker deploy` (no {TAG_MANAGED} "
                f"tag for {spec.endpoint}): refusing to overwrite it; name the alarms to roll back on with --alarm"
            )
        call(clients.cw, "put_metric_alarm", f"alarm {name}", **req)
        ui.info(f"guardrails: {'updated' if name in g.found else 'created'} deploy's own alarm {name}")
    return list(g.names)


def deployment_config(traffic: Traffic, alarms: list[str], *, max_wait_s: int | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = {"TrafficRoutingConfiguration": traffic.routing(), "TerminationWaitInSeconds": 0}
    if max_wait_s is not None:  # SageMaker wants it above the traffic waits, within 600-28800 s
        policy["MaximumExecutionTimeoutInSeconds"] = max(600, traffic.total_wait_s() + 1, min(28800, max_wait_s))
    cfg: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
    if alarms:
        cfg["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return cfg


def resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


def scalable_targets(clients: Clients, endpoint: str) -> list[dict[str, Any]]:
    """The endpoint variant's Application Auto Scaling targets (empty when autoscaling is off)."""
    rid = resource_id(endpoint)
    found = call(
        clients.aas,
        "describe_scalable_targets",
        f"scalable target {rid}",
        ServiceNamespace="sagemaker",
        ResourceIds=[rid],
    )
    return list(found.get("ScalableTargets", []))


def scaling_policies(clients: Clients, endpoint: str) -> list[dict[str, Any]]:
    rid = resource_id(endpoint)
    found = call(
        clients.aas, "describe_scaling_policies", f"scalable target {rid}", ServiceNamespace="sagemaker", ResourceId=rid
    )
    return list(found.get("ScalingPolicies", []))


def policy_name(endpoint: str) -> str:
    return f"resnet-serving-{endpoint}-invocations"


def apply_autoscaling(clients: Clients, spec: DeploySpec) -> bool:
    """Register the variant and its target-tracking policy; ``False`` when both already match."""
    a = spec.autoscaling
    if a is None or spec.serverless:
        return False
    rid, what = resource_id(spec.endpoint), f"scalable target {resource_id(spec.endpoint)}"
    policy = {
        "TargetValue": float(a.target),
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "ScaleInCooldown": a.scale_in_cooldown,
        "ScaleOutCooldown": a.scale_out_cooldown,
    }
    targets = scalable_targets(clients, spec.endpoint)
    policies = scaling_policies(clients, spec.endpoint)
    same_target = any(t["MinCapacity"] == a.min and t["MaxCapacity"] == a.max for t in targets)
    same_policy = any(
        p["PolicyName"] == policy_name(spec.endpoint)
        and {k: p.get("TargetTrackingScalingPolicyConfiguration", {}).get(k) for k in policy} == policy
        for p in policies
    )
    if same_target and same_policy:
        return False
    base = {"ServiceNamespace": "sagemaker", "ResourceId": rid, "ScalableDimension": SCALABLE_DIMENSION}
    call(clients.aas, "register_scalable_target", what, MinCapacity=a.min, MaxCapacity=a.max, **base)
    call(
        clients.aas,
        "put_scaling_policy",
        f"scaling policy {policy_name(spec.endpoint)}",
        PolicyName=policy_name(spec.endpoint),
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=policy,
        **base,
    )
    return True


def wait(clients: Clients, endpoint: str, *, timeout_s: float, waiting: Waiting) -> dict[str, Any]:
    """Poll until the endpoint leaves Creating/Updating/RollingBack, with live status; bounded by ``timeout_s``."""
    start, last = waiting.clock(), None
    with ui.status(f"waiting for {endpoint} (up to {timeout_s:.0f}s)"):
        while True:
            desc = describe_endpoint(clients, endpoint)
            if desc is None:
                raise SageMakerNotFound(f"endpoint {endpoint} disappeared while waiting for it")
            status = desc["EndpointStatus"]
            if status != last:
                ui.info(f"{endpoint}: {status} ({waiting.clock() - start:.0f}s)")
                last = status
            if status in TERMINAL:
                return desc
            if waiting.clock() - start >= timeout_s:
                raise DeploymentFailed(
                    f"{endpoint} is still {status} after {timeout_s:.0f}s (--timeout); SageMaker carries on: "
                    f"check `resnet-serving sagemaker status --endpoint {endpoint}`"
                )
            waiting.sleep(waiting.poll)


def _check(desc: dict[str, Any], endpoint: str, want: str, what: str) -> None:
    status, live = desc["EndpointStatus"], desc.get("EndpointConfigName")
    reason = desc.get("FailureReason") or "(SageMaker gave no FailureReason)"
    if status == "InService" and live == want:
        return
    if status == "InService":
        raise DeploymentFailed(
            f"{what} of {endpoint} to {want} was rolled back: {live} is serving. FailureReason: {reason}"
        )
    raise DeploymentFailed(f"{what} of {endpoint} to {want} ended {status}: {reason}")


def _set_endpoint_tags(clients: Clients, arn: str, endpoint: str, tags: dict[str, str]) -> None:
    call(clients.sm, "add_tags", f"endpoint {endpoint}", ResourceArn=arn, Tags=_tag_list(tags))


# ---- deploy -------------------------------------------------------------------------------------------
def deploy(spec: DeploySpec, *, clients: Clients, store: Store, waiting: Waiting | None = None) -> Outcome:
    waiting = waiting or Waiting()
    spec.validate()
    for w in spec.warnings():
        ui.warn(w)
    manifest = store.read_manifest(spec.model, spec.version)
    names = spec.names(manifest.sha256)
    live = describe_endpoint(clients, spec.endpoint)
    endpoint_tags: dict[str, str] = {}
    if live is not None:
        endpoint_tags = tags_of(clients, live["EndpointArn"], f"endpoint {spec.endpoint}")
        if endpoint_tags.get(TAG_MANAGED) != MANAGED:
            raise SageMakerInvalid(
                f"endpoint {spec.endpoint} exists and was not created by `resnet-serving sagemaker deploy` (no "
                f"{TAG_MANAGED} tag): refusing to take it over; pick another --endpoint"
            )
        if live["EndpointStatus"] not in TERMINAL:
            raise SageMakerUnavailable(
                f"endpoint {spec.endpoint} is {live['EndpointStatus']}: wait until it is InService, then deploy again"
            )
        if live["EndpointStatus"] != "InService":
            raise DeploymentFailed(
                f"endpoint {spec.endpoint} is {live['EndpointStatus']} "
                f"({live.get('FailureReason') or 'no FailureReason'}): SageMaker cannot update it; remove it with "
                f"`resnet-serving sagemaker delete --endpoint {spec.endpoint}` and deploy again"
            )
        if live["EndpointConfigName"] == names.config:
            scaled = apply_autoscaling(clients, spec)
            note = "; autoscaling settings updated" if scaled else ", nothing changed"
            ui.info(
                f"{spec.endpoint} already serves {spec.model} v{spec.version} ({names.digest}) as {names.config}{note}"
            )
            return Outcome(spec.endpoint, "unchanged", names.config, spec.version, ("autoscaling",) if scaled else ())

    data_url, uploaded = ensure_tarball(store, spec.model, spec.version, manifest.sha256, kms_key=spec.kms_key)
    ui.info(f"{'uploaded' if uploaded else 'reusing'} {data_url} (from sha256 {names.digest})")
    changes = ["model.tar.gz"] if uploaded else []
    previous = live["EndpointConfigName"] if live else None
    if ensure_model(clients, spec, names, manifest.sha256, data_url):
        changes.append("model")
    if ensure_config(clients, spec, names, manifest.sha256, previous):
        changes.append("endpoint-config")
    alarms = ensure_alarms(clients, spec)
    settings = {**spec.resource_tags(manifest.sha256), **spec.settings_tags()}

    if live is None:
        what = "create"
        created = call(
            clients.sm,
            "create_endpoint",
            f"endpoint {spec.endpoint}",
            EndpointName=spec.endpoint,
            EndpointConfigName=names.config,
            Tags=_tag_list(settings),
        )
        arn = created["EndpointArn"]
        ui.info(f"creating {spec.endpoint} with {names.config}")
    else:
        what, arn = "update", live["EndpointArn"]
        _prepare_update(clients, spec, live)
        call(
            clients.sm,
            "update_endpoint",
            f"endpoint {spec.endpoint}",
            EndpointName=spec.endpoint,
            EndpointConfigName=names.config,
            DeploymentConfig=deployment_config(spec.traffic, alarms, max_wait_s=spec.timeout_s),
        )
        ui.info(
            f"updating {spec.endpoint}: {previous} -> {names.config} ({spec.traffic}, rollback on {', '.join(alarms)})"
        )
    desc = wait(clients, spec.endpoint, timeout_s=spec.timeout_s, waiting=waiting)
    try:
        _check(desc, spec.endpoint, names.config, what)
    except DeploymentFailed:
        if desc["EndpointStatus"] == "InService":
            _set_endpoint_tags(clients, arn, spec.endpoint, {TAG_LAST_UPDATE: f"rolled back from {names.config}"})
        raise
    settings[TAG_LAST_UPDATE] = f"{what}d to {names.config}"
    _set_endpoint_tags(clients, arn, spec.endpoint, settings)
    if apply_autoscaling(clients, spec):
        changes.append("autoscaling")
    a = spec.autoscaling
    if a is not None and not spec.serverless:
        ui.info(f"autoscaling {a.min}-{a.max} instances, target {a.target:g} invocations/instance/min ({a.how})")
    ui.info(f"{spec.endpoint} serves {spec.model} v{spec.version} ({names.digest}) from {names.config}")
    return Outcome(spec.endpoint, f"{what}d", names.config, spec.version, tuple(changes))


def _prepare_update(clients: Clients, spec: DeploySpec, live: dict[str, Any]) -> None:
    """An update that changes a scaled variant's instance type fails while the scalable target is registered."""
    cfg = describe_config(clients, live["EndpointConfigName"]) or {}
    old: dict[str, Any] = next((v for v in cfg.get("ProductionVariants", []) if v.get("VariantName") == VARIANT), {})
    if old.get("InstanceType") in (None, spec.instance_type) and not spec.serverless:
        return
    rid = resource_id(spec.endpoint)
    what = f"scalable target {rid}"
    if scalable_targets(clients, spec.endpoint):
        ui.warn(f"deregistering autoscaling of {spec.endpoint} for the instance-type change (registered again after)")
        call(
            clients.aas,
            "deregister_scalable_target",
            what,
            ServiceNamespace="sagemaker",
            ResourceId=rid,
            ScalableDimension=SCALABLE_DIMENSION,
        )


# ---- rollback -----------------------------------------------------------------------------------------
def previous_config(clients: Clients, endpoint: str) -> tuple[dict[str, Any], str, dict[str, str]]:
    """(the live endpoint, the kept config before its live one, the endpoint's tags)."""
    live = describe_endpoint(clients, endpoint)
    if live is None:
        raise SageMakerNotFound(f"endpoint {endpoint} does not exist")
    tags = tags_of(clients, live["EndpointArn"], f"endpoint {endpoint}")
    if tags.get(TAG_MANAGED) != MANAGED:
        raise SageMakerInvalid(f"endpoint {endpoint} was not created by `resnet-serving sagemaker deploy`")
    current = live["EndpointConfigName"]
    prev = config_tags(clients, current).get(TAG_PREVIOUS)
    if not prev:
        raise SageMakerNotFound(f"{endpoint}: its live config {current} records no previous config to go back to")
    prev_tags = config_tags(clients, prev)
    if not prev_tags:
        raise SageMakerNotFound(f"{endpoint}: the previous config {prev} was deleted; deploy a version instead")
    if prev_tags.get(TAG_ENDPOINT) != endpoint:
        raise SageMakerInvalid(f"{endpoint}: the previous config {prev} belongs to another endpoint; refusing it")
    return live, prev, tags


def rollback(clients: Clients, endpoint: str, *, timeout_s: float = 3600, waiting: Waiting | None = None) -> Outcome:
    """Go back to the previous kept config, all at once and without alarm-triggered auto-rollback: the alarms
    that made you roll back may still be firing, and would send the endpoint back to the bad version."""
    live, prev, _ = previous_config(clients, endpoint)
    call(
        clients.sm,
        "update_endpoint",
        f"endpoint {endpoint}",
        EndpointName=endpoint,
        EndpointConfigName=prev,
        DeploymentConfig=deployment_config(Traffic("ALL_AT_ONCE"), []),
    )
    ui.info(f"rolling {endpoint} back: {live['EndpointConfigName']} -> {prev}")
    desc = wait(clients, endpoint, timeout_s=timeout_s, waiting=waiting or Waiting())
    _check(desc, endpoint, prev, "rollback")
    version = config_tags(clients, prev).get(TAG_VERSION)
    _set_endpoint_tags(clients, live["EndpointArn"], endpoint, {TAG_LAST_UPDATE: f"rolled back to {prev}"})
    ui.info(f"{endpoint} serves v{version} from {prev}")
    return Outcome(endpoint, "rolled-back", prev, version)


# ---- the operator's entry point -----------------------------------------------------------------------
def update_endpoint_version(
    endpoint: str, *, store: str, version: str, endpoint_url: str | None = None, region: str | None = None
) -> Outcome:
    """Move ``endpoint`` to ``version`` of ``store`` with the settings ``deploy`` recorded in its tags.

    The same code as ``resnet-serving sagemaker deploy``; raises only :class:`ResnetServingError` subclasses.
    """
    try:
        if parse_store_uri(store).bucket is None:  # before any AWS call
            raise SageMakerInvalid(f"{endpoint}: SageMaker reads model data from S3; the store {store} is not s3://")
        clients = make_clients(endpoint_url, region)
        live = describe_endpoint(clients, endpoint)
        if live is None:
            raise SageMakerNotFound(
                f"endpoint {endpoint} does not exist: create it with `resnet-serving sagemaker deploy`"
            )
        tags = tags_of(clients, live["EndpointArn"], f"endpoint {endpoint}")
        spec = spec_from_tags(tags, endpoint=endpoint, store=store, version=version)
        return deploy(spec, clients=clients, store=open_store(store, endpoint_url=endpoint_url))
    except ResnetServingError:
        raise
    except Exception as e:  # the operator must get a typed error with a message, never a bare exception
        raise SageMakerError(f"updating {endpoint} to v{version} failed: {e.__class__.__name__}: {e}") from e
