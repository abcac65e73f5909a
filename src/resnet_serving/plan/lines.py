"""What the shipped stacks cost besides compute: the front door, the shared lines and the EKS path's network.

``SHIPPED`` is an inventory of the priced things ``infra/templates/*.json`` and ``k8s/eksctl/cluster.yaml``
create (how many keys, endpoints, alarms, rules...); ``PRICED_TYPES`` names, for every CloudFormation resource
type that costs money, the line item that prices it, and ``FREE_TYPES`` says why each other type costs nothing.
``tests/unit/test_plan_stacks.py`` reads the templates and the cluster config and fails when a stack gains a type
in neither map or when a count here drifts from them, so the plan cannot silently leave out what ships.

Volumes that no bench measures (log bytes per request, image sizes) are named assumptions below; every line
that uses one says so in its note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from resnet_serving.plan.prices import Prices, tiered_cost

# Line-item names, used by PRICED_TYPES and by the rows.
REST_API = "API Gateway (REST)"
WAF = "WAF web ACL and requests"
WAF_LOGS = "WAF logs"
XRAY = "X-Ray traces"
ACCESS_LOGS = "API access logs"
COGNITO = "Cognito tokens"
CLOUDWATCH = "CloudWatch metrics, alarms, dashboard"
ENDPOINT_LOGS = "SageMaker endpoint logs"
KMS = "KMS keys"
S3 = "S3 (model store)"
ECR = "ECR (images)"
DATA_OUT = "Data transfer out"
NAT = "NAT gateways"
VPC_ENDPOINTS = "VPC interface endpoints"
CONTROL_PLANE_LOGS = "EKS control-plane logs"
EKS_COMPUTE = "EKS rows (nodes, control plane, ALB)"
SAGEMAKER_COMPUTE = "SageMaker rows (instances)"

#: Every CloudFormation type the stacks create that costs money, and the line (or compute row) that prices it.
PRICED_TYPES: dict[str, str] = {
    "AWS::ApiGateway::RestApi": REST_API,
    "AWS::ApiGateway::Stage": XRAY,  # TracingEnabled: X-Ray; MetricsEnabled: detailed metrics (CloudWatch line)
    "AWS::WAFv2::WebACL": WAF,
    "AWS::WAFv2::LoggingConfiguration": WAF_LOGS,
    "AWS::Logs::LogGroup": ACCESS_LOGS,  # and WAF logs, SageMaker endpoint logs: one line per group
    "AWS::Logs::MetricFilter": CLOUDWATCH,  # publishes one custom metric
    "AWS::Cognito::UserPoolClient": COGNITO,
    "AWS::CloudWatch::Alarm": CLOUDWATCH,
    "AWS::CloudWatch::Dashboard": CLOUDWATCH,
    "AWS::KMS::Key": KMS,
    "AWS::S3::Bucket": S3,
    "AWS::ECR::Repository": ECR,
    "AWS::EC2::VPCEndpoint": VPC_ENDPOINTS,
    "AWS::SageMaker::Endpoint": SAGEMAKER_COMPUTE,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": EKS_COMPUTE,
}

#: Types that cost nothing by themselves, each with the reason.
FREE_TYPES: dict[str, str] = {
    "AWS::ApiGateway::Account": "account-level settings (the CloudWatch role); no charge",
    "AWS::ApiGateway::ApiKey": "API keys are free; requests are billed on the REST API line",
    "AWS::ApiGateway::Authorizer": "a Cognito authorizer has no charge of its own; tokens are on the Cognito line",
    "AWS::ApiGateway::Deployment": "a deployment snapshot; no charge",
    "AWS::ApiGateway::GatewayResponse": "customised error responses; no charge of their own",
    "AWS::ApiGateway::Method": "billed per request on the REST API line",
    "AWS::ApiGateway::RequestValidator": "request validation has no charge of its own",
    "AWS::ApiGateway::Resource": "billed per request on the REST API line",
    "AWS::ApiGateway::UsagePlan": "usage plans and throttling have no charge",
    "AWS::ApiGateway::UsagePlanKey": "ties a key to a plan; no charge",
    "AWS::ApiGateway::VpcLink": "the optional private route: no charge for the link; the NLB behind it is billed",
    "AWS::ApiGatewayV2::VpcLink": "the optional private route: VPC links for ALBs have no charge",
    "AWS::Cognito::UserPool": "admin-created users only, no human sign-ins, so no MAUs; tokens are on the Cognito line",
    "AWS::Cognito::UserPoolDomain": "the hosted token endpoint; no charge beyond token requests",
    "AWS::Cognito::UserPoolResourceServer": "scopes; no charge",
    "AWS::WAFv2::WebACLAssociation": "attaching the web ACL; no charge",
    "AWS::IAM::Role": "IAM has no charge",
    "AWS::IAM::Policy": "IAM has no charge",
    "AWS::KMS::Alias": "aliases have no charge",
    "AWS::S3::BucketPolicy": "bucket policies have no charge",
    "AWS::EC2::SecurityGroup": "security groups have no charge",
    "AWS::SNS::Topic": "alert e-mails: the first 1,000 e-mail notifications a month are free",
    "AWS::SNS::Subscription": "subscriptions have no charge; deliveries are counted on the topic",
    "AWS::SNS::TopicPolicy": "topic policies have no charge",
    "AWS::Budgets::Budget": "the first two budgets without actions are free",
}


@dataclass(frozen=True)
class Shipped:
    """Counts of priced things in the stacks and the cluster config (checked against them by a test)."""

    waf_rules: int = 4  # rules and rule groups in the web ACL
    cognito_app_clients: int = 1
    cognito_token_minutes: int = 60  # AccessTokenValidity
    api_methods: int = 1  # detailed metrics are per method
    metric_filters: int = 1
    alarms: int = 7
    dashboards: int = 1
    kms_keys: int = 2
    interface_endpoints: int = 6
    gateway_endpoints: int = 1  # S3: no charge
    log_groups: int = 3  # API access logs, WAF logs, SageMaker endpoint logs
    ecr_repositories: int = 2
    nat_gateway: str = "HighlyAvailable"  # eksctl vpc.nat.gateway: one NAT gateway per zone
    control_plane_logging: bool = True  # eksctl cloudWatch.clusterLogging


SHIPPED = Shipped()

# X-Ray's default sampling rule, which API Gateway uses: the first request each second, then 5% of the rest.
XRAY_RESERVOIR_PER_S = 1.0
XRAY_RATE = 0.05
# API Gateway's detailed CloudWatch metrics per method (Count, 4XXError, 5XXError, Latency, IntegrationLatency,
# CacheHitCount, CacheMissCount).
API_METRICS_PER_METHOD = 7
# Assumed volumes, not measured: each line that uses one says "assumed".
RESPONSE_BYTES = 1024  # top-5 JSON body
ACCESS_LOG_BYTES = 300  # one access-log line in the stage's JSON format
WAF_LOG_BYTES = 1500  # one WAF log record with the request's headers and the rules evaluated
ENDPOINT_LOG_GB_MONTH = 1.0  # the SageMaker container's own log: start-up and errors, no per-request line
CONTROL_PLANE_LOG_GB_MONTH = 10.0  # EKS api, audit and authenticator logs
IMAGES_GB = 6.0  # a few versions of the serving and operator images in ECR
MODEL_ARTIFACT_GB = 0.1
TOKEN_HOLDERS = 1  # processes holding a client-credentials token, each fetching a new one when it expires


@dataclass(frozen=True)
class Line:
    name: str
    scope: str  # "front door", "all", "EKS" or "SageMaker": which complete options carry it
    usd_month: float
    estimated: bool
    note: str
    resources: str  # what in infra/templates or k8s/eksctl it prices


@dataclass(frozen=True)
class FrontDoor:
    name: str
    usd_month: float
    estimated: bool
    note: str
    paths: str  # which compute paths it can front


def _est(*entries: dict[str, Any]) -> bool:
    return any(bool(e.get("estimated")) for e in entries)


def requests_per_month(rps: float, prices: Prices) -> float:
    return rps * 3600 * prices.hours_per_month


def front_door_lines(prices: Prices, rps: float, *, token_holders: int = TOKEN_HOLDERS) -> list[Line]:
    """The shipped front door (infra/templates/resnet-serving-frontdoor.json) at ``rps``: every line of it."""
    n = requests_per_month(rps, prices)
    rest, xray = prices.entry("api_gateway_rest"), prices.entry("xray")
    cw = prices.entry("cloudwatch")
    return [
        Line(
            REST_API,
            "front door",
            tiered_cost(n, rest["tiers"]),
            _est(rest),
            f"{n / 1e6:,.0f} M requests a month, per-million tiers",
            "AWS::ApiGateway::RestApi",
        ),
        _waf_line(prices, n),
        Line(
            WAF_LOGS,
            "front door",
            n * WAF_LOG_BYTES / 1e9 * cw["logs_usd_per_gb_ingested"],
            True,
            f"{WAF_LOG_BYTES} B per request logged (assumed), CloudWatch Logs ingestion",
            "AWS::WAFv2::LoggingConfiguration, AWS::Logs::LogGroup",
        ),
        _xray_line(xray, rps, prices),
        Line(
            ACCESS_LOGS,
            "front door",
            n * ACCESS_LOG_BYTES / 1e9 * cw["logs_usd_per_gb_ingested"],
            True,
            f"{ACCESS_LOG_BYTES} B per request (assumed), CloudWatch Logs ingestion",
            "AWS::ApiGateway::Stage AccessLogSetting, AWS::Logs::LogGroup",
        ),
        _cognito_line(prices, token_holders),
    ]


def _waf_line(prices: Prices, n: float) -> Line:
    waf = prices.entry("waf")
    usd = (
        waf["usd_per_web_acl_month"]
        + SHIPPED.waf_rules * waf["usd_per_rule_month"]
        + n / 1e6 * waf["usd_per_million_requests"]
    )
    return Line(
        WAF,
        "front door",
        usd,
        _est(waf),
        f"1 web ACL, {SHIPPED.waf_rules} rules, every request inspected",
        "AWS::WAFv2::WebACL",
    )


def _xray_line(xray: dict[str, Any], rps: float, prices: Prices) -> Line:
    per_s = min(rps, XRAY_RESERVOIR_PER_S) + XRAY_RATE * max(0.0, rps - XRAY_RESERVOIR_PER_S)
    traces = per_s * 3600 * prices.hours_per_month
    billed = max(0.0, traces - xray["free_traces_per_month"])
    return Line(
        XRAY,
        "front door",
        billed / 1e6 * xray["usd_per_million_traces"],
        _est(xray),
        f"{traces / 1e6:,.0f} M traces a month: the default sampling rule (1/s + 5%), free tier taken off",
        "AWS::ApiGateway::Stage TracingEnabled",
    )


def _cognito_line(prices: Prices, token_holders: int) -> Line:
    cog = prices.entry("cognito_m2m")
    tokens = token_holders * prices.hours_per_month * 60 / SHIPPED.cognito_token_minutes
    usd = SHIPPED.cognito_app_clients * cog["usd_per_app_client_month"] + tokens * cog["usd_per_token_request"]
    return Line(
        COGNITO,
        "front door",
        usd,
        _est(cog),
        f"{SHIPPED.cognito_app_clients} machine app client; {token_holders} token holder(s) renewing every "
        f"{SHIPPED.cognito_token_minutes} min (assumed): each more holder adds "
        f"${prices.hours_per_month * 60 / SHIPPED.cognito_token_minutes * cog['usd_per_token_request']:,.2f}",
        "AWS::Cognito::UserPoolClient",
    )


def shared_lines(prices: Prices, rps: float, azs: int) -> list[Line]:
    """Lines every option carries (scope "all"), the EKS path's network ("EKS") and SageMaker's logs."""
    n = requests_per_month(rps, prices)
    hours = prices.hours_per_month
    cw, kms, s3, ecr = prices.entry("cloudwatch"), prices.entry("kms"), prices.entry("s3"), prices.entry("ecr")
    dto, nat = prices.entry("data_transfer_out"), prices.entry("nat_gateway")
    vpce = prices.entry("vpc_endpoint_interface")
    metrics = SHIPPED.api_methods * API_METRICS_PER_METHOD + SHIPPED.metric_filters
    nat_count = nat_gateways(SHIPPED.nat_gateway, azs)
    return [
        Line(
            CLOUDWATCH,
            "all",
            metrics * cw["usd_per_metric_month"]
            + SHIPPED.alarms * cw["usd_per_alarm_month"]
            + SHIPPED.dashboards * cw["usd_per_dashboard_month"],
            _est(cw),
            f"{metrics} custom metrics (API detailed metrics, the throttle metric filter), {SHIPPED.alarms} alarms, "
            f"{SHIPPED.dashboards} dashboard",
            "AWS::CloudWatch::Alarm, AWS::CloudWatch::Dashboard, AWS::Logs::MetricFilter",
        ),
        Line(
            KMS,
            "all",
            SHIPPED.kms_keys * kms["usd_per_key_month"],
            _est(kms),
            f"{SHIPPED.kms_keys} customer managed keys; S3 Bucket Keys keep requests negligible",
            "AWS::KMS::Key",
        ),
        Line(
            S3,
            "all",
            MODEL_ARTIFACT_GB * s3["usd_per_gb_month"],
            _est(s3),
            f"{MODEL_ARTIFACT_GB} GB of archives (assumed); access logs small",
            "AWS::S3::Bucket",
        ),
        Line(
            ECR,
            "all",
            IMAGES_GB * ecr["usd_per_gb_month"],
            _est(ecr),
            f"{IMAGES_GB:g} GB of images (assumed)",
            "AWS::ECR::Repository",
        ),
        Line(
            DATA_OUT,
            "all",
            n * RESPONSE_BYTES / 1e9 * dto["usd_per_gb"],
            True,
            f"{RESPONSE_BYTES} B response per request (assumed); uploads are free",
            "responses to the internet",
        ),
        Line(
            ENDPOINT_LOGS,
            "SageMaker",
            ENDPOINT_LOG_GB_MONTH * cw["logs_usd_per_gb_ingested"],
            True,
            f"{ENDPOINT_LOG_GB_MONTH:g} GB a month (assumed)",
            "AWS::Logs::LogGroup /aws/sagemaker/Endpoints",
        ),
        Line(
            NAT,
            "EKS",
            nat_count * nat["usd_per_hour"] * hours,
            _est(nat),
            f"{nat_count} (eksctl nat.gateway {SHIPPED.nat_gateway}, {azs} AZs); traffic mostly through the "
            "endpoints, GB processed not counted",
            "k8s/eksctl/cluster.yaml vpc.nat",
        ),
        Line(
            VPC_ENDPOINTS,
            "EKS",
            SHIPPED.interface_endpoints * azs * vpce["usd_per_hour_per_az"] * hours,
            _est(vpce),
            f"{SHIPPED.interface_endpoints} interface endpoints × {azs} AZs; the S3 gateway endpoint is free; "
            "GB processed not counted",
            "AWS::EC2::VPCEndpoint",
        ),
        Line(
            CONTROL_PLANE_LOGS,
            "EKS",
            CONTROL_PLANE_LOG_GB_MONTH * cw["logs_usd_per_gb_ingested"],
            True,
            f"api, audit, authenticator: {CONTROL_PLANE_LOG_GB_MONTH:g} GB a month (assumed)",
            "k8s/eksctl/cluster.yaml cloudWatch.clusterLogging",
        ),
    ]


def nat_gateways(mode: str, azs: int) -> int:
    """NAT gateways eksctl creates for ``vpc.nat.gateway``."""
    return {"HighlyAvailable": azs, "Single": 1, "Disable": 0}[mode]


def front_doors(
    prices: Prices, rps: float, payload_bytes: int, lambda_seconds: float, *, token_holders: int = TOKEN_HOLDERS
) -> list[FrontDoor]:
    """The first lever: the shipped REST API against an HTTP API and an ALB alone, at ``rps``."""
    n = requests_per_month(rps, prices)
    shipped = front_door_lines(prices, rps, token_holders=token_holders)
    by_name = {line.name: line for line in shipped}
    http, lam = prices.entry("api_gateway_http"), prices.entry("lambda")
    metered = n * max(1, math.ceil(payload_bytes / (http["metered_kb"] * 1024)))
    http_usd = tiered_cost(metered, http["tiers"]) + by_name[ACCESS_LOGS].usd_month + by_name[COGNITO].usd_month
    lambda_usd = n / 1e6 * lam["usd_per_million_requests"] + n * lambda_seconds * 0.125 * lam["usd_per_gb_second"]
    waf_only = by_name[WAF].usd_month + by_name[WAF_LOGS].usd_month
    return [
        FrontDoor(
            "REST API (shipped)",
            sum(line.usd_month for line in shipped),
            any(line.estimated for line in shipped),
            "API Gateway REST + WAF + WAF logs + X-Ray + access logs + Cognito: the front-door lines above",
            "EKS (VPC link) and SageMaker (direct integration)",
        ),
        FrontDoor(
            "HTTP API",
            http_usd,
            True,
            "JWT authorizer on the same Cognito tokens, access logs; no WAF, API keys, usage plans or X-Ray; "
            f"SageMaker needs a Lambda in between (no direct integration): +${lambda_usd:,.0f} at 128 MB, "
            f"{lambda_seconds * 1000:.0f} ms per call",
            "EKS (VPC link); SageMaker through a Lambda",
        ),
        FrontDoor(
            "ALB only",
            waf_only,
            True,
            "internet-facing ALB (priced in the EKS rows) with the same WAF and its logs; no token check or API "
            "keys (the chart's ingress.allowUnauthenticatedInternet)",
            "EKS only",
        ),
    ]
