"""The install page's block, rehearsed: docs/how-to/install-aws.md, every command in order, so the page cannot drift.

Real: bash runs the block as pasted (its placeholders filled with example values); `resnet-serving archive`, `push`,
`promote`, `plan`, `sagemaker deploy` and `sagemaker delete` run against the moto server on loopback (S3, KMS, STS,
SageMaker, CloudWatch, Application Auto Scaling), as the publisher and deployer profiles that `aws configure set`
(the real AWS CLI) writes and botocore assumes through moto's STS; `aws ecr get-login-password` runs against
moto's ECR; `helm install` of the project's chart runs as the real `helm template` with the same flags, for the
eksctl cluster's Kubernetes version and no CRD (nothing in the block installs one), and every object is validated
with kubernetes-validate. The docker steps are checked against the repository output (moto's ECR has no
registry endpoint; tests/images pushes the built images to a local registry).

Checked only, since they need an AWS account or an EKS cluster no machine of this project has: `eksctl`,
`aws cloudformation deploy|delete-stack` (the AWS CLI's own parser; held to the committed templates, the stack
names and the eksctl config), the other `aws` reads, `kubectl`, `helm` of third-party charts, `docker login` and
`curl`. `out` answers from the committed templates' outputs (tests/helpers/install_page.py), only for stacks
deployed earlier in the block, and only as the administrator. moto does not enforce IAM: tests/install/
test_permissions.py checks each step's calls against the roles' policies.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import kubernetes_validate
import pytest
import yaml

from resnet_serving.naming import STACKS, guardrail_alarm_names
from tests.fixtures.moto_server import MotoS3, aws_test_env, moto_s3  # noqa: F401
from tests.helpers import REPO
from tests.helpers.chart import ACCOUNT_VALUES, CHART, KUBE_VERSION, TIMEOUT_S
from tests.helpers.install_page import (
    CONFIG,
    REGION_RE,
    Rehearsal,
    block,
    commands,
    stack_outputs,
)

pytestmark = [pytest.mark.s3, pytest.mark.sagemaker]

ENDPOINT = CONFIG["sagemaker"]["endpoint_name"]
EKSCTL = yaml.safe_load((REPO / "k8s" / "eksctl" / "cluster.yaml").read_text())
REGION = EKSCTL["metadata"]["region"]
BUCKET = CONFIG["store"]["bucket_name"].replace("${AWS::AccountId}", "123456789012")
#: Example values for the block's placeholders: the chart tests' example account values.
PLACEHOLDERS = {
    "ALERT_EMAIL": "oncall@example.com",
    "HOST": ACCOUNT_VALUES["ingress.hosts"].strip("{}"),
    "CERT_ARN": ACCOUNT_VALUES["ingress.https.certificateArn"],
    "WAF_ACL_ARN": ACCOUNT_VALUES["ingress.wafv2AclArn"],
    "JPEG": "cat.jpg",
}


def _empty_bucket(s3: Any) -> None:
    """The store bucket shares moto with tests/install/test_permissions.py (S3 names are global): leave none."""
    try:
        versions = s3.list_object_versions(Bucket=BUCKET)
    except s3.exceptions.NoSuchBucket:
        return
    for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        s3.delete_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket=BUCKET)


@pytest.fixture(scope="module")
def world(moto_s3: MotoS3) -> Iterator[dict[str, Any]]:  # noqa: F811
    """What the store stack makes, made in moto: the bucket with SSE-KMS under a customer key in the page's region."""
    kms = boto3.client("kms", endpoint_url=moto_s3.url, region_name=REGION)
    key_arn = kms.create_key(Description="the store key")["KeyMetadata"]["Arn"]
    s3 = moto_s3.client()
    _empty_bucket(s3)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}]
        },
    )
    yield {"key_arn": key_arn, "url": moto_s3.url}
    _empty_bucket(s3)


def _rehearse(tmp: Path, world: dict[str, Any], **kwargs: Any) -> tuple[Rehearsal, subprocess.CompletedProcess[str]]:
    outputs = stack_outputs(REGION, world["key_arn"], kwargs.pop("overrides", None))
    r = Rehearsal(tmp, world["url"], outputs, placeholders=PLACEHOLDERS, **kwargs)
    return r, r.run(block())


@pytest.fixture(scope="module")
def rehearsed(world: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Rehearsal, Any]:
    return _rehearse(tmp_path_factory.mktemp("install-rehearsal"), world)


def _failures(r: Rehearsal, proc: subprocess.CompletedProcess[str]) -> str:
    errors = [f"{e['tool']} {' '.join(e['argv'])[:160]}: {e['error']}" for e in r.log() if e["status"] == "error"]
    return "\n".join([*errors, f"exit {proc.returncode}", proc.stderr[-4000:]])


# ---- the page, read -----------------------------------------------------------------------------------------------
def test_a_command_without_a_stand_in_fails_the_rehearsal(world: dict[str, Any], tmp_path: Path) -> None:
    """Only the stand-ins are on the block's PATH: a step the rehearsal does not know fails, so the page cannot
    grow an unchecked command."""
    r = Rehearsal(tmp_path, world["url"], stack_outputs(REGION, world["key_arn"]))
    proc = r.run(f"export AWS_REGION={REGION}\nX=$(terraform output -raw x)\n")
    assert proc.returncode == 127
    assert "unknown step: add it to the rehearsal: terraform output -raw x" in proc.stderr


def test_the_region_is_written_once_and_is_the_clusters() -> None:
    lines = commands(block())
    exports = [line for line in lines if line.startswith("export AWS_REGION=")]
    assert exports == [f"export AWS_REGION={REGION}"], "set the region once, as k8s/eksctl/cluster.yaml's"
    others = [line[:100] for line in lines if REGION_RE.search(line) and line not in exports]
    assert not others, f"a region written outside `export AWS_REGION`: {others}"
    assert all(z.startswith(REGION) for z in EKSCTL["availabilityZones"])


def test_the_block_names_the_stacks_endpoint() -> None:
    deploy = next(line for line in commands(block()) if line.startswith("resnet-serving sagemaker deploy"))
    assert f"--endpoint {ENDPOINT} " in deploy


# ---- the page, run ------------------------------------------------------------------------------------------------
def test_the_block_runs_to_the_end(rehearsed: tuple[Rehearsal, subprocess.CompletedProcess[str]]) -> None:
    r, proc = rehearsed
    assert proc.returncode == 0 and not any(e["status"] == "error" for e in r.log()), _failures(r, proc)


def test_stacks_are_deployed_in_order_and_deleted_in_reverse(rehearsed: tuple[Rehearsal, Any]) -> None:
    r, _ = rehearsed
    state = r.state()
    order = [STACKS[k] for k in ("store", "roles", "network", "frontdoor", "observability")]
    assert state["deployed"] == order
    assert state["deleted"] == order[::-1]
    assert state["cluster"] == EKSCTL["metadata"]["name"]


def test_model_steps_run_as_their_roles(rehearsed: tuple[Rehearsal, Any]) -> None:
    """push and promote as the publisher, sagemaker deploy and delete as the deployer; both profiles name the
    roles stack's roles, and botocore could only reach moto by assuming them (no key in the environment)."""
    r, _ = rehearsed
    ran = {" ".join(e["argv"][:2]): e for e in r.log() if e["tool"] == "resnet-serving"}
    assert {k: e["status"] for k, e in ran.items()} == {
        **dict.fromkeys(["archive --weights", "push model-store/resnet50/1", "promote --store", "plan --rps",
                         "sagemaker deploy", "sagemaker delete"], "ran"),
        "predict --url": "checked",  # the front door is API Gateway and Cognito: nothing here runs them
    }  # fmt: skip
    assert (
        ran["push model-store/resnet50/1"]["profile"] == ran["promote --store"]["profile"] == "resnet-serving-publisher"
    )
    assert ran["sagemaker deploy"]["profile"] == ran["sagemaker delete"]["profile"] == "resnet-serving-deployer"
    config = (r.root / "config").read_text()
    roles = r.outputs["resnet-serving-roles"]
    assert f"role_arn = {roles['PublisherRoleArn']}" in config
    assert f"role_arn = {roles['SageMakerDeployerRoleArn']}" in config


def test_sagemaker_deploy_used_the_stacks_alarms_and_made_none(rehearsed: tuple[Rehearsal, Any]) -> None:
    r, _ = rehearsed
    cw = boto3.client("cloudwatch", endpoint_url=r.moto_url, region_name=REGION)
    names = {a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix=f"resnet-serving-{ENDPOINT}-")["MetricAlarms"]}
    assert set(guardrail_alarm_names(ENDPOINT)) <= names
    assert not [n for n in names if n.endswith("-deploy")], names


def _rendered(r: Rehearsal) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((r.root / "rendered.yaml").read_text()) if d]


def test_the_chart_renders_valid_objects_on_a_fresh_cluster(rehearsed: tuple[Rehearsal, Any]) -> None:
    r, _ = rehearsed
    docs = _rendered(r)
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {e}")
    assert not problems, "\n".join(problems)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Ingress", "HorizontalPodAutoscaler"} <= kinds
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}, "the block installs no monitoring CRDs"
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"], "no adapter serves a custom metric"
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "resnet50-serving")
    images = {c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    repo = r.outputs["resnet-serving-store"]["ServingRepositoryUri"]
    assert any(i.startswith(f"{repo}@sha256:") for i in images), images


@pytest.mark.parametrize(
    "value", ["image.repository", "model.store", "role-arn", "ingress.hosts", "certificateArn", "wafv2AclArn"]
)
def test_leaving_out_an_account_value_fails_naming_it(rehearsed: tuple[Rehearsal, Any], value: str) -> None:
    import json

    r, _ = rehearsed
    cmd = json.loads((r.root / "helm-template.json").read_text())
    i = next(i for i, a in enumerate(cmd) if a in ("--set", "--set-string") and value in cmd[i + 1])
    proc = subprocess.run(cmd[:i] + cmd[i + 2 :], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode != 0
    assert value.split(".")[-1].replace("role-arn", "role-arn") in proc.stderr, proc.stderr[-800:]
    assert str(CHART) in cmd
