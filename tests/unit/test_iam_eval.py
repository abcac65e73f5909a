"""The IAM evaluator of the permission check (tests/helpers/iam_eval.py) on small policies. Nothing is mocked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.iam_eval import Policy, PolicyError, Request, Template, decide, evaluate_policies, role_arn

ROLE = role_arn("reader")
OTHER = role_arn("someone-else")
BUCKET = "arn:aws:s3:::models"
KEY = "arn:aws:kms:us-east-1:123456789012:key/k1"


def policy(*statements: dict[str, Any]) -> Policy:
    return Policy("p", {"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Sid": "A", "Effect": "Allow", "Action": action, "Resource": resource, **extra}


def req(action: str, resource: str = f"{BUCKET}/store/x", principal: str = ROLE, **context: Any) -> Request:
    return Request(principal, action, resource, {"aws:PrincipalArn": principal, **context})


def test_an_allow_that_matches_allows_and_nothing_else_does() -> None:
    identity = [policy(allow("s3:GetObject", f"{BUCKET}/store/*"))]
    assert decide(req("s3:GetObject"), identity).allowed
    assert not decide(req("s3:PutObject"), identity).allowed
    assert not decide(req("s3:GetObject", f"{BUCKET}/other/x"), identity).allowed
    assert not decide(req("s3:GetObject"), []).allowed


def test_an_explicit_deny_wins_whatever_the_order() -> None:
    deny = {"Sid": "NoStore", "Effect": "Deny", "Action": "s3:*", "Resource": f"{BUCKET}/*"}
    for statements in ([allow("s3:GetObject"), deny], [deny, allow("s3:GetObject")]):
        decision = decide(req("s3:GetObject"), [policy(*statements)])
        assert not decision.allowed
        assert decision.explain() == "identity policy: explicit deny in statement NoStore"


def test_not_action_and_not_resource() -> None:
    identity = [policy({"Sid": "A", "Effect": "Allow", "NotAction": "s3:Delete*", "NotResource": f"{BUCKET}/secret"})]
    assert decide(req("s3:GetObject"), identity).allowed
    assert not decide(req("s3:DeleteObject"), identity).allowed
    assert not decide(req("s3:GetObject", f"{BUCKET}/secret"), identity).allowed


def test_wildcards_in_actions_are_case_blind_in_resources_not() -> None:
    identity = [policy(allow("S3:get*", f"{BUCKET}/store/*/manifest.json"))]
    assert decide(req("s3:GetObject", f"{BUCKET}/store/resnet50/1/manifest.json"), identity).allowed
    assert not decide(req("s3:GetObject", f"{BUCKET}/store/resnet50/1/MANIFEST.json"), identity).allowed
    assert decide(req("s3:GetObject", f"{BUCKET}/x1"), [policy(allow("s3:GetObject", f"{BUCKET}/x?"))]).allowed


def test_conditions_match_and_mismatch() -> None:
    st = allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["store/*"]}})
    assert decide(req("s3:ListBucket", BUCKET, **{"s3:prefix": "store/resnet50/"}), [policy(st)]).allowed
    assert not decide(req("s3:ListBucket", BUCKET, **{"s3:prefix": "other/"}), [policy(st)]).allowed
    st = allow("kms:Decrypt", KEY, Condition={"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}})
    via_s3 = req("kms:Decrypt", KEY, **{"kms:ViaService": "s3.us-east-1.amazonaws.com"})
    assert evaluate_policies([policy(st)], via_s3).effect == "allow"
    via_ec2 = req("kms:Decrypt", KEY, **{"kms:ViaService": "ec2.us-east-1.amazonaws.com"})
    assert evaluate_policies([policy(st)], via_ec2).effect == "none"


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
        ({"Bool": {"aws:SecureTransport": False}}, {"aws:SecureTransport": "false"}, True),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/reader"}}, {}, True),
        ({"ArnNotEquals": {"aws:PrincipalArn": [ROLE]}}, {}, False),
        ({"Null": {"s3:prefix": "true"}}, {"s3:prefix": None}, True),
        ({"Null": {"s3:prefix": "true"}}, {"s3:prefix": "a"}, False),
        ({"StringEqualsIfExists": {"x:k": "v"}}, {"x:k": None}, True),
        ({"StringEquals": {"x:k": "v"}}, {"x:k": None}, False),
        ({"StringNotEquals": {"x:k": "v"}}, {"x:k": None}, True),
        ({"NumericLessThan": {"x:n": "10"}}, {"x:n": "9"}, True),
        ({"ForAllValues:StringEquals": {"x:k": ["a", "b"]}}, {"x:k": ["a", "c"]}, False),
        ({"ForAnyValue:StringEquals": {"x:k": ["a", "b"]}}, {"x:k": ["c", "b"]}, True),
    ],
)
def test_condition_operators(condition: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    identity = [policy(allow("s3:GetObject", Condition=condition))]
    assert decide(req("s3:GetObject", **context), identity).allowed is expected


def test_an_unknown_operator_or_an_unmentioned_key_raises_never_allows() -> None:
    with pytest.raises(PolicyError, match="DateGreaterThan"):
        decide(req("s3:GetObject"), [policy(allow("s3:GetObject", Condition={"DateGreaterThan": {"a:b": "x"}}))])
    with pytest.raises(PolicyError, match="x:unknown"):
        decide(req("s3:GetObject"), [policy(allow("s3:GetObject", Condition={"StringEquals": {"x:unknown": "x"}}))])
    with pytest.raises(PolicyError, match="policy variables"):
        decide(req("s3:GetObject"), [policy(allow("s3:GetObject", "${aws:username}/*"))])


def test_s3_either_side_may_allow_and_a_bucket_deny_wins() -> None:
    bucket_allows = policy({**allow("s3:GetObject", f"{BUCKET}/*"), "Principal": {"AWS": ROLE}})
    assert decide(req("s3:GetObject"), [], bucket_allows, resource_kind="bucket").allowed
    assert not decide(req("s3:GetObject", principal=OTHER), [], bucket_allows, resource_kind="bucket").allowed
    deny_others = policy(
        {
            "Sid": "OnlyReader",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": [BUCKET, f"{BUCKET}/*"],
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [ROLE]}},
        }
    )
    identity = [policy(allow("s3:*"))]
    assert decide(req("s3:GetObject"), identity, deny_others, resource_kind="bucket").allowed
    decision = decide(req("s3:GetObject", principal=OTHER), identity, deny_others, resource_kind="bucket")
    assert not decision.allowed
    assert (
        decision.explain()
        == "identity policy: allowed by statement A; bucket policy: explicit deny in statement OnlyReader"
    )


def test_kms_needs_the_key_policy_and_through_the_root_also_the_identity_policy() -> None:
    root = policy({**allow("kms:*"), "Sid": "Root", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}})
    identity = [policy(allow("kms:Decrypt", KEY))]
    assert decide(req("kms:Decrypt", KEY), identity, root, resource_kind="key").allowed
    decision = decide(req("kms:Decrypt", KEY), [], root, resource_kind="key")
    assert not decision.allowed
    assert decision.explain() == "identity policy: no match; key policy: delegated to IAM by statement Root"
    direct = policy({**allow("kms:Decrypt"), "Principal": {"AWS": ROLE}})
    assert decide(req("kms:Decrypt", KEY), [], direct, resource_kind="key").allowed
    nobody = policy({**allow("kms:*"), "Principal": {"AWS": OTHER}})
    assert not decide(req("kms:Decrypt", KEY), identity, nobody, resource_kind="key").allowed
    with pytest.raises(PolicyError, match="no key policy"):
        decide(req("kms:Decrypt", KEY), identity, None, resource_kind="key")


def test_templates_resolve_refs_subs_joins_and_imports() -> None:
    body = {
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "reader"}},
            "Pol": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "Roles": [{"Ref": "Role"}],
                    "PolicyDocument": {
                        "Statement": [
                            allow(
                                "s3:GetObject",
                                {
                                    "Fn::Join": [
                                        "",
                                        [{"Fn::Sub": "arn:${AWS::Partition}:s3:::m-${AWS::AccountId}"}, "/*"],
                                    ]
                                },
                            ),
                            allow("kms:Decrypt", {"Fn::ImportValue": "store:KeyArn"}),
                        ]
                    },
                },
            },
        }
    }
    template = Template(body, imports={"store:KeyArn": KEY})
    [resolved] = template.identity_policies(ROLE)
    assert [s["Resource"] for s in resolved.statements] == ["arn:aws:s3:::m-123456789012/*", KEY]
    assert template.identity_policies(OTHER) == []
    with pytest.raises(PolicyError, match="ImportValue"):
        Template(body).identity_policies(ROLE)
