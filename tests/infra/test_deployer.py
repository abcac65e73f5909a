"""The SageMaker deployer role (issue 28): who may assume it, and that it may do what
`resnet-serving sagemaker deploy|status|rollback|delete` calls, on the project's resources only.

The action list is read off src/resnet_serving/sagemaker/ itself (every `call(clients.<client>, "<method>", ...)`),
so a new AWS call there without a grant here fails a test, not a deployment.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.infra import ROOT, Synth, resources, synthesize

from resnet_infra.config import DEFAULT_CONFIG, load  # isort: skip
from resnet_infra.naming import ALARM_KINDS, DEPLOY, alarm_name, guardrail_alarm_names  # isort: skip

from resnet_serving.naming import EKS

pytestmark = pytest.mark.cdk

CFG = load()
SAGEMAKER_SRC = ROOT / "src" / "resnet_serving" / "sagemaker"
PRINCIPALS = ("arn:aws:iam::123456789012:role/ci-deploy", "arn:aws:iam::123456789012:user/release")


@pytest.fixture(scope="session")
def sync(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The operator's SageMaker sync on, and a role and a user as the deployer's principals (cdk-nag, cfn-lint
    and checkov run on the same options in test_options.py)."""
    data = json.loads(DEFAULT_CONFIG.read_text())
    data["eks"]["operator_sagemaker_sync"] = True
    data["sagemaker"]["deployer_principals"] = list(PRINCIPALS)
    return synthesize(tmp_path_factory.mktemp("cdk-out-sync"), data)


# ---- the actions the code calls -----------------------------------------------------------------------
def client_services() -> dict[str, str]:
    """``Clients`` field -> botocore service name, from aws.py (``Clients(make("sagemaker"), ...)``)."""
    tree = ast.parse((SAGEMAKER_SRC / "aws.py").read_text(encoding="utf-8"))
    (cls,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Clients"]
    fields = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    (ctor,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Clients"]
    services = []
    for arg in ctor.args:
        assert isinstance(arg, ast.Call) and isinstance(arg.args[0], ast.Constant), ast.unparse(arg)
        services.append(arg.args[0].value)
    return dict(zip(fields, services, strict=True))


def _strings_passed(tree: ast.Module, function: ast.FunctionDef, parameter: str) -> set[str]:
    """The string constants the module passes to ``function`` for ``parameter``: ``_listed(clients, "list_models")``."""
    index = [a.arg for a in function.args.args].index(parameter)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == function.name:
            arg = node.args[index]
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), ast.unparse(node)
            found.add(arg.value)
    assert found, f"{function.name}() is never called with a literal {parameter}"
    return found


def called_methods(path: Path) -> set[tuple[str, str]]:
    """(client field, boto3 method) of every ``call(clients.X, "method", ...)`` in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    enclosing: dict[ast.AST, ast.FunctionDef] = {}
    # ast.walk is breadth-first, so a nested function comes later and overwrites its parent: the innermost wins.
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        for node in ast.walk(fn):
            if node is not fn:
                enclosing[node] = fn
    out = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "call"):
            continue
        client, method = node.args[0], node.args[1]
        where = f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}"
        assert isinstance(client, ast.Attribute) and getattr(client.value, "id", None) == "clients", where
        if isinstance(method, ast.Constant) and isinstance(method.value, str):
            out.add((client.attr, method.value))
        elif isinstance(method, ast.Name) and node in enclosing:
            out |= {(client.attr, m) for m in _strings_passed(tree, enclosing[node], method.id)}
        else:
            raise AssertionError(f"cannot tell which AWS method {where} calls: give it a literal name")
    return out


def iam_actions(paths: list[Path]) -> set[str]:
    """The IAM actions those modules' calls need: service prefix + the API operation name botocore maps to."""
    import botocore.session
    from botocore import xform_name

    from resnet_serving.sagemaker.errors import ACTION_PREFIX

    services = client_services()
    session = botocore.session.get_session()
    out = set()
    for path in paths:
        for client, method in called_methods(path):
            service = services[client]
            operations = {xform_name(op): op for op in session.get_service_model(service).operation_names}
            assert method in operations, f"{path.name}: {service} has no method {method}"
            out.add(f"{ACTION_PREFIX[service]}:{operations[method]}")
    return out


ALL_MODULES = sorted(SAGEMAKER_SRC.glob("*.py"))
# deploy.py holds deploy, rollback and update_endpoint_version (what the operator runs for spec.sagemakerEndpoint).
DEPLOY_MODULES = [SAGEMAKER_SRC / "deploy.py", SAGEMAKER_SRC / "package.py"]


def test_the_scan_finds_the_calls_of_deploy_status_rollback_and_delete() -> None:
    # A scan that found nothing would make the grant tests below pass vacuously.
    found = iam_actions(ALL_MODULES)
    assert {
        "sagemaker:CreateModel",
        "sagemaker:UpdateEndpoint",
        "sagemaker:ListModels",  # through manage._listed(clients, "list_models", ...)
        "sagemaker:DeleteEndpoint",
        "cloudwatch:PutMetricAlarm",
        "application-autoscaling:RegisterScalableTarget",
    } <= found
    assert len(found) >= 20


def test_the_scan_fails_on_a_call_it_cannot_name(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("def f(clients, op):\n    call(clients.sm, op.upper(), 'x')\n")
    with pytest.raises(AssertionError, match="cannot tell which AWS method"):
        called_methods(source)
    source.write_text("def f(clients):\n    call(clients.sm, 'no_such_method', 'x')\n")
    with pytest.raises(AssertionError, match="has no method no_such_method"):
        iam_actions([source])


# ---- the role in the templates ----------------------------------------------------------------------------
def role(synth: Synth, kind: str) -> tuple[str, dict[str, Any]]:
    roles = resources(synth.templates["roles"], "AWS::IAM::Role")
    ((logical, found),) = [(k, r) for k, r in roles.items() if r["Properties"]["RoleName"] == CFG.roles[kind]]
    return logical, found


def policy_statements(synth: Synth, kind: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the role of ``kind``."""
    logical, _ = role(synth, kind)
    return [
        s
        for p in resources(synth.templates["roles"], "AWS::IAM::Policy").values()
        if {"Ref": logical} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in listed(s["Action"])}


def statements_with(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in statements if action in listed(s["Action"])]


def rendered(resource: Any) -> str:
    """A resource ARN as text: Fn::Sub bodies as written, Fn::Join parts joined with <...> for references."""
    if isinstance(resource, str):
        return resource
    if "Fn::Sub" in resource:
        return str(resource["Fn::Sub"])
    if "Fn::Join" in resource:
        return "".join(
            rendered(p) if not isinstance(p, dict) or "Fn::Sub" in p else "<ref>" for p in resource["Fn::Join"][1]
        )
    return "<ref>"


def test_deployer_role_exists_and_its_arn_is_an_output(synth: Synth) -> None:
    logical, _ = role(synth, "deployer")
    outputs = synth.templates["roles"]["Outputs"]
    assert outputs["SageMakerDeployerRoleArn"]["Value"] == {"Fn::GetAtt": [logical, "Arn"]}


def test_deployer_may_be_assumed_by_the_configured_principals_only(synth: Synth) -> None:
    _, found = role(synth, "deployer")
    (statement,) = found["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    assert set(statement["Principal"]) == {"AWS"}
    principals = {rendered(p) for p in listed(statement["Principal"]["AWS"])}
    assert principals == set(CFG.sagemaker.deployer_principals)


def test_deployer_is_granted_every_action_the_sagemaker_code_calls(synth: Synth) -> None:
    missing = iam_actions(ALL_MODULES) - granted(policy_statements(synth, "deployer"))
    assert not missing, f"src/resnet_serving/sagemaker/ calls these without a grant to the deployer: {missing}"


def test_deployer_has_no_wildcard_action_and_no_action_outside_its_services(synth: Synth) -> None:
    actions = granted(policy_statements(synth, "deployer"))
    assert all("*" not in a for a in actions), actions
    services = {a.split(":", 1)[0] for a in actions}
    assert services == {"sagemaker", "cloudwatch", "application-autoscaling", "iam", "s3", "kms"}
    assert {a for a in actions if a.startswith("iam:")} == {"iam:PassRole", "iam:CreateServiceLinkedRole"}


def test_deployer_passes_only_the_execution_role_and_only_to_sagemaker(synth: Synth) -> None:
    statements = policy_statements(synth, "deployer")
    (passing,) = statements_with(statements, "iam:PassRole")
    assert listed(passing["Action"]) == ["iam:PassRole"]
    assert [rendered(r) for r in listed(passing["Resource"])] == [
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{CFG.roles['sagemaker']}"
    ]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    (slr,) = statements_with(statements, "iam:CreateServiceLinkedRole")
    assert slr["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }


def test_deployer_resources_are_the_projects(synth: Synth) -> None:
    statements = policy_statements(synth, "deployer")
    name = CFG.sagemaker.endpoint_name[:24].rstrip("-").lower()
    unscoped = {"sagemaker:ListEndpointConfigs", "sagemaker:ListModels"} | {
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
    }
    for s in statements:
        arns = [rendered(r) for r in listed(s["Resource"])]
        actions = set(listed(s["Action"]))
        if "*" in arns:
            assert arns == ["*"] and actions <= unscoped, s
        elif any(a.startswith("sagemaker:") for a in actions):
            assert all(a.startswith("sagemaker:") for a in actions), s
            assert all(
                r.endswith((f":endpoint/{name}*", f":endpoint-config/{name}*", f":model/{name}*")) for r in arns
            ), arns
        elif any(a.startswith("cloudwatch:") for a in actions):
            assert all(
                r.endswith((":alarm:resnet-serving-*", ":alarm:resnet-serving-*-deploy"))
                or r.endswith(f":alarm:TargetTracking-endpoint/{name}*")
                for r in arns
            ), arns
            # Every project alarm is readable; only deploy's own (-deploy) are writable.
            if any(r.endswith(":alarm:resnet-serving-*") for r in arns):
                assert actions == {"cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"}, s
        elif any(a.startswith("application-autoscaling:") for a in actions):
            assert arns == [
                "arn:${AWS::Partition}:application-autoscaling:${AWS::Region}:${AWS::AccountId}:scalable-target/*"
            ]
            assert s["Condition"]["StringEquals"] == {
                "application-autoscaling:service-namespace": "sagemaker",
                "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
            }


def test_deployer_reads_versions_and_writes_only_model_tarballs(synth: Synth) -> None:
    statements = policy_statements(synth, "deployer")
    objects = f"arn:${{AWS::Partition}}:s3:::{CFG.store.bucket_name}/{CFG.store.prefix}/"
    writes = {rendered(r) for s in statements_with(statements, "s3:PutObject") for r in listed(s["Resource"])}
    assert writes == {f"{objects}*/sagemaker/*"}
    deletes = {rendered(r) for s in statements_with(statements, "s3:DeleteObject") for r in listed(s["Resource"])}
    assert deletes == {f"{objects}*/sagemaker/*.tmp"}
    reads = {rendered(r) for s in statements_with(statements, "s3:GetObject") for r in listed(s["Resource"])}
    assert reads == {
        f"{objects}*/channels/*.json",  # deploy --channel
        f"{objects}*/manifest.json",
        f"{objects}*/model.mar",
        f"{objects}*/sagemaker/*",
    }
    actions = granted(statements)
    assert not {"s3:DeleteObjectVersion", "s3:PutObjectAcl", "s3:PutBucketPolicy"} & actions
    (listing,) = statements_with(statements, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{CFG.store.prefix}/*"]}}


def test_deployer_uses_the_store_key_through_s3_and_for_endpoint_volumes_only(synth: Synth) -> None:
    statements = [
        s for s in policy_statements(synth, "deployer") if any(a.startswith("kms:") for a in listed(s["Action"]))
    ]
    # Every KMS statement names one resource: the store key, imported from the store stack.
    for s in statements:
        (resource,) = listed(s["Resource"])
        assert "StoreKey" in json.dumps(resource["Fn::ImportValue"]), resource
    (s3,) = statements_with(statements, "kms:GenerateDataKey")
    assert set(listed(s3["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert s3["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}
    (grant,) = statements_with(statements, "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert granted(statements) == {"kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey"}


# ---- the store admits it ----------------------------------------------------------------------------------
def test_the_bucket_policy_admits_the_deployer(synth: Synth) -> None:
    policies = resources(synth.templates["store"], "AWS::S3::BucketPolicy").values()
    (deny,) = [
        s
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "DenyAllButTheResnetServingRoles"
    ]
    allowed = {a["Fn::Sub"] for a in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}
    assert f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{CFG.roles['deployer']}" in allowed
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= set(deny["Action"])


def test_the_key_policy_admits_the_deployer_through_its_iam_policy(synth: Synth) -> None:
    # The key policy delegates to IAM (the account root may use the key) and denies no one: the deployer's own
    # policy then decides, as for the other four roles.
    (key,) = resources(synth.templates["store"], "AWS::KMS::Key").values()
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    (root,) = statements
    assert root["Action"] == "kms:*" and "Condition" not in root
    assert root["Principal"]["AWS"]["Fn::Join"][1][-1] == ":root"


# ---- the operator -----------------------------------------------------------------------------------------
def test_the_operator_has_no_sagemaker_rights_by_default(synth: Synth) -> None:
    assert CFG.eks.operator_sagemaker_sync is False
    actions = granted(policy_statements(synth, "operator"))
    assert actions == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert "OperatorSageMakerSync" not in json.dumps(synth.templates["roles"])


def test_other_principals_replace_the_account_in_the_deployers_trust(sync: Synth) -> None:
    _, found = role(sync, "deployer")
    (statement,) = found["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert sorted(listed(statement["Principal"]["AWS"])) == sorted(PRINCIPALS)


def test_the_operator_sync_grants_what_deploy_calls_and_nothing_of_delete(sync: Synth, synth: Synth) -> None:
    statements = policy_statements(sync, "operator")
    actions = granted(statements)
    missing = iam_actions(DEPLOY_MODULES) - actions
    assert not missing, f"the operator's update_endpoint_version calls these without a grant: {missing}"
    # status and delete stay with the deployer: no listing, no deleting of endpoints, configs, models or alarms
    # (Application Auto Scaling's own target-tracking alarms aside, which it checks the caller may manage).
    assert {a for a in actions if a.startswith(("sagemaker:Delete", "sagemaker:List"))} == {"sagemaker:ListTags"}
    for s in statements_with(statements, "cloudwatch:DeleteAlarms"):
        assert all(":alarm:TargetTracking-endpoint/" in rendered(r) for r in listed(s["Resource"])), s
    assert "iam:CreateServiceLinkedRole" not in actions
    assert all("*" not in a for a in actions)
    (passing,) = statements_with(statements, "iam:PassRole")
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    # ...on top of the operator's read of the store, unchanged.
    assert {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"} <= actions
    assert granted(policy_statements(synth, "operator")) == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}


# ---- alarms: deploy writes only its own (one owner per alarm, in IAM too) ---------------------------------
# The statements' Resource patterns, matched as IAM matches them, against concrete ARNs of one account.
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}


def concrete(resource: Any) -> str:
    """A statement's resource with the pseudo parameters filled in; a reference to another resource fails."""
    text = rendered(resource)
    assert "<ref>" not in text, resource
    return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO[m.group(1)], text)


def iam_matches(pattern: str, value: str) -> bool:
    """IAM's resource matching: `*` any run of characters, `?` one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def allows(statements: list[dict[str, Any]], action: str, arn: str) -> bool:
    """Whether the statements allow ``action`` on ``arn``: an Allow matches and no Deny does."""
    matching = []
    for s in statements:
        # Forms this matcher does not evaluate fail the test rather than answer wrongly.
        assert not {"NotAction", "NotResource"} & set(s), s
        if action in listed(s["Action"]) and any(iam_matches(concrete(r), arn) for r in listed(s["Resource"])):
            assert "Condition" not in s, f"{action} on {arn} depends on a condition: {s}"
            matching.append(s)
    return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


def alarm_arn(name: str) -> str:
    return f"arn:aws:cloudwatch:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:alarm:{name}"


WRITES = ("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", "cloudwatch:DeleteAlarms")
READS = ("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource")
# The configured endpoint, and another one deploy may be pointed at (its names start with the configured one).
ENDPOINTS = (CFG.sagemaker.endpoint_name, f"{CFG.sagemaker.endpoint_name}-canary")


def test_the_matcher_tells_the_stacks_alarms_from_deploys() -> None:
    # The grant before one owner per alarm, `resnet-serving-*`, let deploy overwrite the stack's alarms.
    broad = [{"Effect": "Allow", "Action": ["cloudwatch:PutMetricAlarm"], "Resource": alarm_arn("resnet-serving-*")}]
    assert allows(broad, "cloudwatch:PutMetricAlarm", alarm_arn(alarm_name("resnet50", "5xx")))
    own = alarm_arn("resnet-serving-*-deploy")
    narrow = [{"Effect": "Allow", "Action": "cloudwatch:PutMetricAlarm", "Resource": own}]
    assert not allows(narrow, "cloudwatch:PutMetricAlarm", alarm_arn(alarm_name("resnet50", "5xx")))
    assert allows(narrow, "cloudwatch:PutMetricAlarm", alarm_arn(alarm_name("resnet50", "5xx", DEPLOY)))
    assert not allows(narrow, "cloudwatch:DeleteAlarms", alarm_arn(alarm_name("resnet50", "5xx", DEPLOY)))
    assert not iam_matches("a.c", "abc") and iam_matches("a?c", "abc")


def test_the_write_pattern_comes_from_the_naming_rule() -> None:
    from resnet_infra.roles import alarm_pattern

    assert alarm_pattern(DEPLOY) == "resnet-serving-*-deploy"
    assert alarm_pattern(EKS) == "resnet-serving-*-eks"
    with pytest.raises(ValueError, match="no alarm pattern for owner 'stack'"):
        alarm_pattern("stack")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", ALARM_KINDS)
def test_deployer_writes_deploys_own_alarms_and_only_reads_the_stacks(synth: Synth, endpoint: str, kind: str) -> None:
    statements = policy_statements(synth, "deployer")
    stack, own, eks = (alarm_arn(alarm_name(endpoint, kind, owner)) for owner in ("stack", DEPLOY, EKS))
    for action in WRITES:
        assert not allows(statements, action, stack), f"the deployer may {action} the stack's alarm {stack}"
        assert not allows(statements, action, eks), f"the deployer may {action} the chart example's alarm {eks}"
        assert allows(statements, action, own), f"the deployer may not {action} its own alarm {own}"
    for action in READS:
        assert allows(statements, action, stack) and allows(statements, action, own), action


def test_deployer_writes_no_alarm_outside_the_project(synth: Synth) -> None:
    statements = policy_statements(synth, "deployer")
    for name in ("billing-5xx-deploy", "resnet-serving", "other-resnet-serving-resnet50-5xx-deploy"):
        assert not any(allows(statements, a, alarm_arn(name)) for a in (*WRITES, *READS)), name


def test_deployer_keeps_the_target_tracking_alarm_grants(synth: Synth) -> None:
    # Application Auto Scaling checks the caller of PutScalingPolicy may manage the alarms it makes for the variant.
    statements = policy_statements(synth, "deployer")
    name = f"TargetTracking-endpoint/{CFG.sagemaker.endpoint_name}/variant/{CFG.sagemaker.variant_name}-AlarmHigh-1a2b"
    for action in ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"):
        assert allows(statements, action, alarm_arn(name)), action
    assert not allows(statements, "cloudwatch:PutMetricAlarm", alarm_arn("TargetTracking-endpoint/other/variant/x"))


@pytest.mark.parametrize("kind", ALARM_KINDS)
def test_the_operator_sync_writes_only_deploys_own_alarms_and_deletes_none(sync: Synth, kind: str) -> None:
    statements = policy_statements(sync, "operator")
    endpoint = CFG.sagemaker.endpoint_name
    stack, own = alarm_arn(alarm_name(endpoint, kind)), alarm_arn(alarm_name(endpoint, kind, DEPLOY))
    for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"):
        assert not allows(statements, action, stack), f"the operator may {action} the stack's alarm {stack}"
        assert allows(statements, action, own), f"the operator may not {action} deploy's alarm {own}"
    assert not any(allows(statements, "cloudwatch:DeleteAlarms", arn) for arn in (own, stack))
    for action in READS:
        assert allows(statements, action, stack), action


# ---- the execution role reads the alarms SageMaker's guardrails are given ---------------------------------
def test_the_execution_role_reads_the_stacks_alarms_and_deploys_guardrail_alarms(synth: Synth) -> None:
    statements = policy_statements(synth, "sagemaker")
    endpoint = CFG.sagemaker.endpoint_name
    readable = [*(alarm_name(endpoint, kind) for kind in ALARM_KINDS), *guardrail_alarm_names(endpoint, DEPLOY)]
    for name in readable:
        assert allows(statements, "cloudwatch:DescribeAlarms", alarm_arn(name)), name
    # Exactly those: not the chart example's, not another endpoint's, and nothing but DescribeAlarms.
    assert not allows(statements, "cloudwatch:DescribeAlarms", alarm_arn(alarm_name(endpoint, "5xx", EKS)))
    assert not allows(statements, "cloudwatch:DescribeAlarms", alarm_arn(alarm_name("other", "5xx", DEPLOY)))
    described = [s for s in statements if "cloudwatch:DescribeAlarms" in listed(s["Action"])]
    assert sorted(concrete(r) for s in described for r in listed(s["Resource"])) == sorted(map(alarm_arn, readable))
    for action in WRITES:
        assert not any(action in listed(s["Action"]) for s in statements), action
