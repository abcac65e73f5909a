"""infra/config.json validation: each bad value fails before any construct is built, naming the parameter.

No CDK needed: config.py imports nothing from aws-cdk-lib, and app.py loads the config before importing it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resnet_serving.plan import limits as capacity
from tests.helpers.infra import INFRA

from resnet_infra.config import DEFAULT_CONFIG, LOG_RETENTION_DAYS, ConfigError, load, parse  # isort: skip


def base() -> dict[str, Any]:
    data = json.loads(DEFAULT_CONFIG.read_text())
    # absolute, so that a copy written elsewhere still finds the shipped capacity file
    data["capacity_file"] = str((DEFAULT_CONFIG.parent / data["capacity_file"]).resolve())
    return data


def with_(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base())
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


def test_the_committed_config_is_valid_and_keeps_the_issue_defaults() -> None:
    cfg = load()
    front, sm = capacity.load().front_door, capacity.load().sagemaker  # the one input for every limit
    assert (cfg.api.throttle_rate, cfg.api.throttle_burst) == (front.throttle_rate, front.throttle_burst)
    assert cfg.api.waf_rate_limit_per_5min == front.waf_rate_limit_per_5min
    assert cfg.sagemaker.max_instances == sm.max_instances
    assert cfg.log_retention_days in LOG_RETENTION_DAYS
    assert set(cfg.roles) == {"serving", "operator", "publisher", "sagemaker", "deployer"}
    # The deployer is the account's, as the publisher is; the operator's SageMaker sync is opt-in.
    assert cfg.sagemaker.deployer_principals == ("arn:${AWS::Partition}:iam::${AWS::AccountId}:root",)
    assert cfg.eks.operator_sagemaker_sync is False


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("api.throttle_rate", 1000, "api.throttle_rate comes from the capacity file's front_door.throttle_rate"),
        ("api.throttle_burst", 2000, "api.throttle_burst comes from the capacity file's front_door.throttle_burst"),
        ("sagemaker.max_instances", 4, "sagemaker.max_instances comes from the capacity file's sagemaker.max_"),
        ("budget.monthly_usd", 18100, "budget.monthly_usd comes from the capacity file's budget.monthly_usd"),
        ("capacity_file", KeyError, "capacity_file is missing"),
        ("capacity_file", "", "capacity_file must be a non-empty string, got ''"),
        ("capacity_file", "/nonexistent/capacity.json", "capacity_file: /nonexistent/capacity.json: cannot read"),
        ("store.bucket_name", KeyError, "store.bucket_name is missing"),
        ("store.bucket_name", "", "store.bucket_name must be a non-empty string, got ''"),
        ("store.bucket_name", "Models_Bucket", "store.bucket_name is not a valid S3 bucket name"),
        ("store.bucket_name", "models-${AWS::StackName}", "store.bucket_name is not a valid S3 bucket name"),
        ("log_retention_days", 45, "log_retention_days must be one of CloudWatch Logs' values 1, 3, 5"),
        ("log_retention_days", 0, "got 0"),
        ("roles", {}, "roles must name the serving, operator, publisher, sagemaker, deployer roles, got {}"),
        ("roles", [], "roles must name the serving, operator, publisher, sagemaker, deployer roles, got []"),
        ("roles.deployer", KeyError, "roles.deployer is missing"),
        ("roles.deployer", "resnet-serving-publisher", "roles: each role needs its own name"),
        ("roles.deployer", "bad name", "roles.deployer is not a valid IAM role name: 'bad name'"),
        ("roles.publisher", KeyError, "roles.publisher is missing"),
        ("roles.publisher", "resnet-serving-model-reader", "roles: each role needs its own name"),
        ("ecr_repositories", [], "ecr_repositories must name two ECR repositories, the serving image's then"),
        ("ecr_repositories", ["resnet-serving"], "ecr_repositories must name two ECR repositories"),
        ("ecr_repositories", "resnet-serving", "ecr_repositories must name two ECR repositories"),
        ("ecr_repositories", ["resnet-serving", "Operator"], "ecr_repositories[1] is not a valid ECR repository name"),
        ("ecr_repositories", ["resnet-serving", "resnet-serving"], "ecr_repositories: the serving and operator images"),
        ("store.noncurrent_expiration_days", 10, "store.noncurrent_expiration_days (10) must be later than"),
        ("api.waf_rate_limit_per_5min", 5, "api.waf_rate_limit_per_5min comes from the capacity file's front_door"),
        ("sagemaker.endpoint_name", "bad_name", "sagemaker.endpoint_name is not a valid SageMaker endpoint name"),
        ("alarms.error_5xx_percent", 150, "alarms.error_5xx_percent must be at most 100"),
        ("api.throtle_rate", 5, "api: unknown parameter(s) throtle_rate"),
        ("sagemaker.deployer_principals", KeyError, "sagemaker.deployer_principals is missing"),
        ("sagemaker.deployer_principals", [], "sagemaker.deployer_principals must list at least one IAM principal"),
        ("sagemaker.deployer_principals", "arn:aws:iam::123456789012:root", "must list at least one IAM principal"),
        ("sagemaker.deployer_principals", ["*"], "sagemaker.deployer_principals[0] is not an IAM principal ARN"),
        ("sagemaker.deployer_principals", ["arn:aws:iam::*:root"], "sagemaker.deployer_principals[0] is not an IAM"),
        (
            "sagemaker.deployer_principals",
            ["arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:role/ci-*"],
            "sagemaker.deployer_principals[1] is not an IAM principal ARN",
        ),
        (
            "sagemaker.deployer_principals",
            ["arn:aws:sts::123456789012:assumed-role/ci/session"],
            "sagemaker.deployer_principals[0] is not an IAM principal ARN",
        ),
        (
            "sagemaker.deployer_principals",
            ["arn:aws:iam::123456789012:role/ci", "arn:aws:iam::123456789012:role/ci"],
            "sagemaker.deployer_principals names a principal twice",
        ),
        ("eks.operator_sagemaker_sync", "yes", "eks.operator_sagemaker_sync must be true or false, got 'yes'"),
        ("eks.operator_sagemaker_sync", 1, "eks.operator_sagemaker_sync must be true or false, got 1"),
        ("eks.operator_sagemaker_sync", None, "eks.operator_sagemaker_sync must be true or false, got None"),
    ],
)
def test_bad_values_name_the_parameter(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(with_(path, value))
    assert message in str(err.value)


def _capacity_with(tmp_path: Path, section: str, key: str, value: Any) -> dict[str, Any]:
    limits = json.loads(capacity.load().to_json())
    limits[section][key] = value
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(limits))
    return with_("capacity_file", str(path))


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("front_door", "throttle_burst", 99, "front_door.throttle_burst (99) is below front_door.throttle_rate (100)"),
        ("front_door", "throttle_rate", 0, "front_door.throttle_rate must be a whole number of at least 1, got 0"),
        ("front_door", "waf_rate_limit_per_5min", 5, "front_door.waf_rate_limit_per_5min (5) is below the throttle"),
        ("sagemaker", "max_instances", 1.5, "sagemaker.max_instances must be a whole number of at least 1, got 1.5"),
    ],
)
def test_a_bad_capacity_file_names_the_file_and_the_field(
    tmp_path: Path, section: str, key: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse(_capacity_with(tmp_path, section, key, value))
    assert str(err.value).startswith(f"capacity_file: {tmp_path / 'capacity.json'}: ")
    assert message in str(err.value)


def test_replication_needs_valid_arns() -> None:
    good = {
        "destination_bucket_arn": "arn:aws:s3:::resnet-serving-models-dr",
        "destination_kms_key_arn": "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "role_name": "resnet-serving-store-replication",
    }
    cfg = parse(with_("store.replication", good))
    assert cfg.store.replication is not None and cfg.store.replication.role_name == good["role_name"]
    with pytest.raises(ConfigError, match=r"store\.replication\.destination_kms_key_arn is not a valid key ARN"):
        parse(with_("store.replication", {**good, "destination_kms_key_arn": "alias/dr"}))


def test_deployer_principals_accept_accounts_roles_and_users() -> None:
    principals = [
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:root",
        "arn:aws:iam::123456789012:role/ci/github-deploy",
        "arn:aws-cn:iam::123456789012:user/release",
    ]
    assert parse(with_("sagemaker.deployer_principals", principals)).sagemaker.deployer_principals == tuple(principals)


def test_operator_sagemaker_sync_is_opt_in() -> None:
    assert parse(with_("eks.operator_sagemaker_sync", KeyError)).eks.operator_sagemaker_sync is False
    assert parse(with_("eks.operator_sagemaker_sync", True)).eks.operator_sagemaker_sync is True


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the infra config"):
        load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"project": ')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1"):
        load(bad)


def test_app_exits_2_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_capacity_with(tmp_path, "front_door", "throttle_burst", 10)))
    out = tmp_path / "templates"
    proc = subprocess.run(
        [sys.executable, str(INFRA / "app.py"), "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: capacity_file: {tmp_path / 'capacity.json'}: front_door.throttle_burst (10) is below "
        "front_door.throttle_rate (100)"
    )
    assert not out.exists(), "nothing may be written for a bad config"


ALB = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/k8s-resnetse-resnet50-0123456789/0123abcd"
NLB = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/resnet-serving-eks/0123abcd"
EKS_ON = {
    "enabled": True,
    "load_balancer_arn": ALB,
    "host": "resnet50.internal.example.com",
    "protocol": "https",
    "vpc_link_subnet_ids": ["subnet-0123456789abcdef0"],
    "vpc_link_security_group_ids": ["sg-0123456789abcdef0"],
}


def test_eks_integration_is_off_by_default_and_on_for_an_alb_or_an_nlb() -> None:
    assert load().api.eks_integration is None
    alb = parse(with_("api.eks_integration", EKS_ON)).api.eks_integration
    assert alb is not None and alb.vpc_link_v2 and alb.subnet_ids == ("subnet-0123456789abcdef0",)
    nlb_on = {**EKS_ON, "load_balancer_arn": NLB, "vpc_link_subnet_ids": [], "vpc_link_security_group_ids": []}
    nlb = parse(with_("api.eks_integration", nlb_on)).api.eks_integration
    assert nlb is not None and not nlb.vpc_link_v2
    # Off means off: the other keys may stay unset.
    assert (
        parse(with_("api.eks_integration", {"enabled": False, "load_balancer_arn": None})).api.eks_integration is None
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"load_balancer_arn": None},
            "api.eks_integration.load_balancer_arn is missing: with api.eks_integration.enabled on, name the EKS "
            "path's internal ALB (or the NLB in front of it)",
        ),
        ({"enabled": "yes"}, "api.eks_integration.enabled must be true or false, got 'yes'"),
        (
            {"load_balancer_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/tg/0123abcd"},
            "api.eks_integration.load_balancer_arn is not a valid ALB or NLB ARN",
        ),
        ({"host": None}, "api.eks_integration.host is missing"),
        ({"host": "https://resnet50.example.com"}, "api.eks_integration.host is not a valid host name"),
        ({"protocol": "tcp"}, "api.eks_integration.protocol is not a valid protocol (http or https): 'tcp'"),
        ({"vpc_link_subnet_ids": []}, "api.eks_integration.vpc_link_subnet_ids and "),
        ({"vpc_link_subnet_ids": ["subnet-xyz"]}, "api.eks_integration.vpc_link_subnet_ids[0] is not a valid subnet"),
        ({"vpc_link_security_group_ids": "sg-0123456789abcdef0"}, "vpc_link_security_group_ids must be a list"),
        ({"load_balancer_arn": NLB}, "must be empty for an NLB: a VPC link V1 reaches the NLB itself"),
        ({"vpc_link": "v2"}, "api.eks_integration: unknown parameter(s) vpc_link"),
    ],
)
def test_eks_integration_errors_name_the_parameter(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(with_("api.eks_integration", {**EKS_ON, **change}))
    assert message in str(err.value)


def test_app_exits_2_when_the_eks_integration_is_on_without_a_load_balancer(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(with_("api.eks_integration", {**EKS_ON, "load_balancer_arn": None})))
    proc = subprocess.run(
        [sys.executable, str(INFRA / "app.py"), "--config", str(config), "--out", str(tmp_path / "templates")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: api.eks_integration.load_balancer_arn is missing")
    assert "Traceback" not in proc.stderr
