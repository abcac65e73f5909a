"""Every step of the AWS install needs only what the synthesized templates grant to that step's role.

The install runs once, step by step, through the project's own entry points (the CLI's ``main`` and the
operator's store reader) against the moto server: a real HTTP endpoint on loopback for S3, KMS, SageMaker,
Application Auto Scaling and CloudWatch, standing in for AWS, which these tests cannot reach. moto does not
enforce IAM, so nothing is denied while the steps run; instead tests/helpers/aws_calls.py records each call with
botocore's event hooks and maps it to the IAM actions it needs (those a call implies included: KMS for SSE-KMS
objects, iam:PassRole, ...), and tests/helpers/iam_eval.py evaluates each against the step's role in
infra/templates/: its identity policies, the store's bucket policy and the store key's key policy.

The bucket is made as the store template makes it: the configured name and SSE-KMS by default under a
customer key (moto's KMS key stands in for the template's; its ARN resolves the template's references to it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from resnet_serving.cli import main
from resnet_serving.controller.observe import read_store
from resnet_serving.controller.spec import ModelDeploymentSpec
from tests.fixtures.archives import fake_archive
from tests.fixtures.moto_server import REGION, MotoS3, aws_test_env, moto_s3  # noqa: F401
from tests.helpers import REPO
from tests.helpers.aws_calls import Access, Recorder, recording
from tests.helpers.iam_eval import ACCOUNT, Decision, Policy, PolicyError, Request, Template, decide, role_arn

pytestmark = [pytest.mark.s3, pytest.mark.sagemaker]

TEMPLATES = REPO / "infra" / "templates"
CONFIG = json.loads((REPO / "infra" / "config.json").read_text(encoding="utf-8"))
ROLES = CONFIG["roles"]
BUCKET = CONFIG["store"]["bucket_name"].replace("${AWS::AccountId}", ACCOUNT)
PREFIX = CONFIG["store"]["prefix"]
STORE = f"s3://{BUCKET}/{PREFIX}"
ENDPOINT = CONFIG["sagemaker"]["endpoint_name"]
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{CONFIG['ecr_repositories'][0]}:1"
MiB = 1 << 20

#: Each install step and the role (a key of infra/config.json's "roles") it runs as.
STEPS = {
    "store push": "publisher",
    "store promote": "publisher",
    "fetch": "serving",
    "operator": "operator",
    "sagemaker deploy": "deployer",
    "sagemaker status": "deployer",
    "sagemaker deploy (update)": "deployer",
    "sagemaker rollback": "deployer",
    "sagemaker delete": "deployer",
    "sagemaker endpoint": "sagemaker",
}


@dataclass
class Policies:
    """The templates' policies, resolved for one KMS key ARN."""

    roles: Template
    store: Template

    @classmethod
    def load(cls, key_arn: str, templates: Path | None = None) -> Policies:
        templates = templates or TEMPLATES
        store = Template.load(templates / "resnet-serving-store.json")
        keys = [lid for lid, r in store.resources.items() if r["Type"] == "AWS::KMS::Key"]
        store.attrs.update({f"{lid}.Arn": key_arn for lid in keys})
        roles = Template.load(templates / "resnet-serving-roles.json", imports=store.exports())
        return cls(roles, store)

    def has_role(self, arn: str) -> bool:
        return any(
            r["Type"] == "AWS::IAM::Role" and self.roles.get_att(lid, "Arn") == arn
            for lid, r in self.roles.resources.items()
        )

    def decide(self, principal: str, access: Access, identity: list[Policy] | None = None) -> Decision:
        context = {**access.context, "aws:PrincipalArn": principal}
        request = Request(principal, access.action, access.resource, context)
        identity = self.roles.identity_policies(principal) if identity is None else identity
        if access.action.startswith("kms:"):
            return decide(request, identity, self.store.key_policies().get(access.resource), resource_kind="key")
        if access.resource.startswith("arn:aws:s3:::"):
            bucket = access.resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
            policy = self.store.bucket_policies().get(bucket)
            return decide(request, identity, policy, resource_kind="bucket" if policy else "")
        return decide(request, identity)


def missing_grants(
    policies: Policies, step: str, accesses: list[Access], identity: list[Policy] | None = None
) -> list[str]:
    """One line per access the step's role is not granted: the step, the principal, the action and why."""
    name = ROLES[STEPS[step]]
    principal = role_arn(name)
    lines = []
    if identity is None and not policies.has_role(principal):
        lines.append(
            f'step "{step}" (principal {name}): role {name} is not in {TEMPLATES.name}/resnet-serving-roles.json'
        )
    for access in accesses:
        decision = policies.decide(principal, access, identity)
        if not decision.allowed:
            lines.append(
                f'step "{step}" (principal {name}): {access.action} on {access.resource} is not allowed '
                f"({decision.explain()}) [{access.cause}]"
            )
    return lines


@dataclass
class Install:
    key_arn: str
    recorded: dict[str, list[Access]]


def _setup_client(server: MotoS3, service: str) -> Any:
    return boto3.session.Session().client(service, endpoint_url=server.url, region_name=REGION)


def _run(argv: list[str]) -> None:
    rc = main(argv)
    assert rc == 0, f"resnet-serving {' '.join(argv)} exited {rc}"


def _run_up_to_update_endpoint(argv: list[str], step: _Step) -> None:
    """moto has no UpdateEndpoint (it answers 500): the command fails there, every call before it recorded."""
    assert main(argv) != 0, f"resnet-serving {' '.join(argv)} succeeded: moto can update endpoints now"
    assert step.recorder.calls[-1].operation == "UpdateEndpoint", step.recorder.calls[-1]


@pytest.fixture(scope="module")
def install(moto_s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:  # noqa: F811
    """Run the install's steps once, in order, recording each step's calls; the steps share one store."""
    tmp = tmp_path_factory.mktemp("install")
    key_arn = _setup_client(moto_s3, "kms").create_key(Description="the store key")["KeyMetadata"]["Arn"]
    s3 = moto_s3.client()
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    url = ["--endpoint-url", moto_s3.url]
    store = ["--store", STORE, *url]
    recorded: dict[str, list[Access]] = {}

    def step(name: str) -> _Step:
        return _Step(name, recorded, {BUCKET: key_arn})

    # archives over the multipart threshold (8 MiB), as real ones are; labelled imagenet, as push to s3:// requires
    v1, _ = fake_archive(tmp / "v1", "1", 9 * MiB, source="imagenet")
    v2, _ = fake_archive(tmp / "v2", "2", 9 * MiB, source="imagenet")
    with step("store push"):
        _run(["push", str(v1), *store, "--kms-key-id", key_arn])
        _run(["push", str(v2), *store, "--kms-key-id", key_arn])
    with step("store promote"):
        _run(["promote", *store, "--version", "1", "--channel", "stable"])
    with step("fetch"):
        _run(["fetch", *store, "--channel", "stable", "--dest", str(tmp / "dest")])
    with step("operator"):
        spec = ModelDeploymentSpec(
            store=STORE, deployment="resnet50-serving", channel="stable", endpoint_url=moto_s3.url
        )
        view = read_store(spec)
        assert view.error is None and view.channel_version == "1", view
    sm = ["sagemaker", "deploy", *store, "--endpoint", ENDPOINT, "--image", IMAGE, "--autoscale-target", "120"]
    sm += ["--role", role_arn(ROLES["sagemaker"]), "--kms-key", key_arn]
    with step("sagemaker deploy") as deploy:
        _run([*sm, "--channel", "stable"])
    recorded["sagemaker endpoint"] = deploy.recorder.execution_role_accesses()
    with step("sagemaker status"):
        _run(["sagemaker", "status", "--endpoint", ENDPOINT, *url])
    with step("sagemaker deploy (update)") as update:
        _run_up_to_update_endpoint([*sm, "--version", "2"], update)
    # What a completed update leaves (version 2's config live), made directly, so rollback has a config to go back to
    client = _setup_client(moto_s3, "sagemaker")
    configs = client.list_endpoint_configs(NameContains=f"{ENDPOINT}-v2-")["EndpointConfigs"]
    live = client.describe_endpoint(EndpointName=ENDPOINT)
    tags = client.list_tags(ResourceArn=live["EndpointArn"])["Tags"]
    client.delete_endpoint(EndpointName=ENDPOINT)
    client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=configs[0]["EndpointConfigName"], Tags=tags)
    with step("sagemaker rollback") as rollback:
        _run_up_to_update_endpoint(["sagemaker", "rollback", "--endpoint", ENDPOINT, *url], rollback)
    with step("sagemaker delete"):
        _run(["sagemaker", "delete", "--endpoint", ENDPOINT, "--yes", *url])
    yield Install(key_arn, recorded)


class _Step:
    def __init__(self, name: str, recorded: dict[str, list[Access]], default_kms: dict[str, str]) -> None:
        self.name, self.recorded, self.default_kms = name, recorded, default_kms
        self.recorder: Recorder

    def __enter__(self) -> _Step:
        self._cm = recording(default_kms=self.default_kms)
        self.recorder = self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)
        self.recorded[self.name] = self.recorder.accesses()


@pytest.fixture(scope="module")
def policies(install: Install) -> Policies:
    return Policies.load(install.key_arn)


@pytest.mark.parametrize("step", list(STEPS))
def test_each_step_is_granted_what_it_calls(install: Install, policies: Policies, step: str) -> None:
    accesses = install.recorded[step]
    assert accesses, f"step {step!r} recorded no AWS call: the recording missed it"
    missing = missing_grants(policies, step, accesses)
    assert not missing, "\n" + "\n".join(missing)


def test_the_recording_includes_the_implied_actions(install: Install) -> None:
    """The KMS actions SSE-KMS implies, and iam:PassRole, are what users trip on: they must be checked."""

    def actions(step: str) -> set[str]:
        return {a.action for a in install.recorded[step]}

    assert {"s3:PutObject", "kms:GenerateDataKey", "kms:Decrypt", "s3:DeleteObject"} <= actions("store push")
    assert {"s3:GetObject", "kms:Decrypt"} <= actions("fetch")
    assert {"s3:GetObject", "s3:ListBucket"} <= actions("operator")
    assert {"sagemaker:CreateModel", "iam:PassRole", "kms:CreateGrant"} <= actions("sagemaker deploy")
    assert "sagemaker:UpdateEndpoint" in actions("sagemaker rollback")
    assert {"ecr:BatchGetImage", "s3:GetObject", "kms:Decrypt"} <= actions("sagemaker endpoint")


def test_removing_the_statement_that_grants_a_call_fails_the_check(install: Install, policies: Policies) -> None:
    """The control: without the statement that allowed push's first write, the check names that write."""
    step = "store push"
    principal = role_arn(ROLES[STEPS[step]])
    write = next(a for a in install.recorded[step] if a.action == "s3:PutObject")
    granted_by = policies.decide(principal, write).identity.statement
    assert granted_by, "the write was allowed by the bucket policy, not the identity policy"
    identity = copy.deepcopy(policies.roles.identity_policies(principal))
    for policy in identity:
        policy.document["Statement"] = [s for s in policy.statements if s.get("Sid") != granted_by]
    missing = missing_grants(policies, step, install.recorded[step], identity)
    assert any(f"s3:PutObject on {write.resource} is not allowed (identity policy: no match" in m for m in missing)


def test_an_unknown_condition_operator_fails_the_check(install: Install, policies: Policies) -> None:
    step = "fetch"
    principal = role_arn(ROLES[STEPS[step]])
    identity = copy.deepcopy(policies.roles.identity_policies(principal))
    for policy in identity:
        for st in policy.statements:
            st["Condition"] = {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}
    with pytest.raises(PolicyError, match="DateGreaterThan"):
        missing_grants(policies, step, install.recorded[step], identity)
