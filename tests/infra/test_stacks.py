"""One test per promise of the AWS foundation (issue 13), on the templates synthesized from infra/config.json.

aws_cdk.assertions reads the synthesized CloudFormation; nothing is deployed (moto's CloudFormation would
skip bucket policies, alarms, Cognito, WAF and stages while reporting success, so it is not used).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from resnet_serving.plan import limits as capacity
from tests.helpers.infra import Synth, one, resources

pytestmark = pytest.mark.cdk

assertions = pytest.importorskip("aws_cdk.assertions")
Match, Template = assertions.Match, assertions.Template

from resnet_infra.config import load  # noqa: E402
from resnet_infra.naming import alarm_name  # noqa: E402

CFG = load()


def tpl(synth: Synth, key: str) -> Any:
    return Template.from_json(synth.templates[key])


def model_bucket(synth: Synth) -> dict[str, Any]:
    buckets = resources(synth.templates["store"], "AWS::S3::Bucket")
    (props,) = [b["Properties"] for b in buckets.values() if "BucketName" in b["Properties"]]
    return props


def bucket_policy_statements(synth: Synth) -> list[dict[str, Any]]:
    policies = resources(synth.templates["store"], "AWS::S3::BucketPolicy")
    model = next(
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in policies.values()
        if "ModelStore" in p["Properties"]["Bucket"]["Ref"]
    )
    return list(model)


# ---- model store --------------------------------------------------------------------------------------
def test_bucket_is_sse_kms_with_a_bucket_key_under_a_rotating_cmk(synth: Synth) -> None:
    props = model_bucket(synth)
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_ref = rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0]
    key = synth.templates["store"]["Resources"][key_ref]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    assert props["BucketName"] == {"Fn::Sub": CFG.store.bucket_name}


def test_versioning_lifecycle_and_public_access_block(synth: Synth) -> None:
    props = model_bucket(synth)
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionTransitions"] == [
        {"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": CFG.store.noncurrent_to_intelligent_tiering_days}
    ]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": CFG.store.noncurrent_expiration_days}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": CFG.store.abort_incomplete_multipart_days}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_server_access_logs_go_to_the_log_bucket(synth: Synth) -> None:
    logging = model_bucket(synth)["LoggingConfiguration"]
    target = logging["DestinationBucketName"]["Ref"]
    log_bucket = synth.templates["store"]["Resources"][target]
    assert log_bucket["Type"] == "AWS::S3::Bucket" and "LoggingConfiguration" not in log_bucket["Properties"]
    assert logging["LogFilePrefix"]


def test_bucket_policy_is_tls_only(synth: Synth) -> None:
    statements = bucket_policy_statements(synth)
    tls = [s for s in statements if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert len(tls) == 1 and tls[0]["Effect"] == "Deny" and tls[0]["Action"] == "s3:*"
    assert tls[0]["Principal"] == {"AWS": "*"}


def test_bucket_policy_denies_everyone_but_the_five_roles(synth: Synth) -> None:
    (deny,) = [s for s in bucket_policy_statements(synth) if s.get("Sid") == "DenyAllButTheResnetServingRoles"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= set(deny["Action"])
    allowed = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    expected = {
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{CFG.roles[k]}"
        for k in ("serving", "operator", "publisher", "sagemaker", "deployer")
    }
    assert {a["Fn::Sub"] for a in allowed} == expected
    # ...and those names are the roles the roles stack creates.
    names = {r["Properties"]["RoleName"] for r in resources(synth.templates["roles"], "AWS::IAM::Role").values()}
    assert names == set(CFG.roles.values())


# ---- roles ----------------------------------------------------------------------------------------------
def role_policy(synth: Synth, kind: str) -> list[dict[str, Any]]:
    roles = resources(synth.templates["roles"], "AWS::IAM::Role")
    (logical,) = [k for k, r in roles.items() if r["Properties"]["RoleName"] == CFG.roles[kind]]
    policies = resources(synth.templates["roles"], "AWS::IAM::Policy").values()
    (doc,) = [p["Properties"]["PolicyDocument"] for p in policies if p["Properties"]["Roles"] == [{"Ref": logical}]]
    return list(doc["Statement"])


def actions(statements: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for s in statements:
        out |= {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
    return out


def test_no_role_policy_allows_a_wildcard_action(synth: Synth) -> None:
    seen = 0
    for template in synth.templates.values():
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                for action in actions([statement]):
                    seen += 1
                    assert action != "*" and not action.endswith(":*"), action
    assert seen > 20


@pytest.mark.parametrize("kind", ["serving", "operator"])
def test_irsa_roles_read_only_and_trust_one_service_account(synth: Synth, kind: str) -> None:
    assert actions(role_policy(synth, kind)) == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    roles = resources(synth.templates["roles"], "AWS::IAM::Role").values()
    (role,) = [r for r in roles if r["Properties"]["RoleName"] == CFG.roles[kind]]
    body, variables = role["Properties"]["AssumeRolePolicyDocument"]["Fn::Sub"]
    trust = json.loads(body)
    (statement,) = trust["Statement"]
    account = CFG.eks.serving_service_account if kind == "serving" else CFG.eks.operator_service_account
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"] == {
        "${Issuer}:aud": "sts.amazonaws.com",
        "${Issuer}:sub": f"system:serviceaccount:{CFG.eks.namespace}:{account}",
    }
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/${Issuer}")
    assert variables["Issuer"]["Fn::Select"][1]["Fn::Split"] == ["https://", {"Ref": "OidcIssuerUrl"}]


def test_publisher_writes_but_never_deletes_an_archive(synth: Synth) -> None:
    statements = role_policy(synth, "publisher")
    assert {"s3:PutObject", "s3:GetObject", "kms:GenerateDataKey"} <= actions(statements)
    assert "s3:DeleteObjectVersion" not in actions(statements)
    deletes = sorted(s["Resource"]["Fn::Join"][1][-1] for s in statements if "s3:DeleteObject" in actions([s]))
    assert deletes == [f"/{CFG.store.prefix}/*.tmp", f"/{CFG.store.prefix}/*/manifest.json"]


def test_sagemaker_role_has_store_kms_ecr_logs_and_describe_alarms(synth: Synth) -> None:
    statements = role_policy(synth, "sagemaker")
    assert {
        "s3:GetObject",
        "kms:Decrypt",
        "ecr:BatchGetImage",
        "ecr:GetAuthorizationToken",
        "logs:PutLogEvents",
        "cloudwatch:DescribeAlarms",
    } <= actions(statements)
    (alarms,) = [s for s in statements if s.get("Sid") == "GuardrailAlarms"]
    assert {r["Fn::Sub"].rsplit(":", 1)[1] for r in alarms["Resource"]} >= {
        alarm_name(CFG.sagemaker.endpoint_name, "5xx"),
        alarm_name(CFG.sagemaker.endpoint_name, "p99-latency"),
    }


def test_role_arns_bucket_key_and_api_url_are_outputs(synth: Synth) -> None:
    assert {
        "ServingRoleArn",
        "OperatorRoleArn",
        "PublisherRoleArn",
        "SageMakerExecutionRoleArn",
        "SageMakerDeployerRoleArn",
    } <= set(synth.templates["roles"]["Outputs"])
    assert {"BucketName", "KeyArn", "StoreUri"} <= set(synth.templates["store"]["Outputs"])
    assert "ApiUrl" in synth.templates["frontdoor"]["Outputs"]


# ---- front door ---------------------------------------------------------------------------------------
def test_rest_api_is_regional_with_binary_media_types(synth: Synth) -> None:
    tpl(synth, "frontdoor").has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "BinaryMediaTypes": ["image/*", "application/octet-stream", "multipart/form-data"],
        },
    )


def test_stage_throttling_xray_and_access_logs(synth: Synth) -> None:
    stage = one(synth.templates["frontdoor"], "AWS::ApiGateway::Stage")
    (settings,) = stage["MethodSettings"]
    # the capacity file's front door (src/resnet_serving/plan/capacity.json), through infra/config.json
    front = capacity.load().front_door
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (
        front.throttle_rate,
        front.throttle_burst,
    )
    assert settings["DataTraceEnabled"] is False
    assert stage["TracingEnabled"] is True
    assert stage["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0].startswith("AccessLogs")
    assert "$context.status" in stage["AccessLogSetting"]["Format"]


def test_usage_plan_and_api_key(synth: Synth) -> None:
    plan = one(synth.templates["frontdoor"], "AWS::ApiGateway::UsagePlan")
    front = capacity.load().front_door
    assert plan["Throttle"] == {"RateLimit": front.throttle_rate, "BurstLimit": front.throttle_burst}
    assert len(plan["ApiStages"]) == 1
    one(synth.templates["frontdoor"], "AWS::ApiGateway::ApiKey")
    one(synth.templates["frontdoor"], "AWS::ApiGateway::UsagePlanKey")


def test_cognito_client_credentials_and_authorizer(synth: Synth) -> None:
    t = synth.templates["frontdoor"]
    client = one(t, "AWS::Cognito::UserPoolClient")
    assert client["AllowedOAuthFlows"] == ["client_credentials"] and client["GenerateSecret"] is True
    (server_id,) = resources(t, "AWS::Cognito::UserPoolResourceServer")
    # Ref of a resource server is its identifier: the scope is "resnet-serving/<scope>".
    assert client["AllowedOAuthScopes"] == [{"Fn::Join": ["", [{"Ref": server_id}, f"/{CFG.api.oauth_scope}"]]}]
    server = one(t, "AWS::Cognito::UserPoolResourceServer")
    assert server["Identifier"] == "resnet-serving"
    assert [s["ScopeName"] for s in server["Scopes"]] == [CFG.api.oauth_scope]
    assert one(t, "AWS::Cognito::UserPool")["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert one(t, "AWS::ApiGateway::Authorizer")["Type"] == "COGNITO_USER_POOLS"
    one(t, "AWS::Cognito::UserPoolDomain")


def test_method_requires_token_scope_and_api_key(synth: Synth) -> None:
    method = one(synth.templates["frontdoor"], "AWS::ApiGateway::Method")
    assert method["HttpMethod"] == "POST" and method["AuthorizationType"] == "COGNITO_USER_POOLS"
    assert method["AuthorizationScopes"] == [f"resnet-serving/{CFG.api.oauth_scope}"]
    assert method["ApiKeyRequired"] is True
    assert method["RequestParameters"]["method.request.header.Content-Type"] is True


def test_integration_is_an_aws_service_call_to_sagemaker_runtime(synth: Synth) -> None:
    integration = one(synth.templates["frontdoor"], "AWS::ApiGateway::Method")["Integration"]
    assert integration["Type"] == "AWS" and integration["IntegrationHttpMethod"] == "POST"
    uri = json.dumps(integration["Uri"])
    assert f":runtime.sagemaker:path/endpoints/{CFG.sagemaker.endpoint_name}/invocations" in uri
    assert integration["TimeoutInMillis"] == 29000
    assert "ContentHandling" not in integration, "binary bodies must pass through untouched"
    role = synth.templates["frontdoor"]["Resources"][integration["Credentials"]["Fn::GetAtt"][0]]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    assert not resources(synth.templates["frontdoor"], "AWS::Lambda::Function")


def test_waf_managed_rules_rate_rule_logging_and_association(synth: Synth) -> None:
    t = synth.templates["frontdoor"]
    acl = one(t, "AWS::WAFv2::WebACL")
    assert acl["Scope"] == "REGIONAL"
    groups = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]
        for r in acl["Rules"]
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    assert {"AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesCommonRuleSet"} <= groups
    (rate,) = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == CFG.api.waf_rate_limit_per_5min
    assert rate["Action"] == {"Block": {}}
    association = one(t, "AWS::WAFv2::WebACLAssociation")
    assert "stages/" in json.dumps(association["ResourceArn"])
    one(t, "AWS::WAFv2::LoggingConfiguration")


# ---- network ----------------------------------------------------------------------------------------
def test_vpc_endpoints_on_the_given_vpc(synth: Synth) -> None:
    t = synth.templates["network"]
    endpoints = [e["Properties"] for e in resources(t, "AWS::EC2::VPCEndpoint").values()]
    services = {e["ServiceName"]["Fn::Sub"].split("${AWS::Region}.")[1]: e for e in endpoints}
    assert set(services) == {"s3", "sagemaker.runtime", "sagemaker.api", "ecr.api", "ecr.dkr", "logs", "sts"}
    assert services["s3"]["VpcEndpointType"] == "Gateway"
    assert all(e["VpcId"] == {"Ref": "VpcId"} for e in endpoints)
    assert all(e["PrivateDnsEnabled"] for name, e in services.items() if name != "s3")
    assert t["Parameters"]["VpcId"]["Type"] == "AWS::EC2::VPC::Id"


def test_security_groups_have_descriptions(synth: Synth) -> None:
    groups = [
        g["Properties"] for t in synth.templates.values() for g in resources(t, "AWS::EC2::SecurityGroup").values()
    ]
    assert groups
    for g in groups:
        assert len(g["GroupDescription"]) > 20
        assert all(
            rule.get("Description") for rule in g.get("SecurityGroupIngress", []) + g.get("SecurityGroupEgress", [])
        )
        assert [r["FromPort"] for r in g["SecurityGroupIngress"]] == [443]


# ---- observability ----------------------------------------------------------------------------------
def test_alarms_have_predictable_names_thresholds_and_notify_sns(synth: Synth) -> None:
    t = synth.templates["observability"]
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in resources(t, "AWS::CloudWatch::Alarm").values()}
    endpoint = CFG.sagemaker.endpoint_name
    kinds = ("5xx", "p99-latency", "throttles", "instances-at-max", "api-errors", "api-latency", "unavailable")
    assert set(alarms) == {alarm_name(endpoint, k) for k in kinds}
    assert alarms[f"resnet-serving-{endpoint}-p99-latency"]["Threshold"] == CFG.alarms.p99_latency_ms * 1000
    assert alarms[f"resnet-serving-{endpoint}-p99-latency"]["ExtendedStatistic"] == "p99"
    assert alarms[f"resnet-serving-{endpoint}-5xx"]["Threshold"] == CFG.alarms.error_5xx_percent
    assert alarms[f"resnet-serving-{endpoint}-throttles"]["Threshold"] == CFG.alarms.throttled_requests_per_minute
    at_max = alarms[f"resnet-serving-{endpoint}-instances-at-max"]
    assert at_max["Threshold"] == CFG.sagemaker.max_instances
    assert at_max["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    (topic,) = resources(t, "AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_throttle_alarm_counts_429s_from_the_access_log(synth: Synth) -> None:
    metric_filter = one(synth.templates["frontdoor"], "AWS::Logs::MetricFilter")
    assert metric_filter["FilterPattern"] == "{ $.status = 429 }"
    (transform,) = metric_filter["MetricTransformations"]
    alarms = resources(synth.templates["observability"], "AWS::CloudWatch::Alarm").values()
    (throttles,) = [a["Properties"] for a in alarms if a["Properties"]["AlarmName"].endswith("-throttles")]
    assert (throttles["Namespace"], throttles["MetricName"]) == (transform["MetricNamespace"], transform["MetricName"])


def test_dashboard_covers_sagemaker_api_gateway_and_the_alb(synth: Synth) -> None:
    body = json.dumps(one(synth.templates["observability"], "AWS::CloudWatch::Dashboard")["DashboardBody"])
    for metric in (
        "Invocations",
        "ModelLatency",
        "Invocation4XXErrors",
        "Invocation5XXErrors",
        "InvocationsPerInstance",
    ):
        assert f'\\"{metric}\\"' in body, metric
    for metric in ("Count", "4XXError", "5XXError", "Latency", "ApiThrottledRequests"):
        assert f'\\"{metric}\\"' in body, metric
    for metric in ("TargetResponseTime", "HTTPCode_Target_5XX_Count"):
        assert f'\\"{metric}\\"' in body, metric


def test_every_log_group_has_the_configured_retention(synth: Synth) -> None:
    groups = [g["Properties"] for t in synth.templates.values() for g in resources(t, "AWS::Logs::LogGroup").values()]
    assert len(groups) >= 3
    assert {g["RetentionInDays"] for g in groups} == {CFG.log_retention_days}


def test_monthly_budget_alerts_the_topic(synth: Synth) -> None:
    budget = one(synth.templates["observability"], "AWS::Budgets::Budget")
    assert budget["Budget"]["TimeUnit"] == "MONTHLY" and budget["Budget"]["BudgetType"] == "COST"
    assert budget["Budget"]["BudgetLimit"] == {"Amount": CFG.budget.monthly_usd, "Unit": "USD"}
    for n in budget["NotificationsWithSubscribers"]:
        assert n["Notification"]["Threshold"] == CFG.budget.alert_percent
        assert n["Subscribers"][0]["SubscriptionType"] == "SNS"
