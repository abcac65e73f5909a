"""Every cdk-nag acknowledgment and checkov skip goes through here, with a one-line reason, so tests can list them.

`ACKS` records each acknowledgment as (construct path, rule, reason). With `ENABLED = False` they are only
recorded, not applied: the tests synthesize once that way to prove each one still matches a real finding.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Validations
from constructs import IConstruct

ENABLED = True
ACKS: list[tuple[str, str, str]] = []


def ack(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (`AwsSolutions-IAM5[Resource::...]` for a single finding) on scope."""
    if len(reason) < 30:
        raise ValueError(f"{rule}: a suppression needs a real reason, got {reason!r}")
    ACKS.append((scope.node.path, rule, reason))
    if ENABLED:
        Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def checkov_skip(scope: IConstruct, check: str, reason: str) -> None:
    """Skip one checkov check on this resource: written into its CloudFormation Metadata, where checkov reads it."""
    if len(reason) < 30:
        raise ValueError(f"{check}: a checkov skip needs a real reason, got {reason!r}")
    cfn = scope if isinstance(scope, CfnResource) else scope.node.default_child
    assert isinstance(cfn, CfnResource), scope.node.path
    skips = list((cfn.get_metadata("checkov") or {}).get("skip", []))
    skips.append({"id": check, "comment": reason})
    cfn.add_metadata("checkov", {"skip": skips})
