"""The optional parts of the foundation, synthesized with them switched on (infra/config.json leaves them off).

One extra synth per session, from infra/config.json plus the options below: cross-region replication of the
store. Each option gets its promises checked with aws_cdk.assertions-style reads, and the whole synth has to
stay clean under cdk-nag (with every acknowledgment matching a real finding), cfn-lint and checkov, exactly as
the default templates do. Nothing is deployed.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import (
    INFRA,
    Synth,
    cfn_lint_errors,
    checkov_scan,
    findings_without_acks,
    resources,
    synthesize,
    unacked_findings,
    unmatched_acks,
    write_templates,
)

from resnet_infra.config import DEFAULT_CONFIG  # isort: skip

pytestmark = pytest.mark.cdk

README = INFRA / "README.md"

REPLICATION = {
    "destination_bucket_arn": "arn:aws:s3:::resnet-serving-models-dr",
    "destination_kms_key_arn": "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "role_name": "resnet-serving-store-replication",
}


def options_config() -> dict[str, Any]:
    data = copy.deepcopy(json.loads(DEFAULT_CONFIG.read_text()))
    data["store"]["replication"] = dict(REPLICATION)
    return data


@pytest.fixture(scope="session")
def options(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-out-options"), options_config())


@pytest.fixture(scope="session")
def options_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    return findings_without_acks(tmp_path_factory.mktemp("cdk-out-options-unacked"), options_config())


@pytest.fixture(scope="session")
def options_checkov(options: Synth, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("checkov-options")
    write_templates(options, out)
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
    assert {"Fn::GetAtt": [role_id, "Arn"]} in allowed and len(allowed) == 5


# ---- cdk-nag, cfn-lint and checkov, with every option on ----------------------------------------------
def test_cdk_nag_passes_with_the_options_on(options: Synth) -> None:
    assert options.report is not None
    failures = [p for p in options.report["pluginReports"] if p.get("conclusion") == "failure"]
    assert not failures, json.dumps(failures, indent=1)[:3000]


def test_every_acknowledgment_of_the_options_matches_a_real_finding(
    options: Synth, options_findings: dict[str, set[str]]
) -> None:
    replication = [rule for path, rule, _ in options.acks if path.startswith("Store/ReplicationRole")]
    assert len(replication) == 2, replication
    assert not unmatched_acks(options, options_findings)
    assert not unacked_findings(options, options_findings)


def test_readme_lists_the_suppressions_the_options_add(options: Synth, synth: Synth) -> None:
    section = README.read_text().split("## Suppressions with the options on", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \|[^|]*\| (.+?) \|$", section, flags=re.M))
    added = {(rule, reason) for _, rule, reason in options.acks} - {(rule, reason) for _, rule, reason in synth.acks}
    assert set(rows.items()) == added


def test_cfn_lint_reports_no_errors_with_the_options_on(options: Synth, tmp_path: Path) -> None:
    errors = cfn_lint_errors(write_templates(options, tmp_path))
    assert not errors, json.dumps(errors, indent=1)[:3000]


def test_checkov_reports_zero_failures_with_the_options_on(options_checkov: dict[str, Any], options: Synth) -> None:
    assert options_checkov["summary"]["parsing_errors"] == 0
    scanned = {Path(c["file_path"]).stem for c in options_checkov["results"]["passed_checks"]}
    assert scanned == set(options.stack_names.values())
    failures = [(f["check_id"], f["resource"]) for f in options_checkov["results"]["failed_checks"]]
    assert not failures, failures
    for s in options_checkov["results"]["skipped_checks"]:
        assert len(s["check_result"].get("suppress_comment") or "") >= 30, f"{s['check_id']} {s['resource']}"
