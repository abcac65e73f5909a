"""The optional parts of the foundation, synthesized with them switched on (infra/config.json leaves them off).

Two extra synths per session, from infra/config.json plus the options below: `options` turns on cross-region
replication of the store, the private route to the EKS path's internal ALB (VPC link V2) and the operator's
SageMaker sync, and names a role and a user as the deployer's principals (tests/infra/test_deployer.py checks
what those last two grant); `options_nlb` takes that route through an NLB in front of the ALB instead (VPC
link V1). Each option gets its promises
checked with aws_cdk.assertions, and each synth has to stay clean under cdk-nag (with every acknowledgment
matching a real finding), cfn-lint and checkov, exactly as the default templates do. Nothing is deployed.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.infra import (
    INFRA,
    Synth,
    cfn_lint_errors,
    checkov_scan,
    findings_without_acks,
    one,
    resources,
    synthesize,
    unacked_findings,
    unmatched_acks,
    write_templates,
)

from resnet_infra.config import DEFAULT_CONFIG  # isort: skip

pytestmark = pytest.mark.cdk

assertions = pytest.importorskip("aws_cdk.assertions")
Match, Template = assertions.Match, assertions.Template

README = INFRA / "README.md"
CFG_MODEL = json.loads(DEFAULT_CONFIG.read_text())["api"]["model"]

REPLICATION = {
    "destination_bucket_arn": "arn:aws:s3:::resnet-serving-models-dr",
    "destination_kms_key_arn": "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "role_name": "resnet-serving-store-replication",
}


ALB_ARN = (
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/k8s-resnetse-resnet50-0123456789/"
    "0123456789abcdef"
)
NLB_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/resnet-serving-eks/0123456789abcdef"
EKS_ALB = {
    "enabled": True,
    "load_balancer_arn": ALB_ARN,
    "host": "resnet50.internal.example.com",
    "protocol": "https",
    "vpc_link_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "vpc_link_security_group_ids": ["sg-0123456789abcdef0"],
}
EKS_NLB = {**EKS_ALB, "load_balancer_arn": NLB_ARN, "vpc_link_subnet_ids": [], "vpc_link_security_group_ids": []}
VARIANTS = ("options", "options_nlb")
DEPLOYER_PRINCIPALS = ("arn:aws:iam::123456789012:role/ci-deploy", "arn:aws:iam::123456789012:user/release")


def options_config(variant: str = "options") -> dict[str, Any]:
    data = copy.deepcopy(json.loads(DEFAULT_CONFIG.read_text()))
    if variant == "options":
        data["store"]["replication"] = dict(REPLICATION)
        data["api"]["eks_integration"] = copy.deepcopy(EKS_ALB)
        data["eks"]["operator_sagemaker_sync"] = True
        data["sagemaker"]["deployer_principals"] = list(DEPLOYER_PRINCIPALS)
    else:
        data["api"]["eks_integration"] = copy.deepcopy(EKS_NLB)
    return data


@pytest.fixture(scope="session")
def options(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-out-options"), options_config("options"))


@pytest.fixture(scope="session")
def options_nlb(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-out-options-nlb"), options_config("options_nlb"))


@pytest.fixture(scope="session", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> tuple[str, Synth]:
    return request.param, request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def variant_findings(variant: tuple[str, Synth], tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    name, _ = variant
    return findings_without_acks(tmp_path_factory.mktemp(f"cdk-out-{name}-unacked"), options_config(name))


@pytest.fixture(scope="session")
def variant_checkov(variant: tuple[str, Synth], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    name, synth = variant
    out = tmp_path_factory.mktemp(f"checkov-{name}")
    write_templates(synth, out)
    return checkov_scan(out)


# ---- cross-region replication -------------------------------------------------------------------------
def model_bucket(synth: Synth) -> tuple[str, dict[str, Any]]:
    buckets = resources(synth.templates["store"], "AWS::S3::Bucket")
    ((logical, bucket),) = [(k, b) for k, b in buckets.items() if "BucketName" in b["Properties"]]
    return logical, bucket["Properties"]


def replication_policy(synth: Synth) -> tuple[str, list[dict[str, Any]]]:
    t = synth.templates["store"]
    roles = resources(t, "AWS::IAM::Role")
    (role_id,) = [k for k, r in roles.items() if r["Properties"]["RoleName"] == REPLICATION["role_name"]]
    (doc,) = [
        p["Properties"]["PolicyDocument"]
        for p in resources(t, "AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    return role_id, list(doc["Statement"])


def by_actions(statements: list[dict[str, Any]]) -> dict[frozenset[str], dict[str, Any]]:
    return {frozenset([s["Action"]] if isinstance(s["Action"], str) else s["Action"]): s for s in statements}


def test_replication_copies_every_kms_object_to_the_destination_under_the_replica_key(options: Synth) -> None:
    _, props = model_bucket(options)
    role_id, _ = replication_policy(options)
    config = props["ReplicationConfiguration"]
    assert config["Role"] == {"Fn::GetAtt": [role_id, "Arn"]}
    (rule,) = config["Rules"]
    assert rule["Status"] == "Enabled" and rule["Filter"] == {"Prefix": ""}
    assert rule["Destination"]["Bucket"] == REPLICATION["destination_bucket_arn"]
    # SSE-KMS objects are only replicated when asked for, and are re-encrypted with the destination's key.
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    assert rule["Destination"]["EncryptionConfiguration"] == {"ReplicaKmsKeyID": REPLICATION["destination_kms_key_arn"]}
    # A hidden version (push --force deletes a manifest) stays visible in the DR copy.
    assert rule["DeleteMarkerReplication"] == {"Status": "Disabled"}


def test_replication_is_off_in_the_default_templates(synth: Synth) -> None:
    _, props = model_bucket(synth)
    assert "ReplicationConfiguration" not in props
    names = {r["Properties"]["RoleName"] for r in resources(synth.templates["store"], "AWS::IAM::Role").values()}
    assert REPLICATION["role_name"] not in names


def test_replication_role_is_least_privilege(options: Synth) -> None:
    bucket_id, _ = model_bucket(options)
    role_id, statements = replication_policy(options)
    role = options.templates["store"]["Resources"][role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "s3.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert "ManagedPolicyArns" not in role

    s = by_actions(statements)
    bucket_arn = {"Fn::GetAtt": [bucket_id, "Arn"]}
    assert set(s) == {
        frozenset({"s3:GetReplicationConfiguration", "s3:ListBucket"}),
        frozenset({"s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"}),
        frozenset({"s3:ReplicateObject", "s3:ReplicateTags"}),
        frozenset({"kms:Decrypt"}),
        frozenset({"kms:Encrypt", "kms:GenerateDataKey"}),
    }
    assert all(st["Effect"] == "Allow" for st in statements)
    assert s[frozenset({"s3:GetReplicationConfiguration", "s3:ListBucket"})]["Resource"] == bucket_arn
    read = s[frozenset({"s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"})]
    assert read["Resource"] == {"Fn::Join": ["", [bucket_arn, "/*"]]}
    write = s[frozenset({"s3:ReplicateObject", "s3:ReplicateTags"})]
    assert write["Resource"] == REPLICATION["destination_bucket_arn"] + "/*"
    # No s3:ReplicateDelete: delete markers are not replicated, so the role cannot remove anything there.
    assert not any("Delete" in a for a in set().union(*s))

    decrypt = s[frozenset({"kms:Decrypt"})]
    (key_id,) = resources(options.templates["store"], "AWS::KMS::Key")
    assert decrypt["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}
    encrypt = s[frozenset({"kms:Encrypt", "kms:GenerateDataKey"})]
    assert encrypt["Resource"] == REPLICATION["destination_kms_key_arn"]
    assert encrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-central-1.amazonaws.com"}}


def test_no_policy_allows_a_wildcard_action_with_the_options_on(options: Synth) -> None:
    seen = 0
    for template in options.templates.values():
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                action = statement["Action"]
                for a in [action] if isinstance(action, str) else action:
                    seen += 1
                    assert a != "*" and not a.endswith(":*"), a
    assert seen > 30


def test_the_bucket_policy_admits_the_replication_role(options: Synth) -> None:
    role_id, _ = replication_policy(options)
    bucket_id, _ = model_bucket(options)
    policies = resources(options.templates["store"], "AWS::S3::BucketPolicy").values()
    (statements,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in policies
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    (deny,) = [st for st in statements if st.get("Sid") == "DenyAllButTheResnetServingRoles"]
    allowed = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert {"Fn::GetAtt": [role_id, "Arn"]} in allowed and len(allowed) == 6  # the five roles and it


# ---- private route to the EKS path's load balancer ----------------------------------------------------
def eks_method(synth: Synth) -> dict[str, Any]:
    methods = resources(synth.templates["frontdoor"], "AWS::ApiGateway::Method").values()
    (method,) = [m["Properties"] for m in methods if m["Properties"]["Integration"]["Type"] == "HTTP_PROXY"]
    return method


def test_eks_route_goes_through_a_vpc_link_v2_straight_to_the_alb(options: Synth) -> None:
    t = options.templates["frontdoor"]
    assert not resources(t, "AWS::ApiGateway::VpcLink"), "an ALB target needs no NLB and no V1 link"
    (link_id,) = resources(t, "AWS::ApiGatewayV2::VpcLink")
    link = one(t, "AWS::ApiGatewayV2::VpcLink")
    assert link["SubnetIds"] == EKS_ALB["vpc_link_subnet_ids"]
    assert link["SecurityGroupIds"] == EKS_ALB["vpc_link_security_group_ids"]
    integration = eks_method(options)["Integration"]
    assert integration["ConnectionType"] == "VPC_LINK" and integration["ConnectionId"] == {"Ref": link_id}
    assert integration["IntegrationTarget"] == ALB_ARN
    assert integration["Uri"] == f"https://{EKS_ALB['host']}/predictions/{CFG_MODEL}"
    assert (integration["IntegrationHttpMethod"], integration["TimeoutInMillis"]) == ("POST", 29000)
    assert "ContentHandling" not in integration, "binary bodies must pass through untouched"
    Template.from_json(t).has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "Integration": Match.object_like(
                {"Type": "HTTP_PROXY", "ConnectionType": "VPC_LINK", "ConnectionId": {"Ref": link_id}}
            )
        },
    )


def test_eks_route_through_an_nlb_uses_a_vpc_link_v1(options_nlb: Synth) -> None:
    t = options_nlb.templates["frontdoor"]
    assert not resources(t, "AWS::ApiGatewayV2::VpcLink")
    (link_id,) = resources(t, "AWS::ApiGateway::VpcLink")
    assert one(t, "AWS::ApiGateway::VpcLink")["TargetArns"] == [NLB_ARN]
    integration = eks_method(options_nlb)["Integration"]
    assert integration["ConnectionType"] == "VPC_LINK" and integration["ConnectionId"] == {"Ref": link_id}
    assert "IntegrationTarget" not in integration, "a V1 link has one target: the NLB"
    assert integration["Type"] == "HTTP_PROXY" and integration["TimeoutInMillis"] == 29000
    template = Template.from_json(t)
    template.resource_count_is("AWS::ApiGateway::VpcLink", 1)
    template.has_resource_properties("AWS::ApiGateway::VpcLink", {"TargetArns": [NLB_ARN]})


@pytest.mark.parametrize("name", VARIANTS)
def test_eks_route_has_the_same_auth_and_stage_as_the_sagemaker_route(
    name: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(name)
    t = synth.templates["frontdoor"]
    method = eks_method(synth)
    sagemaker = [
        m["Properties"]
        for m in resources(t, "AWS::ApiGateway::Method").values()
        if m["Properties"]["Integration"]["Type"] == "AWS"
    ]
    assert len(sagemaker) == 1
    for key in ("AuthorizationType", "AuthorizerId", "AuthorizationScopes", "ApiKeyRequired", "RequestValidatorId"):
        assert method[key] == sagemaker[0][key], key
    assert method["HttpMethod"] == "POST" and method["RequestParameters"] == {
        "method.request.header.Content-Type": True
    }
    # One stage, so the WAF association, throttling and access logs cover this route too.
    one(t, "AWS::ApiGateway::Stage")
    one(t, "AWS::WAFv2::WebACLAssociation")
    path = json.dumps(t["Outputs"]["EksApiUrl"]["Value"])
    assert f"/eks/predictions/{CFG_MODEL}" in path


def test_eks_route_is_off_in_the_default_templates(synth: Synth) -> None:
    t = synth.templates["frontdoor"]
    assert not resources(t, "AWS::ApiGateway::VpcLink") and not resources(t, "AWS::ApiGatewayV2::VpcLink")
    assert [m["Properties"]["Integration"]["Type"] for m in resources(t, "AWS::ApiGateway::Method").values()] == ["AWS"]
    assert "EksApiUrl" not in t["Outputs"]


# ---- cdk-nag, cfn-lint and checkov, with every option on ----------------------------------------------
def test_cdk_nag_passes_with_the_options_on(variant: tuple[str, Synth]) -> None:
    _, synth = variant
    assert synth.report is not None
    failures = [p for p in synth.report["pluginReports"] if p.get("conclusion") == "failure"]
    assert not failures, json.dumps(failures, indent=1)[:3000]


def test_every_acknowledgment_of_the_options_matches_a_real_finding(
    variant: tuple[str, Synth], variant_findings: dict[str, set[str]]
) -> None:
    name, synth = variant
    replication = [rule for path, rule, _ in synth.acks if path.startswith("Store/ReplicationRole")]
    assert len(replication) == (2 if name == "options" else 0), replication
    assert not unmatched_acks(synth, variant_findings)
    assert not unacked_findings(synth, variant_findings)


def test_readme_lists_the_suppressions_the_options_add(options: Synth, synth: Synth) -> None:
    section = README.read_text().split("## Suppressions with the options on", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \|[^|]*\| (.+?) \|$", section, flags=re.M))
    added = {(rule, reason) for _, rule, reason in options.acks} - {(rule, reason) for _, rule, reason in synth.acks}
    assert set(rows.items()) == added


def test_cfn_lint_reports_no_errors_with_the_options_on(variant: tuple[str, Synth], tmp_path: Path) -> None:
    _, synth = variant
    errors = cfn_lint_errors(write_templates(synth, tmp_path))
    assert not errors, json.dumps(errors, indent=1)[:3000]


def test_checkov_reports_zero_failures_with_the_options_on(
    variant: tuple[str, Synth], variant_checkov: dict[str, Any]
) -> None:
    _, synth = variant
    assert variant_checkov["summary"]["parsing_errors"] == 0
    scanned = {Path(c["file_path"]).stem for c in variant_checkov["results"]["passed_checks"]}
    assert scanned == set(synth.stack_names.values())
    failures = [(f["check_id"], f["resource"]) for f in variant_checkov["results"]["failed_checks"]]
    assert not failures, failures
    for s in variant_checkov["results"]["skipped_checks"]:
        assert len(s["check_result"].get("suppress_comment") or "") >= 30, f"{s['check_id']} {s['resource']}"
