"""`resnet-serving sagemaker` control plane against moto in server mode: a real HTTP endpoint on loopback
serving S3, SageMaker, Application Auto Scaling and CloudWatch; the code under test only gets endpoint_url."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any

import pytest

from resnet_serving.cli import main
from resnet_serving.plan import limits
from resnet_serving.sagemaker.aws import make_clients
from resnet_serving.sagemaker.deploy import previous_config
from resnet_serving.sagemaker.spec import TAG_PREVIOUS, TAG_VERSION, alarm_names
from tests.fixtures.moto_server import MotoS3
from tests.fixtures.sagemaker import IMAGE, ROLE, aws

pytestmark = [pytest.mark.s3, pytest.mark.sagemaker]


def deploy_args(store: dict[str, Any], endpoint: str, *extra: str, version: str = "1") -> list[str]:
    return [
        "sagemaker", "deploy", "--store", store["uri"], "--version", version, "--endpoint", endpoint,
        "--role", ROLE, "--image", IMAGE, "--endpoint-url", store["url"], "--autoscale-target", "120",
        "--autoscale-max", "6", "--kms-key", "arn:aws:kms:us-east-1:123456789012:key/abc", *extra,
    ]  # fmt: skip


def tags(sm: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def test_deploy_creates_model_config_endpoint_autoscaling_and_alarms(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(deploy_args(sm_store, endpoint_name, "--startup-timeout", "600")) == 0
    sm = aws(moto_s3, "sagemaker")
    ep = sm.describe_endpoint(EndpointName=endpoint_name)
    assert ep["EndpointStatus"] == "InService"
    digest = sm_store["shas"]["1"][:8]
    config_name = ep["EndpointConfigName"]
    assert config_name.startswith(f"{endpoint_name}-v1-{digest}-") and len(config_name) <= 63
    cfg = sm.describe_endpoint_config(EndpointConfigName=config_name)
    variant = cfg["ProductionVariants"][0]
    shipped = limits.load().sagemaker  # no --instance-type or --instance-count: the capacity file's
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == (shipped.instance_type, shipped.min_instances)
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    cfg_tags = tags(sm, cfg["EndpointConfigArn"])
    assert cfg_tags[TAG_VERSION] == "1" and cfg_tags["resnet-serving:digest"] == digest
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["ExecutionRoleArn"] == ROLE and model["PrimaryContainer"]["Image"] == IMAGE
    data_url = model["PrimaryContainer"]["ModelDataUrl"]
    assert data_url == f"s3://{sm_store['bucket']}/models/resnet50/1/sagemaker/model.tar.gz"

    # model.tar.gz: model.mar and manifest.json at the top level, SSE-KMS, the source sha256 in its metadata
    s3 = moto_s3.client()
    key = data_url.split("/", 3)[3]
    obj = s3.get_object(Bucket=sm_store["bucket"], Key=key)
    assert obj["ServerSideEncryption"] == "aws:kms"
    assert obj["Metadata"]["resnet-serving-mar-sha256"] == sm_store["shas"]["1"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(obj["Body"].read()))) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "model.mar"]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest["sha256"] == sm_store["shas"]["1"]
    listed = s3.list_objects_v2(Bucket=sm_store["bucket"], Prefix="models/resnet50/1/sagemaker/")["Contents"]
    assert [o["Key"] for o in listed] == [key], "the temp key was removed after the copy"

    aas = aws(moto_s3, "application-autoscaling")
    rid = f"endpoint/{endpoint_name}/variant/AllTraffic"
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid])["ScalableTargets"][0]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (shipped.min_instances, 6)
    policy = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid)["ScalingPolicies"][0]
    tt = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tt["TargetValue"] == 120.0
    assert tt["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert (tt["ScaleInCooldown"], tt["ScaleOutCooldown"]) == (300, 60)

    cw = aws(moto_s3, "cloudwatch")
    alarms = {
        a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=list(alarm_names(endpoint_name)))["MetricAlarms"]
    }
    five, p99 = alarm_names(endpoint_name)
    assert alarms[five]["MetricName"] == "Invocation5XXErrors"
    assert alarms[p99]["MetricName"] == "ModelLatency" and alarms[p99]["ExtendedStatistic"] == "p99"
    assert alarms[p99]["Threshold"] == 1_000_000.0  # 1000 ms in ModelLatency's microseconds
    dims = {d["Name"]: d["Value"] for d in alarms[five]["Dimensions"]}
    assert dims == {"EndpointName": endpoint_name, "VariantName": "AllTraffic"}
    assert f"created v1 ({config_name})" in capsys.readouterr().out


def test_status_reads_the_live_version(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    capsys.readouterr()
    args = ["sagemaker", "status", "--endpoint", endpoint_name, "--endpoint-url", sm_store["url"], "--json"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["status"], s["version"], s["digest"]) == ("InService", "1", sm_store["shas"]["1"][:8])
    shipped = limits.load().sagemaker  # no --instance-count: the capacity file's minimum
    assert s["variants"][0]["current_instances"] == shipped.min_instances
    assert s["autoscaling"]["min"] == shipped.min_instances
    assert s["autoscaling"]["target_invocations_per_instance_per_minute"] == 120.0
    assert {a["name"]: a["state"] for a in s["alarms"]} == dict.fromkeys(alarm_names(endpoint_name), "OK")
    assert s["last_update"]["outcome"].startswith("created to ")
    assert main(args[:-1]) == 0
    assert f"{endpoint_name}: InService, v1" in capsys.readouterr().out


def test_rerun_with_the_live_version_changes_nothing(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    sm = aws(moto_s3, "sagemaker")
    before = sm.describe_endpoint(EndpointName=endpoint_name)
    configs = sm.list_endpoint_configs(NameContains=endpoint_name)["EndpointConfigs"]
    obj = moto_s3.client().head_object(Bucket=sm_store["bucket"], Key="models/resnet50/1/sagemaker/model.tar.gz")
    capsys.readouterr()
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    out = capsys.readouterr()
    assert "nothing changed" in out.err and "unchanged v1" in out.out
    after = sm.describe_endpoint(EndpointName=endpoint_name)
    assert after["LastModifiedTime"] == before["LastModifiedTime"]
    assert sm.list_endpoint_configs(NameContains=endpoint_name)["EndpointConfigs"] == configs
    again = moto_s3.client().head_object(Bucket=sm_store["bucket"], Key="models/resnet50/1/sagemaker/model.tar.gz")
    assert again["LastModified"] == obj["LastModified"] and again["ETag"] == obj["ETag"]


def test_rerun_with_new_autoscaling_changes_only_the_policy(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    args = deploy_args(sm_store, endpoint_name)
    args[args.index("--autoscale-target") + 1] = "90"
    assert main(args) == 0
    assert "autoscaling settings updated" in capsys.readouterr().err
    rid = f"endpoint/{endpoint_name}/variant/AllTraffic"
    aas = aws(moto_s3, "application-autoscaling")
    policy = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid)["ScalingPolicies"]
    assert [p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] for p in policy] == [90.0]


def test_model_tarball_is_uploaded_once_per_sha256(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    assert "uploaded s3://" in capsys.readouterr().err
    other = endpoint_name + "-b"
    assert main(deploy_args(sm_store, other)) == 0
    assert "reusing s3://" in capsys.readouterr().err


def test_rollback_target_is_the_kept_previous_config(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str
) -> None:
    """The choice of config is checked against moto; the update_endpoint call itself cannot be, because moto
    5.2.5 answers 500 to UpdateEndpoint (see tests/unit/test_sagemaker_stubbed.py for that part). Here v2 is
    made live the way a completed update leaves it: its config (tagged with the one it replaced) serving."""
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    sm = aws(moto_s3, "sagemaker")
    v1_config = sm.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    # The same calls deploy makes for v2, up to the endpoint update that moto cannot do.
    from dataclasses import replace

    from resnet_serving.sagemaker.deploy import ensure_config, ensure_model
    from resnet_serving.sagemaker.spec import DeploySpec

    clients = make_clients(sm_store["url"])
    spec = DeploySpec(endpoint=endpoint_name, role=ROLE, image=IMAGE, store=sm_store["uri"], version="2")
    names = spec.names(sm_store["shas"]["2"])
    assert ensure_model(clients, spec, names, sm_store["shas"]["2"], "s3://b/k/model.tar.gz")
    assert ensure_config(clients, spec, names, sm_store["shas"]["2"], previous=v1_config)
    v2_tags = tags(sm, sm.describe_endpoint_config(EndpointConfigName=names.config)["EndpointConfigArn"])
    assert v2_tags[TAG_PREVIOUS] == v1_config
    ep_tags = sm.list_tags(ResourceArn=sm.describe_endpoint(EndpointName=endpoint_name)["EndpointArn"])["Tags"]
    sm.delete_endpoint(EndpointName=endpoint_name)
    sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=names.config, Tags=ep_tags)

    live, prev, _ = previous_config(clients, endpoint_name)
    assert live["EndpointConfigName"] == names.config and prev == v1_config
    assert replace(spec, version="2").names(sm_store["shas"]["2"]) == names


def test_delete_removes_only_what_deploy_created(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    sm = aws(moto_s3, "sagemaker")
    # An unrelated endpoint whose names start the same way, and a user's own alarm: both must survive.
    unrelated = endpoint_name + "-manual"
    sm.create_model(ModelName=unrelated, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(
        EndpointConfigName=unrelated,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": unrelated,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName=unrelated, EndpointConfigName=unrelated)
    cw = aws(moto_s3, "cloudwatch")
    cw.put_metric_alarm(
        AlarmName=f"{endpoint_name}-mine", Namespace="AWS/SageMaker", MetricName="Invocations", Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    capsys.readouterr()

    base = ["sagemaker", "delete", "--endpoint", endpoint_name, "--endpoint-url", sm_store["url"]]
    assert main(base) == 2, "without --yes and without a terminal it refuses"
    assert "pass --yes" in capsys.readouterr().err
    assert sm.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"] == "InService"

    assert main([*base, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "deleted 6 resource(s)" in out  # the endpoint, its scalable target, 2 alarms, 1 config, 1 model
    names = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    assert endpoint_name not in names and unrelated in names
    assert [
        c["EndpointConfigName"] for c in sm.list_endpoint_configs(NameContains=endpoint_name)["EndpointConfigs"]
    ] == [unrelated]
    models = [m["ModelName"] for m in sm.list_models()["Models"]]  # moto ignores NameContains here
    assert [m for m in models if m.startswith(endpoint_name)] == [unrelated]
    left = [
        a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix="resnet-serving-" + endpoint_name)["MetricAlarms"]
    ]
    assert left == []
    assert cw.describe_alarms(AlarmNames=[f"{endpoint_name}-mine"])["MetricAlarms"]
    rid = f"endpoint/{endpoint_name}/variant/AllTraffic"
    aas = aws(moto_s3, "application-autoscaling")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid])["ScalableTargets"] == []


def test_delete_refuses_an_endpoint_deploy_did_not_create(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sm = aws(moto_s3, "sagemaker")
    sm.create_model(ModelName=endpoint_name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(
        EndpointConfigName=endpoint_name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": endpoint_name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=endpoint_name)
    args = ["sagemaker", "delete", "--endpoint", endpoint_name, "--endpoint-url", sm_store["url"], "--yes"]
    assert main(args) == 2
    assert "not created by `resnet-serving sagemaker deploy`" in capsys.readouterr().err
    assert sm.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"] == "InService"
    assert main(deploy_args(sm_store, endpoint_name)) == 2, "deploy refuses to take it over, too"


def test_unsupported_instance_type_is_a_clear_validation_error(
    sm_store: dict[str, Any], endpoint_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto rejects instance types it does not list, as SageMaker rejects unknown ones: ValidationException."""
    assert main(deploy_args(sm_store, endpoint_name, "--instance-type", "ml.nosuch.xlarge")) == 2
    err = capsys.readouterr().err
    assert "CreateEndpointConfig on endpoint config" in err and "refused" in err and "Traceback" not in err


def test_operator_entry_point_rebuilds_the_spec_from_tags(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str
) -> None:
    """update_endpoint_version with the live version: the same code as deploy, settings from the tags."""
    from resnet_serving.sagemaker import update_endpoint_version

    assert main(deploy_args(sm_store, endpoint_name, "--instance-count", "3")) == 0
    outcome = update_endpoint_version(endpoint_name, store=sm_store["uri"], version="1", endpoint_url=sm_store["url"])
    assert outcome.action == "unchanged", "the tags rebuilt exactly the settings deploy used"


def test_default_autoscaling_target_derives_from_the_bench(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --autoscale-target: the target comes from bench.json through resnet_serving.plan, and says how."""
    bench = {
        "environment": {"device": "cpu", "cpus_available": 2, "payload": {"file": "x.jpg", "bytes": 60_000}},
        "serve_config": {"workers": 2, "torch_threads_per_worker": 1, "batch_size": 2, "max_batch_delay_ms": 2},
        "raw": {"img_s_by_batch": {"1": 40.0}, "graph": "torchscript-frozen"},
        "served": [{"concurrency": 4, "img_s": 40.0, "p50_ms": 95.0, "p95_ms": 110.0, "p99_ms": 130.0, "failed": 0}],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    args = deploy_args(sm_store, endpoint_name)
    i = args.index("--autoscale-target")
    args[i : i + 2] = ["--bench", str(path)]
    assert main(args) == 0
    err = capsys.readouterr().err
    # 40 img/s on 2 vCPUs = 20 per vCPU; ml.m5.xlarge has 4: 80/s x 60 s x 0.7 = 3360 per minute
    assert "autoscaling target 3360 invocations/instance/min" in err and "EXTRAPOLATED" in err
    rid = f"endpoint/{endpoint_name}/variant/AllTraffic"
    aas = aws(moto_s3, "application-autoscaling")
    policy = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid)["ScalingPolicies"][0]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 3360.0


def test_serverless_endpoint_has_no_instances_and_no_autoscaling(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str
) -> None:
    args = [
        a
        for a in deploy_args(sm_store, endpoint_name)
        if a not in ("--autoscale-max", "6", "--autoscale-target", "120")
    ]
    options = ["--env", "RESNET_SERVING_JPEG_SCALED_DECODE=1", "--env", "RESNET_SERVING_AMP=bf16"]
    assert main([*args, "--serverless", "--memory-mb", "6144", "--max-concurrency", "20", *options]) == 0
    sm = aws(moto_s3, "sagemaker")
    cfg = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    )
    variant = cfg["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 6144, "MaxConcurrency": 20}
    assert "InstanceType" not in variant and "KmsKeyId" not in cfg
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Environment"] == {
        "RESNET_SERVING_AMP": "bf16",
        "RESNET_SERVING_JPEG_SCALED_DECODE": "1",
        "RESNET_SERVING_SAGEMAKER_MODE": "serverless",
    }
    rid = f"endpoint/{endpoint_name}/variant/AllTraffic"
    aas = aws(moto_s3, "application-autoscaling")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid])["ScalableTargets"] == []


def test_vpc_and_data_capture_settings_reach_the_model_and_config(
    moto_s3: MotoS3, sm_store: dict[str, Any], endpoint_name: str
) -> None:
    extra = ["--vpc-subnets", "subnet-0123abcd,subnet-0456abcd", "--vpc-security-groups", "sg-0123abcd",
             "--data-capture", "s3://capture-bucket/resnet", "--capture-percent", "5",
             "--instance-count", "3"]  # fmt: skip
    assert main(deploy_args(sm_store, endpoint_name, *extra)) == 0
    sm = aws(moto_s3, "sagemaker")
    cfg = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    )
    capture = cfg["DataCaptureConfig"]
    assert (capture["EnableCapture"], capture["InitialSamplingPercentage"]) == (True, 5)
    assert capture["DestinationS3Uri"] == "s3://capture-bucket/resnet"
    assert cfg["ProductionVariants"][0]["InitialInstanceCount"] == 3
    model = sm.describe_model(ModelName=cfg["ProductionVariants"][0]["ModelName"])
    assert model["VpcConfig"] == {
        "Subnets": ["subnet-0123abcd", "subnet-0456abcd"],
        "SecurityGroupIds": ["sg-0123abcd"],
    }
    # moto 5.2.5 does not echo EnableNetworkIsolation back; the request is checked in test_sagemaker_stubbed.py


def test_a_failed_copy_leaves_no_object_and_no_temp_key(moto_s3: MotoS3, sm_store: dict[str, Any]) -> None:
    """The upload goes to a temp key and is copied into place. The copy is made to fail with a botocore
    before-call hook (moto would not fail it): neither the real key nor the temp key is left behind."""
    from botocore.exceptions import ClientError

    from resnet_serving.errors import AccessDenied
    from resnet_serving.sagemaker.package import ensure_tarball, tarball_key
    from resnet_serving.store import open_store

    store = open_store(sm_store["uri"], endpoint_url=sm_store["url"])

    def deny(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "CopyObject")

    store.backend.client.meta.events.register("before-call.s3.CopyObject", deny)  # type: ignore[attr-defined]
    with pytest.raises(AccessDenied, match="s3:PutObject"):
        ensure_tarball(store, "resnet50", "1", sm_store["shas"]["1"], kms_key=None)
    listed = moto_s3.client().list_objects_v2(Bucket=sm_store["bucket"], Prefix="models/resnet50/1/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "models/resnet50/1/manifest.json",
        "models/resnet50/1/model.mar",
    ]
    assert tarball_key("resnet50", "1") == "resnet50/1/sagemaker/model.tar.gz"


def test_operator_entry_point_raises_typed_errors(sm_store: dict[str, Any], endpoint_name: str) -> None:
    from resnet_serving.errors import ResnetServingError
    from resnet_serving.sagemaker import update_endpoint_version

    with pytest.raises(ResnetServingError, match="does not exist: create it with"):
        update_endpoint_version(endpoint_name, store=sm_store["uri"], version="2", endpoint_url=sm_store["url"])
    assert main(deploy_args(sm_store, endpoint_name)) == 0
    with pytest.raises(ResnetServingError, match="version 9 is not in"):
        update_endpoint_version(endpoint_name, store=sm_store["uri"], version="9", endpoint_url=sm_store["url"])
