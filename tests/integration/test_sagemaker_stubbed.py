"""What moto 5.2.5 cannot do, with botocore's Stubber on the SageMaker, Application Auto Scaling and CloudWatch
clients (the store is still the real moto S3 server). Each test says which gap it covers. The Stubber checks
every request against the service model and, where given, against the exact parameters expected."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from resnet_serving.cli import build_parser, main
from resnet_serving.cli import sagemaker as commands
from resnet_serving.sagemaker.aws import Clients, make_clients
from resnet_serving.sagemaker.deploy import Waiting
from resnet_serving.sagemaker.spec import (
    MANAGED,
    TAG_ENDPOINT,
    TAG_MANAGED,
    TAG_PREVIOUS,
    TAG_VERSION,
    DeploySpec,
    alarm_names,
    stack_alarm_names,
)
from tests.fixtures.sagemaker import IMAGE, ROLE

pytestmark = pytest.mark.sagemaker
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
ACCOUNT_ARN = "arn:aws:sagemaker:us-east-1:123456789012"


@dataclass
class Stubs:
    clients: Clients
    sm: Stubber
    aas: Stubber
    cw: Stubber
    runtime: Stubber


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch, aws_test_env: None) -> Iterator[Stubs]:
    clients = make_clients("http://127.0.0.1:9")  # never reached: the Stubber answers first
    s = Stubs(clients, Stubber(clients.sm), Stubber(clients.aas), Stubber(clients.cw), Stubber(clients.runtime))
    for stub in (s.sm, s.aas, s.cw, s.runtime):
        stub.activate()
    monkeypatch.setattr(commands, "make_clients", lambda *a, **k: clients)
    monkeypatch.setattr(commands, "WAITING", Waiting(poll=0, sleep=lambda _: None))
    yield s
    for stub in (s.sm, s.aas, s.cw, s.runtime):
        stub.assert_no_pending_responses()
        stub.deactivate()


def argv(store: dict[str, Any], endpoint: str, *extra: str) -> list[str]:
    return [
        "sagemaker", "deploy", "--store", store["uri"], "--version", "2", "--endpoint", endpoint, "--role", ROLE,
        "--image", IMAGE, "--endpoint-url", store["url"], "--autoscale-target", "120",
        # the stubbed live config's size, given: these tests are about updates, not the capacity file's defaults
        "--instance-type", "ml.m5.xlarge", "--instance-count", "2", "--autoscale-max", "4", *extra,
    ]  # fmt: skip


def spec_for(args_list: list[str]) -> DeploySpec:
    args = build_parser().parse_args(args_list)
    return replace(commands.spec_from_args(args, args.version), autoscaling=commands.autoscaling_from_args(args))


def endpoint_desc(name: str, config: str, status: str, reason: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "EndpointName": name,
        "EndpointArn": f"{ACCOUNT_ARN}:endpoint/{name}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 2, "DesiredInstanceCount": 2}],
    }
    if reason:
        d["FailureReason"] = reason
    return d


def config_desc(name: str, instance_type: str = "ml.m5.xlarge") -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"{ACCOUNT_ARN}:endpoint-config/{name}",
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type, "InitialInstanceCount": 2}
        ],
        "CreationTime": NOW,
    }


def not_found(stub: Stubber, method: str, what: str) -> None:
    stub.add_client_error(method, "ValidationException", f"Could not find {what}.", 400)


def tags(d: dict[str, str]) -> dict[str, Any]:
    return {"Tags": [{"Key": k, "Value": v} for k, v in d.items()]}


def stub_update_until_request(s: Stubs, endpoint: str, old: str, spec: DeploySpec, sha: str) -> str:
    """The calls deploy makes on a live endpoint up to (not including) update_endpoint; returns the new config."""
    new = spec.names(sha).config
    s.sm.add_response("describe_endpoint", endpoint_desc(endpoint, old, "InService"), {"EndpointName": endpoint})
    s.sm.add_response("list_tags", tags({TAG_MANAGED: MANAGED, TAG_ENDPOINT: endpoint}), {"ResourceArn": ANY})
    not_found(s.sm, "describe_model", "model")
    s.sm.add_response("create_model", {"ModelArn": f"{ACCOUNT_ARN}:model/{new}"}, None)
    not_found(s.sm, "describe_endpoint_config", "endpoint configuration")
    s.sm.add_response("create_endpoint_config", {"EndpointConfigArn": f"{ACCOUNT_ARN}:endpoint-config/{new}"}, None)
    return new


def test_update_sends_blue_green_canary_with_auto_rollback_on_the_created_alarms(
    stubs: Stubs, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto 5.2.5 answers 500 to every form of UpdateEndpoint, so the update request is checked here, exactly:
    the DeploymentConfig, the alarms it rolls back on and the traffic routing; then the alarms are the ones
    deploy created (put_metric_alarm) under its own names, as the observability stack's are missing, and
    autoscaling is registered once the new config is in service."""
    args_list = argv(sm_store, endpoint_name, "--traffic", "canary:10%:600s", "--timeout", "1800")
    spec = spec_for(args_list)
    old = f"{endpoint_name}-v1-00000000-aaaaaa"
    new = stub_update_until_request(stubs, endpoint_name, old, spec, sm_store["shas"]["2"])
    five, p99 = alarm_names(endpoint_name)
    stubs.cw.add_response(
        "describe_alarms", {"MetricAlarms": []}, {"AlarmNames": [*stack_alarm_names(endpoint_name), five, p99]}
    )
    stubs.cw.add_response("put_metric_alarm", {}, {**_alarm_params(five, "Sum"), "MetricName": "Invocation5XXErrors"})
    stubs.cw.add_response("put_metric_alarm", {}, {**_alarm_params(p99, "p99"), "MetricName": "ModelLatency"})
    stubs.sm.add_response("describe_endpoint_config", config_desc(old), {"EndpointConfigName": old})
    stubs.sm.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ACCOUNT_ARN}:endpoint/{endpoint_name}"},
        {
            "EndpointName": endpoint_name,
            "EndpointConfigName": new,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                        "WaitIntervalInSeconds": 600,
                    },
                    "TerminationWaitInSeconds": 0,
                    "MaximumExecutionTimeoutInSeconds": 1800,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": five}, {"AlarmName": p99}]},
            },
        },
    )
    stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, old, "Updating"), None)
    stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, new, "InService"), None)
    stubs.sm.add_response("add_tags", {"Tags": []}, None)
    rid = f"endpoint/{endpoint_name}/variant/AllTraffic"
    stubs.aas.add_response("describe_scalable_targets", {"ScalableTargets": []}, None)
    stubs.aas.add_response("describe_scaling_policies", {"ScalingPolicies": []}, None)
    stubs.aas.add_response(
        "register_scalable_target",
        {},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": rid,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": 2,
            "MaxCapacity": 4,
        },
    )
    stubs.aas.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:policy"}, None)
    assert main(args_list) == 0
    assert f"{endpoint_name}: updated v2 ({new})" in capsys.readouterr().out


def test_update_rolls_back_on_the_stacks_alarms_and_writes_none(
    stubs: Stubs, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto answers 500 to UpdateEndpoint, so the guardrails are checked on the exact request: with the
    observability stack's alarms present, deploy sends their names and makes no CloudWatch write (the Stubber
    fails on any call not queued, put_metric_alarm included)."""
    args_list = argv(sm_store, endpoint_name, "--traffic", "all-at-once")
    spec = spec_for(args_list)
    old = f"{endpoint_name}-v1-00000000-aaaaaa"
    new = stub_update_until_request(stubs, endpoint_name, old, spec, sm_store["shas"]["2"])
    stack = list(stack_alarm_names(endpoint_name))
    stubs.cw.add_response(
        "describe_alarms",
        {"MetricAlarms": [{"AlarmName": n, "AlarmActions": ["arn:aws:sns:us-east-1:1:alerts"]} for n in stack]},
        {"AlarmNames": [*stack, *alarm_names(endpoint_name)]},
    )
    stubs.sm.add_response("describe_endpoint_config", config_desc(old), {"EndpointConfigName": old})
    stubs.sm.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ACCOUNT_ARN}:endpoint/{endpoint_name}"},
        {
            "EndpointName": endpoint_name,
            "EndpointConfigName": new,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                    "TerminationWaitInSeconds": 0,
                    "MaximumExecutionTimeoutInSeconds": 3600,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in stack]},
            },
        },
    )
    stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, new, "InService"), None)
    stubs.sm.add_response("add_tags", {"Tags": []}, None)
    stubs.aas.add_response("describe_scalable_targets", {"ScalableTargets": []}, None)
    stubs.aas.add_response("describe_scaling_policies", {"ScalingPolicies": []}, None)
    stubs.aas.add_response("register_scalable_target", {}, None)
    stubs.aas.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:policy"}, None)
    assert main(args_list) == 0
    out = capsys.readouterr()
    assert f"{endpoint_name}: updated v2 ({new})" in out.out
    assert f"rollback on {', '.join(stack)}" in " ".join(out.err.split()), "the wrapped log names them"


def _alarm_params(name: str, statistic: str) -> dict[str, Any]:
    return {
        "AlarmName": name, "AlarmDescription": ANY, "Namespace": "AWS/SageMaker", "Dimensions": ANY, "Period": 60,
        "TreatMissingData": "notBreaching", "Tags": ANY, "EvaluationPeriods": ANY, "DatapointsToAlarm": 2,
        "Threshold": ANY, "ComparisonOperator": ANY, **({"Statistic": "Sum"} if statistic == "Sum" else
                                                       {"ExtendedStatistic": statistic}),
    }  # fmt: skip


def test_a_rolled_back_update_exits_1_with_the_failure_reason(
    stubs: Stubs, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Updating -> RollingBack -> InService with the OLD config: the waiter would report success; deploy compares
    the live config with the new one and fails. moto cannot update endpoints (500), hence the Stubber. With
    --alarm the named alarms are checked to exist and used, linear routing is sent as asked."""
    args_list = argv(sm_store, endpoint_name, "--alarm", "team-5xx", "--traffic", "linear:20%:300s")
    spec = spec_for(args_list)
    old = f"{endpoint_name}-v1-00000000-aaaaaa"
    new = stub_update_until_request(stubs, endpoint_name, old, spec, sm_store["shas"]["2"])
    stubs.cw.add_response(
        "describe_alarms",
        {"MetricAlarms": [{"AlarmName": "team-5xx", "StateValue": "OK"}]},
        {"AlarmNames": ["team-5xx"]},
    )
    stubs.sm.add_response("describe_endpoint_config", config_desc(old), None)
    stubs.sm.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ACCOUNT_ARN}:endpoint/{endpoint_name}"},
        {
            "EndpointName": endpoint_name,
            "EndpointConfigName": new,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "LINEAR",
                        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
                        "WaitIntervalInSeconds": 300,
                    },
                    "TerminationWaitInSeconds": 0,
                    "MaximumExecutionTimeoutInSeconds": 3600,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "team-5xx"}]},
            },
        },
    )
    reason = "Alarm team-5xx went into ALARM state during the deployment"
    for status, config in (("Updating", old), ("RollingBack", old), ("InService", old)):
        stubs.sm.add_response(
            "describe_endpoint",
            endpoint_desc(endpoint_name, config, status, reason if status != "Updating" else None),
            None,
        )
    stubs.sm.add_response(
        "add_tags",
        {"Tags": []},
        {"ResourceArn": ANY, "Tags": [{"Key": "resnet-serving:last-update", "Value": f"rolled back from {new}"}]},
    )
    assert main(args_list) == 1
    out = capsys.readouterr()
    assert f"update of {endpoint_name} to {new} was rolled back: {old} is serving" in out.err
    assert f"FailureReason: {reason}" in out.err
    assert "RollingBack" in out.err and "Traceback" not in out.err


def test_wait_is_bounded_by_timeout(
    stubs: Stubs, sm_store: dict[str, Any], endpoint_name: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A create that stays Creating past --timeout exits 1 naming the state; moto's endpoints are InService at
    once, so the sequence is stubbed. The clock is fake: each reading advances it 20 s, so the second poll is
    past 60 s."""
    ticks = iter(range(0, 10_000, 20))
    monkeypatch.setattr(commands, "WAITING", Waiting(poll=0, sleep=lambda _: None, clock=lambda: float(next(ticks))))
    args_list = argv(sm_store, endpoint_name, "--timeout", "60", "--alarm", "a", "--traffic", "all-at-once")
    spec = spec_for(args_list)
    not_found(stubs.sm, "describe_endpoint", "endpoint")
    not_found(stubs.sm, "describe_model", "model")
    stubs.sm.add_response("create_model", {"ModelArn": f"{ACCOUNT_ARN}:model/m"}, None)
    not_found(stubs.sm, "describe_endpoint_config", "endpoint configuration")
    stubs.sm.add_response("create_endpoint_config", {"EndpointConfigArn": f"{ACCOUNT_ARN}:endpoint-config/c"}, None)
    stubs.cw.add_response("describe_alarms", {"MetricAlarms": [{"AlarmName": "a"}]}, None)
    new = spec.names(sm_store["shas"]["2"]).config
    stubs.sm.add_response("create_endpoint", {"EndpointArn": f"{ACCOUNT_ARN}:endpoint/{endpoint_name}"}, None)
    for _ in range(2):
        stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, new, "Creating"), None)
    assert main(args_list) == 1
    assert "is still Creating after 60s (--timeout)" in capsys.readouterr().err


def test_rollback_goes_to_the_kept_previous_config_all_at_once(
    stubs: Stubs, endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto answers 500 to UpdateEndpoint; the kept-config lookup itself is also covered against moto in
    test_sagemaker_moto.py. Rollback sends ALL_AT_ONCE without alarm auto-rollback (the alarms that prompted it
    may still be firing)."""
    live, prev = f"{endpoint_name}-v2-22222222-bbbbbb", f"{endpoint_name}-v1-11111111-aaaaaa"
    ours = {TAG_MANAGED: MANAGED, TAG_ENDPOINT: endpoint_name}
    stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, live, "InService"), None)
    stubs.sm.add_response("list_tags", tags(ours), None)
    stubs.sm.add_response("describe_endpoint_config", config_desc(live), {"EndpointConfigName": live})
    stubs.sm.add_response("list_tags", tags({**ours, TAG_PREVIOUS: prev, TAG_VERSION: "2"}), None)
    stubs.sm.add_response("describe_endpoint_config", config_desc(prev), {"EndpointConfigName": prev})
    stubs.sm.add_response("list_tags", tags({**ours, TAG_VERSION: "1"}), None)
    stubs.sm.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ACCOUNT_ARN}:endpoint/{endpoint_name}"},
        {
            "EndpointName": endpoint_name,
            "EndpointConfigName": prev,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                    "TerminationWaitInSeconds": 0,
                }
            },
        },
    )
    stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, live, "Updating"), None)
    stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, prev, "InService"), None)
    stubs.sm.add_response("describe_endpoint_config", config_desc(prev), None)
    stubs.sm.add_response("list_tags", tags({**ours, TAG_VERSION: "1"}), None)
    stubs.sm.add_response("add_tags", {"Tags": []}, None)
    assert main(["sagemaker", "rollback", "--endpoint", endpoint_name]) == 0
    assert f"{endpoint_name}: rolled back to v1 ({prev})" in capsys.readouterr().out


def test_invoke_prints_the_predict_table(
    stubs: Stubs, tmp_path: Any, endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto's invoke_endpoint answers 500 for binary bodies and canned text otherwise, so the runtime call is
    stubbed: the request carries the sniffed Content-Type, the raw bytes and top-k; the table is predict's."""
    image = tmp_path / "cat.png"
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    image.write_bytes(data)
    body = {
        "model": "resnet50", "version": "2", "weights": "random-seed-0",
        "predictions": [{"label": "tabby", "index": 281, "score": 0.75}, {"label": "tiger cat", "index": 282,
                                                                          "score": 0.2}],
    }  # fmt: skip
    raw = json.dumps(body).encode()
    stubs.runtime.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"},
        {
            "EndpointName": endpoint_name,
            "Body": data,
            "ContentType": "image/png",
            "Accept": "application/json",
            "CustomAttributes": "topk=2",
        },
    )
    assert main(["sagemaker", "invoke", "--endpoint", endpoint_name, str(image), "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert "tabby" in out and "0.7500" in out and "tiger cat" in out and "version 2" in out


@pytest.mark.parametrize(
    ("code", "status", "message", "rc", "expect"),
    [
        ("AccessDeniedException", 403, "User is not authorized", 2, "access denied: sagemaker:DescribeEndpoint"),
        ("ValidationException", 400, "Could not assume role arn:aws:iam::1:role/x", 2, "trusts sagemaker.amazonaws"),
        ("ResourceLimitExceeded", 400, "account-level service limit", 1, "Service Quotas"),
        ("ThrottlingException", 400, "Rate exceeded", 1, "throttled DescribeEndpoint"),
        ("InternalFailure", 500, "boom", 1, "failed DescribeEndpoint"),
    ],
)
def test_service_errors_name_the_call_and_resource(
    stubs: Stubs, endpoint_name: str, capsys: pytest.CaptureFixture[str],
    code: str, status: int, message: str, rc: int, expect: str,
) -> None:  # fmt: skip
    """Error codes moto never returns for these calls (access, quota, throttling), injected with the Stubber.
    The Stubber bypasses botocore's retries, so one error is one answer."""
    stubs.sm.add_client_error("describe_endpoint", code, message, status)
    assert main(["sagemaker", "status", "--endpoint", endpoint_name]) == rc
    err = capsys.readouterr().err
    assert expect in err and f"endpoint {endpoint_name}" in err and "Traceback" not in err


def test_vpc_model_turns_network_isolation_on(stubs: Stubs) -> None:
    """moto 5.2.5 stores EnableNetworkIsolation but describes it as False, so the create_model request is
    checked here: a VPC model is created with network isolation on."""
    from resnet_serving.sagemaker.deploy import ensure_model

    spec = DeploySpec(
        endpoint="ep", role=ROLE, image=IMAGE, store="s3://b/p", version="3",
        vpc_subnets=("subnet-0123abcd",), vpc_security_groups=("sg-0123abcd",),
    ).validate()  # fmt: skip
    sha = "ab" * 32
    names = spec.names(sha)
    not_found(stubs.sm, "describe_model", "model")
    stubs.sm.add_response(
        "create_model",
        {"ModelArn": f"{ACCOUNT_ARN}:model/{names.model}"},
        {
            "ModelName": names.model,
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": "s3://b/p/resnet50/3/sagemaker/model.tar.gz",
                "Mode": "SingleModel",
                "Environment": {"RESNET_SERVING_SAGEMAKER_MODE": "realtime"},
            },
            "Tags": ANY,
            "VpcConfig": {"Subnets": ["subnet-0123abcd"], "SecurityGroupIds": ["sg-0123abcd"]},
            "EnableNetworkIsolation": True,
        },
    )
    assert ensure_model(stubs.clients, spec, names, sha, "s3://b/p/resnet50/3/sagemaker/model.tar.gz")


def test_a_failed_endpoint_is_not_updated(
    stubs: Stubs, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto's endpoints never fail, so a Failed one is stubbed: deploy stops before creating anything."""
    stubs.sm.add_response(
        "describe_endpoint", endpoint_desc(endpoint_name, "old", "Failed", "CannotStartContainerError"), None
    )
    stubs.sm.add_response("list_tags", tags({TAG_MANAGED: MANAGED, TAG_ENDPOINT: endpoint_name}), None)
    assert main(argv(sm_store, endpoint_name)) == 1
    err = capsys.readouterr().err
    assert "is Failed (CannotStartContainerError)" in err and "sagemaker delete" in err


def test_rerun_with_the_live_version_makes_no_write_call(
    stubs: Stubs, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto 5.2.5 lets a duplicate create overwrite silently, so a re-run that created things again would look
    unchanged there. With the Stubber any call not queued fails the test: the re-run only reads."""
    args_list = argv(sm_store, endpoint_name)
    spec = spec_for(args_list)
    live = spec.names(sm_store["shas"]["2"]).config
    rid = f"endpoint/{endpoint_name}/variant/AllTraffic"
    stubs.sm.add_response("describe_endpoint", endpoint_desc(endpoint_name, live, "InService"), None)
    stubs.sm.add_response("list_tags", tags({TAG_MANAGED: MANAGED, TAG_ENDPOINT: endpoint_name}), None)
    stubs.aas.add_response(
        "describe_scalable_targets",
        {"ScalableTargets": [{
            "ServiceNamespace": "sagemaker", "ResourceId": rid,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 2, "MaxCapacity": 4,
            "RoleARN": "arn:aws:iam::1:role/x", "CreationTime": NOW,
        }]},
        None,
    )  # fmt: skip
    stubs.aas.add_response(
        "describe_scaling_policies",
        {"ScalingPolicies": [{
            "PolicyARN": "arn:p", "PolicyName": f"resnet-serving-{endpoint_name}-invocations",
            "ServiceNamespace": "sagemaker", "ResourceId": rid,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "PolicyType": "TargetTrackingScaling",
            "CreationTime": NOW,
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 120.0, "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            },
        }]},
        None,
    )  # fmt: skip
    assert main(args_list) == 0
    out = capsys.readouterr()
    assert f"{endpoint_name}: unchanged v2" in out.out and "nothing changed" in out.err
