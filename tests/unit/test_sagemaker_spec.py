"""sagemaker deploy's flags, names, tags and packaging: pure checks, no AWS (any AWS call fails the test)."""

from __future__ import annotations

import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from resnet_serving.cli import main
from resnet_serving.cli import sagemaker as commands
from resnet_serving.errors import (
    InputError,
    SageMakerAccessDenied,
    SageMakerError,
    SageMakerInvalid,
    SageMakerNotFound,
    SageMakerUnavailable,
)
from resnet_serving.sagemaker.errors import convert
from resnet_serving.sagemaker.package import pack
from resnet_serving.sagemaker.spec import (
    NAME_RE,
    TAG_MANAGED,
    Autoscaling,
    DeploySpec,
    Traffic,
    spec_from_tags,
)

ROLE = "arn:aws:iam::123456789012:role/sm"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/resnet-serving:1"
BASE = ["sagemaker", "deploy", "--store", "s3://b/p", "--version", "3", "--endpoint", "ep", "--role", ROLE,
        "--image", IMAGE]  # fmt: skip


@pytest.fixture(autouse=True)
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError("an AWS client or store was opened before the flags were validated")

    monkeypatch.setattr(commands, "make_clients", refuse)
    monkeypatch.setattr(commands, "open_store", refuse)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--serverless", "--memory-mb", "1500", "--max-concurrency", "5"], "--memory-mb must be one of 1024, 2048"),
        (["--serverless", "--memory-mb", "7168", "--max-concurrency", "5"], "--memory-mb must be one of"),
        (
            ["--serverless", "--memory-mb", "2048", "--max-concurrency", "0"],
            "--max-concurrency must be between 1 and 200",
        ),
        (["--serverless", "--memory-mb", "2048", "--max-concurrency", "201"], "--max-concurrency must be between 1"),
        (["--serverless", "--memory-mb", "2048"], "--serverless needs --max-concurrency"),
        (["--serverless", "--max-concurrency", "5"], "--serverless needs --memory-mb"),
        (["--memory-mb", "2048"], "apply only with --serverless"),
        (
            ["--serverless", "--memory-mb", "2048", "--max-concurrency", "5", "--data-capture", "s3://bucket-a/c"],
            "--data-capture does not apply to serverless",
        ),
        (
            [
                "--serverless",
                "--memory-mb",
                "2048",
                "--max-concurrency",
                "5",
                "--vpc-subnets",
                "subnet-0123abcd",
                "--vpc-security-groups",
                "sg-0123abcd",
            ],
            "--vpc-subnets does not apply to serverless",
        ),
        (["--instance-type", "m5.xlarge"], "invalid --instance-type 'm5.xlarge'"),
        (["--instance-count", "0"], "--instance-count must be at least 1, got 0"),
        (["--endpoint", "bad_name"], "invalid --endpoint 'bad_name'"),
        (["--endpoint", "x" * 64], "invalid --endpoint"),
        (["--role", "sagemaker-role"], "invalid --role 'sagemaker-role'"),
        (["--image", "resnet-serving"], "invalid --image 'resnet-serving'"),
        (["--data-capture", "http://bucket/x"], "invalid --data-capture"),
        (["--capture-percent", "50"], "--capture-percent needs --data-capture"),
        (
            ["--data-capture", "s3://bucket-a/c", "--capture-percent", "101"],
            "--capture-percent must be between 0 and 100",
        ),
        (["--vpc-subnets", "subnet-0123abcd"], "--vpc-subnets and --vpc-security-groups go together"),
        (["--vpc-subnets", "net-1", "--vpc-security-groups", "sg-0123abcd"], "invalid subnet 'net-1'"),
        (["--vpc-subnets", "subnet-0123abcd", "--vpc-security-groups", "default"], "invalid security group"),
        (["--startup-timeout", "30"], "--startup-timeout (s) must be between 60 and 3600, got 30"),
        (["--download-timeout", "4000"], "--download-timeout (s) must be between 60 and 3600"),
        (["--autoscale-min", "3", "--autoscale-max", "2"], "--autoscale-max (2) must be at least --autoscale-min (3)"),
        (["--autoscale-target", "0"], "--autoscale-target must be positive"),
        (["--scale-in-cooldown", "-1"], "--scale-in-cooldown (s) must be at least 0"),
        (["--alarm", "bad alarm!"], "invalid --alarm 'bad alarm!'"),
        (["--timeout", "0"], "--timeout (s) must be at least 1"),
        (["--p99-latency-ms", "0"], "--p99-latency-ms must be between 1 and 60000"),
        (["--timeout", "600"], "--timeout 600 is not longer than the traffic shifting"),
        (["--traffic", "linear:10%:300s", "--timeout", "2000"], "takes 3000 s"),
        (["--store", "file:///models"], "SageMaker reads model data from S3"),
        (["--env", "RESNET_SERVING_AMP"], "--env 'RESNET_SERVING_AMP': expected KEY=VALUE"),
        (["--env", "OMP_NUM_THREADS=4"], "--env OMP_NUM_THREADS: not a resnet-serving setting"),
        (["--env", "RESNET_SERVING_AMP=int4"], "--env RESNET_SERVING_AMP='int4': expected one of"),
        (["--env", "RESNET_SERVING_SAGEMAKER_MODE=realtime"], "deploy sets it from --serverless"),
        (["--env", "RESNET_SERVING_AMP=bf16", "--env", "RESNET_SERVING_AMP=off"], "--env RESNET_SERVING_AMP is given"),
        (
            ["--env", "RESNET_SERVING_DEFAULT_TOPK=50", "--env", "RESNET_SERVING_MAX_TOPK=10"],
            "RESNET_SERVING_DEFAULT_TOPK (50) exceeds RESNET_SERVING_MAX_TOPK (10)",
        ),
        (["--env", "RESNET_SERVING_JAVA_OPTS=-Xmx1g,-Xss1m"], "cannot be recorded in an endpoint tag"),
    ],
)
def test_bad_flags_exit_2_before_any_aws_call(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*BASE, "--autoscale-target", "100", *extra] if "--autoscale-target" not in extra else [*BASE, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ("canary:0%:600s", "percentage must be between 1 and 99"),
        ("linear:100%:60s", "percentage must be between 1 and 99"),
        ("linear:20%:4000s", "wait interval (s) must be between 0 and 3600"),
        ("blue", "invalid --traffic 'blue'"),
    ],
)
def test_bad_traffic_is_an_argparse_error(traffic: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*BASE, "--autoscale-target", "100", "--traffic", traffic])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_no_target_and_no_bench_is_refused_without_inventing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*BASE, "--bench", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "--autoscale-target" in err and "Traceback" not in err


def test_no_store_is_refused(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    args = [a for a in BASE if a not in ("--store", "s3://b/p")]
    monkeypatch.delenv("RESNET_SERVING_STORE", raising=False)
    from resnet_serving.cli import build_parser

    parsed = build_parser().parse_args([*args, "--autoscale-target", "1"])
    parsed.store = None
    with pytest.raises(InputError, match="no store given"):
        commands.cmd_deploy(parsed)


def spec(**kw: Any) -> DeploySpec:
    base = DeploySpec(endpoint="resnet50-prod", role=ROLE, image=IMAGE, store="s3://b/p", version="3")
    return replace(base, **kw).validate()


def test_one_instance_warns_about_az_spread() -> None:
    assert any("availability zones" in w for w in spec(instance_count=1).warnings())
    assert spec().warnings() == []


def test_names_fit_63_characters_and_carry_version_and_digest() -> None:
    sha = "ab" * 32
    long = spec(endpoint="e" * 63, version="10.20.30")
    names = long.names(sha)
    assert len(names.config) <= 63 and NAME_RE.match(names.config)
    assert "-v10-20-30-abababab-" in names.config
    assert spec().names(sha) == spec().names(sha), "the same spec maps to the same names"
    assert spec().names(sha) != spec(instance_count=3).names(sha), "other settings, other config"
    assert spec().names(sha) == spec(autoscaling=Autoscaling(2, 8, 50.0)).names(sha), "scaling is not in the config"
    assert spec().names(sha) != spec().names("cd" * 32)
    bf16 = spec(model_env=(("RESNET_SERVING_AMP", "bf16"),))
    assert bf16.names(sha) != spec().names(sha), "another model option, another model and config"


@pytest.mark.parametrize(
    "kw",
    [
        {"autoscaling": Autoscaling(2, 6, 120.5, 600, 30), "traffic": Traffic.parse("linear:20%:300s")},
        {"serverless_memory_mb": 6144, "serverless_max_concurrency": 20, "traffic": Traffic("ALL_AT_ONCE")},
        {
            "kms_key": "arn:aws:kms:us-east-1:123456789012:key/abc",
            "data_capture": "s3://cap-bucket/x",
            "capture_percent": 5,
            "vpc_subnets": ("subnet-0123abcd", "subnet-0456abcd"),
            "vpc_security_groups": ("sg-0123abcd",),
            "startup_timeout_s": 900,
            "download_timeout_s": 600,
            "alarms": ("team-5xx", "team-latency"),
            "instance_count": 4,
            "instance_type": "ml.c5.2xlarge",
            "p99_latency_ms": 250.0,
            "timeout_s": 1200,
            "model_env": (("RESNET_SERVING_AMP", "bf16"), ("RESNET_SERVING_JPEG_SCALED_DECODE", "1")),
        },
    ],
)
def test_settings_round_trip_through_the_endpoint_tags(kw: dict[str, Any]) -> None:
    """What update_endpoint_version relies on: the tags rebuild the same spec (so the same names)."""
    original = spec(**kw)
    tags = {**original.resource_tags("ab" * 32), **original.settings_tags()}
    rebuilt = spec_from_tags(tags, endpoint=original.endpoint, store=original.store, version="3")
    if original.autoscaling:
        assert rebuilt.autoscaling is not None
        rebuilt = replace(rebuilt, autoscaling=replace(rebuilt.autoscaling, how=original.autoscaling.how))
    assert rebuilt == original
    assert rebuilt.names("ab" * 32) == original.names("ab" * 32)


def test_tags_from_another_tool_are_refused() -> None:
    with pytest.raises(InputError, match="was not created by"):
        spec_from_tags({"owner": "me"}, endpoint="x", store="s3://b", version="1")
    with pytest.raises(InputError, match="incomplete or malformed"):
        spec_from_tags({TAG_MANAGED: "resnet-serving"}, endpoint="x", store="s3://b", version="1")


def test_traffic_routing_shapes() -> None:
    assert Traffic.parse("canary:10%:600s").routing() == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        "WaitIntervalInSeconds": 600,
    }
    assert Traffic.parse("all-at-once").routing() == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    assert str(Traffic.parse("linear:20%:300s")) == "linear:20%:300s"


def test_pack_is_deterministic_with_both_files_at_the_top(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.mar").write_bytes(b"archive bytes")
    (src / "manifest.json").write_text('{"sha256": "x"}')
    first = pack(src, tmp_path / "a.tar.gz")
    (src / "model.mar").touch()  # a new mtime must not change the bytes
    assert pack(src, tmp_path / "b.tar.gz") == first
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert tar.getnames() == ["model.mar", "manifest.json"]
        assert tar.extractfile("model.mar").read() == b"archive bytes"  # type: ignore[union-attr]


def _client_error(code: str, message: str, status: int, **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status},
                        **extra}, "CreateEndpoint")  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "cls", "text"),
    [
        (_client_error("ValidationException", "Could not find endpoint x", 400), SageMakerNotFound, "not found"),
        (_client_error("ValidationException", "Invalid instance type", 400), SageMakerInvalid, "refused"),
        (_client_error("ResourceInUse", "Cannot create already existing endpoint", 400), SageMakerInvalid, "in use"),
        (_client_error("ModelError", "bad image", 424, OriginalStatusCode=415), SageMakerInvalid, "answered 415"),
        (_client_error("ModelError", "worker died", 424, OriginalStatusCode=500), SageMakerError, "answered 500"),
        (_client_error("ServiceUnavailable", "try later", 503), SageMakerUnavailable, "try again later"),
        (NoCredentialsError(), SageMakerAccessDenied, "no usable AWS credentials"),
        (EndpointConnectionError(endpoint_url="http://x"), SageMakerUnavailable, "unreachable"),
    ],
)
def test_conversion_names_the_call_and_the_resource(exc: Exception, cls: type, text: str) -> None:
    err = convert(exc, service="sagemaker", operation="create_endpoint", resource="endpoint ep")
    assert type(err) is cls
    assert err is not None and text in err.message and "endpoint ep" in err.message


def test_conversion_leaves_foreign_exceptions_alone() -> None:
    assert convert(ValueError("x"), service="sagemaker", operation="create_endpoint", resource="endpoint ep") is None


def test_operator_entry_point_refuses_a_non_s3_store_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    deploy_mod = importlib.import_module("resnet_serving.sagemaker.deploy")  # the package exports a deploy()

    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError("AWS clients were made")

    monkeypatch.setattr(deploy_mod, "make_clients", refuse)
    with pytest.raises(SageMakerInvalid, match="not s3://"):
        deploy_mod.update_endpoint_version("ep", store="file:///models", version="1")
