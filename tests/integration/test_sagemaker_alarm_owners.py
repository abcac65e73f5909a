"""One owner per alarm (issue 28): `sagemaker deploy` and `delete` read the observability stack's alarms and never
write or remove them; the alarms deploy creates for itself carry names of their own and its tags.

Against moto in server mode. The stack's alarms are made as CloudFormation leaves them (SNS actions, the
stack's thresholds) with put_metric_alarm before deploy runs; afterwards each must describe exactly as before.
The UpdateEndpoint request that carries the guardrail alarms is checked with botocore's Stubber in
test_sagemaker_stubbed.py (moto 5.2 answers 500 to UpdateEndpoint).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from resnet_serving.cli import main
from resnet_serving.sagemaker.aws import make_clients
from resnet_serving.sagemaker.deploy import deployment_config, ensure_alarms
from resnet_serving.sagemaker.spec import MANAGED, TAG_ENDPOINT, TAG_MANAGED, DeploySpec, Traffic
from tests.fixtures.moto_server import MotoS3
from tests.fixtures.sagemaker import IMAGE, ROLE, aws

pytestmark = [pytest.mark.s3, pytest.mark.sagemaker]
TOPIC = "arn:aws:sns:us-east-1:123456789012:resnet-serving-alerts"


def deploy_args(store: dict[str, Any], endpoint: str, *extra: str) -> list[str]:
    return [
        "sagemaker", "deploy", "--store", store["uri"], "--version", "1", "--endpoint", endpoint,
        "--role", ROLE, "--image", IMAGE, "--endpoint-url", store["url"], "--autoscale-target", "120", *extra,
    ]  # fmt: skip


def stack_guardrails(endpoint: str) -> list[str]:
    """The names infra/templates/resnet-serving-observability.json gives its 5xx and p99 alarms (written out
    here, so a change to the stack's names fails this file too)."""
    return [f"resnet-serving-{endpoint}-5xx", f"resnet-serving-{endpoint}-p99-latency"]


def put_stack_alarms(cw: Any, endpoint: str, extra_tags: dict[str, str] | None = None) -> None:
    """The stack's two guardrail alarms as CloudFormation creates them: SNS actions on alarm and on recovery."""
    five, p99 = stack_guardrails(endpoint)
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]
    tags = [{"Key": k, "Value": v} for k, v in {"owner": "resnet-serving-observability", **(extra_tags or {})}.items()]
    common: dict[str, Any] = {
        "AlarmActions": [TOPIC], "OKActions": [TOPIC], "EvaluationPeriods": 3, "DatapointsToAlarm": 3,
        "TreatMissingData": "notBreaching", "ComparisonOperator": "GreaterThanThreshold", "Tags": tags,
    }  # fmt: skip
    cw.put_metric_alarm(
        AlarmName=five,
        AlarmDescription=f"resnet-serving {endpoint}: more than 1% of invocations answered 5xx",
        Metrics=[
            {"Id": "rate", "Expression": "IF(invocations > 0, 100 * errors / invocations, 0)", "ReturnData": True},
            *(
                {
                    "Id": mid,
                    "ReturnData": False,
                    "MetricStat": {
                        "Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric, "Dimensions": dims},
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }
                for mid, metric in (("errors", "Invocation5XXErrors"), ("invocations", "Invocations"))
            ),
        ],
        Threshold=1.0,
        **common,
    )
    cw.put_metric_alarm(
        AlarmName=p99,
        AlarmDescription=f"resnet-serving {endpoint}: p99 model latency above 1000 ms",
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        ExtendedStatistic="p99",
        Dimensions=dims,
        Period=60,
        Threshold=1_000_000.0,
        **common,
    )


def snapshot(cw: Any, names: list[str]) -> dict[str, str]:
    """Each alarm's whole description and its tags, serialized: equal snapshots mean nothing was written."""
    out = {}
    for alarm in cw.describe_alarms(AlarmNames=names)["MetricAlarms"]:
        tags = cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
        out[alarm["AlarmName"]] = json.dumps({"alarm": alarm, "tags": tags}, sort_keys=True, default=str)
    return out


def alarms_of(cw: Any, endpoint: str) -> dict[str, dict[str, str]]:
    """Every alarm whose name starts with the endpoint's prefix, with its tags."""
    found = cw.describe_alarms(AlarmNamePrefix=f"resnet-serving-{endpoint}-")["MetricAlarms"]
    return {
        a["AlarmName"]: {t["Key"]: t["Value"] for t in cw.list_tags_for_resource(ResourceARN=a["AlarmArn"])["Tags"]}
        for a in found
    }


def test_deploy_uses_the_stacks_alarms_and_writes_none(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cw = aws(moto_s3, "cloudwatch")
    put_stack_alarms(cw, endpoint_name)
    before = snapshot(cw, stack_guardrails(endpoint_name))
    assert len(before) == 2

    assert main(deploy_args(sm_store, endpoint_name)) == 0
    assert snapshot(cw, stack_guardrails(endpoint_name)) == before, "deploy rewrote the stack's alarms"
    for name in stack_guardrails(endpoint_name):
        (alarm,) = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        assert alarm["AlarmActions"] == [TOPIC] and alarm["OKActions"] == [TOPIC]
    assert sorted(alarms_of(cw, endpoint_name)) == sorted(stack_guardrails(endpoint_name)), "no alarm of its own"
    assert "the observability stack's alarms" in capsys.readouterr().err

    # the guardrails an update sends are the stack's (the update request itself: test_sagemaker_stubbed.py)
    spec = DeploySpec(endpoint=endpoint_name, role=ROLE, image=IMAGE, store=sm_store["uri"], version="1")
    used = ensure_alarms(make_clients(sm_store["url"]), spec)
    assert used == stack_guardrails(endpoint_name)
    assert deployment_config(Traffic("ALL_AT_ONCE"), used)["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": n} for n in stack_guardrails(endpoint_name)]
    }
    assert snapshot(cw, stack_guardrails(endpoint_name)) == before

    status = ["sagemaker", "status", "--endpoint", endpoint_name, "--endpoint-url", sm_store["url"], "--json"]
    capsys.readouterr()
    assert main(status) == 0
    assert [a["name"] for a in json.loads(capsys.readouterr().out)["alarms"]] == stack_guardrails(endpoint_name)


def test_without_the_stacks_alarms_deploy_creates_its_own_under_other_names(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str
) -> None:
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    cw = aws(moto_s3, "cloudwatch")
    own = alarms_of(cw, endpoint_name)
    assert len(own) == 2
    assert not set(own) & set(stack_guardrails(endpoint_name)), f"deploy took the stack's names: {sorted(own)}"
    for name, tags in own.items():
        assert tags[TAG_MANAGED] == MANAGED and tags[TAG_ENDPOINT] == endpoint_name, name
    metrics = {a["MetricName"] for a in cw.describe_alarms(AlarmNames=sorted(own))["MetricAlarms"]}
    assert metrics == {"Invocation5XXErrors", "ModelLatency"}

    # the stack created later (CloudFormation would fail on a name already taken): deploy then uses it
    put_stack_alarms(cw, endpoint_name)
    before = snapshot(cw, stack_guardrails(endpoint_name))
    spec = DeploySpec(endpoint=endpoint_name, role=ROLE, image=IMAGE, store=sm_store["uri"], version="1")
    assert ensure_alarms(make_clients(sm_store["url"]), spec) == stack_guardrails(endpoint_name)
    assert snapshot(cw, stack_guardrails(endpoint_name)) == before


def test_deploy_refuses_to_overwrite_an_alarm_under_its_name_that_it_did_not_create(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deploy's mark is its naming rule and its tags together: a look-alike without the tags is left alone."""
    from resnet_serving.naming import DEPLOY, alarm_name

    cw = aws(moto_s3, "cloudwatch")
    name = alarm_name(endpoint_name, "5xx", DEPLOY)
    cw.put_metric_alarm(
        AlarmName=name, Namespace="AWS/SageMaker", MetricName="Invocations", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold", AlarmActions=[TOPIC],
    )  # fmt: skip
    before = snapshot(cw, [name])
    assert main(deploy_args(sm_store, endpoint_name)) == 2
    err = capsys.readouterr().err
    assert f"alarm {name} exists and was not created by" in err and "Traceback" not in err
    assert snapshot(cw, [name]) == before
    assert aws(moto_s3, "sagemaker").list_endpoints(NameContains=endpoint_name)["Endpoints"] == []


def test_delete_never_removes_a_stack_alarm(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deploy's own alarms go, the stack's stay: even stack-named alarms that carry deploy's tags (as an older
    deploy, which wrote the stack's names, left them) are not deploy's to remove."""
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    cw = aws(moto_s3, "cloudwatch")
    own = sorted(alarms_of(cw, endpoint_name))
    put_stack_alarms(cw, endpoint_name, {TAG_MANAGED: MANAGED, TAG_ENDPOINT: endpoint_name})
    before = snapshot(cw, stack_guardrails(endpoint_name))
    capsys.readouterr()

    assert main(["sagemaker", "delete", "--endpoint", endpoint_name, "--endpoint-url", sm_store["url"], "--yes"]) == 0
    listed = {line.strip() for line in capsys.readouterr().out.splitlines()}
    assert {f"alarm {n}" for n in own} <= listed
    assert not {f"alarm {n}" for n in stack_guardrails(endpoint_name)} & listed, sorted(listed)
    assert snapshot(cw, stack_guardrails(endpoint_name)) == before
    assert sorted(alarms_of(cw, endpoint_name)) == stack_guardrails(endpoint_name)
    assert own and not set(own) & set(stack_guardrails(endpoint_name))
