"""Log groups with the configured retention (CDK's RetentionDays enum is not indexable by a day count)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from .nag import checkov_skip


def log_group(scope: Construct, id: str, name: str, days: int, removal: RemovalPolicy) -> logs.LogGroup:
    group = logs.LogGroup(scope, id, log_group_name=name, retention=logs.RetentionDays.INFINITE, removal_policy=removal)
    cfn = group.node.default_child
    assert isinstance(cfn, logs.CfnLogGroup)
    cfn.retention_in_days = days  # config.parse has checked it against CloudWatch's accepted values
    checkov_skip(
        group,
        "CKV_AWS_158",
        "CloudWatch Logs encrypts every group at rest; these hold request metadata and container logs, no images.",
    )
    return group
