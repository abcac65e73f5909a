"""The install page's block, rehearsed: docs/how-to/install-aws.md, every command in order, so the page cannot drift.

Real: bash runs the block as pasted (its placeholders filled with example values); `resnet-serving archive`, `push`,
`promote`, `plan`, `sagemaker deploy` and `sagemaker delete` run against the moto server on loopback (S3, KMS, STS,
SageMaker, CloudWatch, Application Auto Scaling), as the publisher and deployer profiles that `aws configure set`
(the real AWS CLI) writes and botocore assumes through moto's STS; `aws ecr get-login-password` runs against
moto's ECR; `helm install` of the project's chart runs as the real `helm template` with the same flags, for the
eksctl cluster's Kubernetes version and a fresh cluster's APIs (no CRD, no custom metrics API), its notes as
`helm install --dry-run=client` prints them, and every object is validated with kubernetes-validate; `helm upgrade
--reuse-values` after the monitoring step renders again with the install's flags and the APIs the monitoring
charts add. The docker steps are checked against the repository output and one another (moto's ECR has no
registry endpoint; tests/images pushes the built images to a local registry); `grep` is the real one.

Checked only, since they need an AWS account or an EKS cluster no machine of this project has: `eksctl`,
`aws cloudformation deploy|delete-stack` (the AWS CLI's own parser; held to the committed templates, the stack
names and the eksctl config), the other `aws` reads, `kubectl`, `helm` of third-party charts (held to the eksctl
config's ServiceAccounts and node groups and to the project's chart), `helm test`, `docker login`. `out` answers
from the committed templates' outputs (tests/helpers/install_page.py), only for stacks deployed earlier in the
block, and only as the administrator. moto does not enforce IAM: tests/install/
test_permissions.py checks each step's calls against the roles' policies.
"""

from __future__ import annotations

import json
import re
import shlex
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
from tests.helpers.chart import ACCOUNT_VALUES, CHART, CUSTOM_METRICS_API, KUBE_VERSION, MONITORING_APIS, TIMEOUT_S
from tests.helpers.install_page import (
    ADAPTER_CONFIGMAP,
    ADAPTER_KEY,
    CONFIG,
    OTHER_REGISTRY_DIGEST,
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
        **dict.fromkeys(["--version", "archive --weights", "push model-store/resnet50/1", "promote --store",
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


def _rendered(r: Rehearsal, verb: str = "install") -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((r.root / f"rendered-{verb}.yaml").read_text()) if d]


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
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}, "no monitoring CRDs before the monitoring step"
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"], "no adapter serves a custom metric yet"


@pytest.mark.parametrize(
    "value", ["image.repository", "model.store", "role-arn", "ingress.hosts", "certificateArn", "wafv2AclArn"]
)
def test_leaving_out_an_account_value_fails_naming_it(rehearsed: tuple[Rehearsal, Any], value: str) -> None:
    r, _ = rehearsed
    cmd = json.loads((r.root / "helm-template-install.json").read_text())
    i = next(i for i, a in enumerate(cmd) if a in ("--set", "--set-string") and value in cmd[i + 1])
    proc = subprocess.run(cmd[:i] + cmd[i + 2 :], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode != 0
    assert value.split(".")[-1].replace("role-arn", "role-arn") in proc.stderr, proc.stderr[-800:]
    assert str(CHART) in cmd


# ---- without monitoring: what step 7 leaves, and what its notes say ------------------------------------------------
def test_without_monitoring_the_notes_say_what_the_chart_skipped(rehearsed: tuple[Rehearsal, Any]) -> None:
    """prod.yaml asks for a ServiceMonitor, a PrometheusRule and a saturation metric; on a fresh cluster's APIs the
    install's notes name each one skipped and the HPA scales on CPU, with no switch on the page."""
    r, _ = rehearsed
    notes = (r.root / "notes.txt").read_text()
    for skipped in ("the ServiceMonitor", "the PrometheusRule", "the HPA's Pods metrics (resnet_serving_saturation)"):
        assert f"SKIPPED: {skipped}" in notes, notes
    assert f"ConfigMap {ADAPTER_CONFIGMAP}, key {ADAPTER_KEY}" in notes
    assert re.search(r"Scaling: HPA \d+–\d+ pods on CPU \(", notes), notes
    install = next(line for line in commands(block()) if line.startswith("helm install resnet50-serving"))
    assert "autoscaling." not in install, "prod.yaml's autoscaling needs no switch: the chart skips what is not served"


# ---- with monitoring: step 8 ---------------------------------------------------------------------------------------
def test_the_upgrade_after_the_monitoring_step_renders_what_the_install_skipped(
    rehearsed: tuple[Rehearsal, Any],
) -> None:
    r, _ = rehearsed
    cmd = json.loads((r.root / "helm-template-upgrade.json").read_text())
    apis = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--api-versions"}
    assert apis == {*MONITORING_APIS, CUSTOM_METRICS_API}
    install = json.loads((r.root / "helm-template-install.json").read_text())
    assert cmd[-len(install[8:]) :] == install[8:], "--reuse-values: the install's values and flags"
    docs = _rendered(r, "upgrade")
    kinds = {d["kind"] for d in docs}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    pods = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    rules = yaml.safe_load((r.root / "work" / "adapter-rules.yaml").read_text())
    assert pods == [rule["name"]["as"] for rule in rules["rules"]["custom"]] == ["resnet_serving_saturation"]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ADAPTER_CONFIGMAP)
    assert rules == yaml.safe_load(configmap["data"][ADAPTER_KEY])
    for doc in docs:
        if doc["kind"] not in ("ServiceMonitor", "PrometheusRule"):  # CRD kinds: no schema in kubernetes-validate
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_controllers_monitoring_and_helm_test_are_checked_not_run(rehearsed: tuple[Rehearsal, Any]) -> None:
    """Nothing here runs a cluster: the third-party charts and `helm test` are checked and logged unverified."""
    r, _ = rehearsed
    helm = {" ".join(e["argv"][:2]): e for e in r.log() if e["tool"] == "helm" and e["argv"][0] in ("install", "test")}
    assert {k: (e["status"], e.get("unverified")) for k, e in helm.items()} == {
        "install aws-load-balancer-controller": ("checked", True),
        "install cluster-autoscaler": ("checked", True),
        "install kube-prometheus-stack": ("checked", True),
        "install prometheus-adapter": ("checked", True),
        "install resnet50-serving": ("ran", None),
        "test resnet50-serving": ("checked", True),
    }
    assert any(
        "probe --url http://resnet50-serving.resnet-serving.svc" in n for n in helm["test resnet50-serving"]["notes"]
    )
    lines = commands(block())
    assert not [line for line in lines if line.startswith("curl ")], "prod's ALB is internal: no call from outside"


# ---- the image: the digest ECR gave, in the chart and in sagemaker deploy -------------------------------------------
def test_the_digest_is_the_one_pushed_to_the_repository(rehearsed: tuple[Rehearsal, Any]) -> None:
    from resnet_serving import __version__

    r, _ = rehearsed
    images = r.state()["images"]
    repo = r.outputs["resnet-serving-store"]["ServingRepositoryUri"]
    assert images["tagged"] == images["pushed"] == f"{repo}:{__version__}"
    reference = f"{repo}@{images['digest']}"
    assert reference != OTHER_REGISTRY_DIGEST
    dep = next(d for d in _rendered(r) if d["kind"] == "Deployment" and d["metadata"]["name"] == "resnet50-serving")
    assert {c["image"] for c in dep["spec"]["template"]["spec"]["containers"]} == {reference}
    deploy = next(e for e in r.log() if e["argv"][:2] == ["sagemaker", "deploy"])
    assert deploy["argv"][deploy["argv"].index("--image") + 1] == reference


# ---- the checks fail on a wrong step (controls) --------------------------------------------------------------------
def _page_line(start: str) -> str:
    return next(line for line in commands(block()) if line.startswith(start))


#: The chart installed as step 7 does, with the example account values for the stacks' outputs.
_CHART = " ".join(
    [
        "helm install resnet50-serving charts/resnet50-serving -n resnet-serving -f k8s/values/prod.yaml",
        *(f"--set{'-string' if 'role-arn' in k else ''} {shlex.quote(f'{k}={v}')}" for k, v in ACCOUNT_VALUES.items()),
    ]
)
_CLUSTER = "eksctl create cluster -f k8s/eksctl/cluster.yaml"
_AUTOSCALER = "helm repo add autoscaler https://kubernetes.github.io/autoscaler"
_PROMETHEUS = "helm repo add prometheus-community https://prometheus-community.github.io/helm-charts"


def _controls() -> dict[str, tuple[list[str], str]]:
    """A wrong step, built from the page's own lines, and what the rehearsal must say about it."""
    ca = _page_line("helm install cluster-autoscaler")
    return {
        "autoscaler-service-account": (
            [_CLUSTER, _AUTOSCALER, ca.replace("serviceAccount.name=cluster-autoscaler", "serviceAccount.name=ca")],
            "ServiceAccount kube-system/ca is none of cluster.yaml's",
        ),
        "autoscaler-cluster-name": (
            [_CLUSTER, _AUTOSCALER, ca.replace("clusterName=resnet-serving", "clusterName=other")],
            "autoDiscovery.clusterName is not the cluster eksctl created",
        ),
        "autoscaler-before-its-repository": ([_CLUSTER, ca], "`helm repo add autoscaler …` must come first"),
        "adapter-before-prometheus": (
            [_CLUSTER, _PROMETHEUS, _page_line("helm install prometheus-adapter")],
            "prometheus-adapter before kube-prometheus-stack",
        ),
        "adapter-rule-not-rendered": (
            [
                _CHART + " --set autoscaling.saturation.adapterRuleConfigMap=false",
                _page_line("kubectl -n resnet-serving get configmap"),
            ],
            f'configmaps "{ADAPTER_CONFIGMAP}" not found',
        ),
        "prometheus-release-not-the-labels": (
            [
                _CHART,
                _PROMETHEUS,
                _page_line("helm install kube-prometheus-stack").replace(
                    "install kube-prometheus-stack", "install kps"
                ),
                _page_line("helm upgrade resnet50-serving"),
            ],
            "label release=kube-prometheus-stack, not kps",
        ),
        "upgrade-without-reuse-values": (
            [_CHART, _page_line("helm upgrade resnet50-serving").replace(" --reuse-values", "")],
            "helm template failed",
        ),
        "helm-test-before-the-rollout": (
            [_CHART, _page_line("helm test")],
            "helm test before `kubectl rollout status`",
        ),
    }


@pytest.mark.parametrize("name", sorted(_controls()))
def test_a_wrong_step_fails_the_rehearsal(world: dict[str, Any], tmp_path: Path, name: str) -> None:
    lines, message = _controls()[name]
    r = Rehearsal(tmp_path, world["url"], stack_outputs(REGION, world["key_arn"]))
    proc = r.run("\n".join([f"export AWS_REGION={REGION}", *lines]) + "\n", timeout=TIMEOUT_S)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]


def test_the_first_of_the_images_digests_may_be_another_registrys(world: dict[str, Any], tmp_path: Path) -> None:
    """The docker stand-in answers as docker may, another registry's digest first: so the page's `index .RepoDigests
    0` (before issue #28) would have handed the chart a digest ECR never had, which the test above catches."""
    from resnet_serving import __version__

    r = Rehearsal(tmp_path, world["url"], stack_outputs(REGION, world["key_arn"]))
    ref = f"{r.outputs['resnet-serving-store']['ServingRepositoryUri']}:{__version__}"
    script = f"""export AWS_REGION={REGION}
docker tag resnet-serving:{__version__} {ref}
docker push {ref}
docker image inspect --format '{{{{index .RepoDigests 0}}}}' {ref}
"""
    proc = r.run(script, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == OTHER_REGISTRY_DIGEST
