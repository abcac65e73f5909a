"""The public front door: a regional REST API in front of the SageMaker endpoint, behind WAF and Cognito."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as waf
from constructs import Construct

from .config import WAF_PLAN_FACTOR, WAF_WINDOW_S, EksIntegration, InfraConfig
from .logs import log_group
from .nag import ack, checkov_skip
from .naming import PROJECT, STACKS

__all__ = ["WAF_PLAN_FACTOR", "FrontDoorStack"]

# multipart/form-data too: as text, API Gateway would re-encode the image bytes inside it.
BINARY_MEDIA_TYPES = ["image/*", "application/octet-stream", "multipart/form-data"]
#: Retry-After on a retryable answer whose seconds the gateway cannot read (the guard's default).
RETRY_AFTER_S = 1
#: The statuses a client can get from the SageMaker route, each with X-Request-Id (429 and 503 with Retry-After).
METHOD_STATUSES = ("200", "400", "413", "415", "429", "500", "502", "503", "504")
RETRYABLE = ("429", "503")

#: ModelError (SageMaker's 424): the container answered non-2xx. Its status and body reach the client, and
#: SageMaker's envelope (its message, the log stream's ARN with the account id) never does.
MODEL_ERROR_TEMPLATE = "\n".join(
    [
        "#set($status = $input.path('$.OriginalStatusCode'))",
        "#if(!$status || $status < 400 || $status > 599)#set($status = 502)#end",
        "#set($context.responseOverride.status = $status)",
        """#set($original = "$!input.path('$.OriginalMessage')")""",
        "#set($body = {})",
        "#if($original.startsWith('{'))#set($body = $util.parseJson($original))#end",
        '#set($rid = "$!body.request_id")',
        """#if($rid == "")#set($rid = "$!input.params('X-Request-Id')")#end""",
        '#if($rid == "")#set($rid = $context.requestId)#end',
        "#set($context.responseOverride.header.X-Request-Id = $rid)",
        "#if($status == 429 || $status == 503)"
        f'#set($context.responseOverride.header.Retry-After = "{RETRY_AFTER_S}")#end',
        '#if("$!body.error" != "" && "$!body.message" != "")$original#else'
        '{"error": "model_error", "message": "the model answered $status", "status": $status, '
        '"request_id": "$util.escapeJavaScript($rid)"}#end',
    ]
)


def sagemaker_error_template(status: int, code: str, message: str) -> str:
    """SageMaker's own error (not the container's): our body, X-Request-Id, and Retry-After where retryable."""
    retryable = str(status) in RETRYABLE
    retry = f'#set($context.responseOverride.header.Retry-After = "{RETRY_AFTER_S}")\n' if retryable else ""
    return (
        """#set($rid = "$!input.params('X-Request-Id')")\n#if($rid == "")#set($rid = $context.requestId)#end\n"""
        "#set($context.responseOverride.header.X-Request-Id = $rid)\n"
        + retry
        + f'{{"error": "{code}", "message": "{message}", "status": {status}, '
        + '"request_id": "$util.escapeJavaScript($rid)"}'
    )


#: API Gateway's own refusals, in our body: (status, error code).
GATEWAY_RESPONSES = {
    apigw.ResponseType.THROTTLED: ("429", "too_many_requests"),
    apigw.ResponseType.QUOTA_EXCEEDED: ("429", "too_many_requests"),
    apigw.ResponseType.UNAUTHORIZED: ("401", "unauthorized"),
    apigw.ResponseType.ACCESS_DENIED: ("403", "forbidden"),
    apigw.ResponseType.INVALID_API_KEY: ("403", "forbidden"),
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: ("403", "forbidden"),
    apigw.ResponseType.WAF_FILTERED: ("403", "forbidden"),
    apigw.ResponseType.BAD_REQUEST_PARAMETERS: ("400", "bad_request"),
    apigw.ResponseType.BAD_REQUEST_BODY: ("400", "bad_request"),
    apigw.ResponseType.REQUEST_TOO_LARGE: ("413", "payload_too_large"),
    apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE: ("415", "unsupported_media_type"),
    apigw.ResponseType.INTEGRATION_TIMEOUT: ("504", "timeout"),
}
THROTTLE_METRIC = ("resnet-serving", "ApiThrottledRequests")  # namespace, name: 429s counted from access logs


def _managed_group(name: str, priority: int, count_only: tuple[str, ...] = ()) -> waf.CfnWebACL.RuleProperty:
    return waf.CfnWebACL.RuleProperty(
        name=name,
        priority=priority,
        override_action=waf.CfnWebACL.OverrideActionProperty(none={}),
        statement=waf.CfnWebACL.StatementProperty(
            managed_rule_group_statement=waf.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS",
                name=name,
                rule_action_overrides=[
                    waf.CfnWebACL.RuleActionOverrideProperty(
                        name=rule, action_to_use=waf.CfnWebACL.RuleActionProperty(count={})
                    )
                    for rule in count_only
                ]
                or None,
            )
        ),
        visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
        ),
    )


def _guarded(authorizer: apigw.IAuthorizer, oauth_scope: str, validator: apigw.IRequestValidator) -> dict[str, Any]:
    """What every inference route requires: a Cognito token with the model's scope, an API key, a valid request."""
    return {
        "authorizer": authorizer,
        "authorization_type": apigw.AuthorizationType.COGNITO,
        "authorization_scopes": [f"{PROJECT}/{oauth_scope}"],
        "api_key_required": True,
        "request_validator": validator,
    }


def _integration_responses() -> list[apigw.IntegrationResponse]:
    """SageMaker's answers, by its status: 200 passes through; 424 is the container's own non-2xx; the others are
    SageMaker's, in our body. The patterns never overlap."""
    json_only = "application/json"
    return [
        apigw.IntegrationResponse(
            status_code="200",
            # the guard answers with its request id as custom attributes, SageMaker's only returned header
            response_parameters={
                "method.response.header.X-Request-Id": "integration.response.header.X-Amzn-SageMaker-Custom-Attributes"
            },
        ),
        apigw.IntegrationResponse(
            status_code="502", selection_pattern="424", response_templates={json_only: MODEL_ERROR_TEMPLATE}
        ),
        *(
            apigw.IntegrationResponse(
                status_code=str(status),
                selection_pattern=str(status),
                response_templates={json_only: sagemaker_error_template(status, code, message)},
            )
            for status, code, message in (
                (429, "too_many_requests", "the endpoint is not ready: retry"),
                (503, "overloaded", "the endpoint is busy: retry"),
                (413, "payload_too_large", "the body exceeds the endpoint's limit"),
            )
        ),
        # Any other refusal by SageMaker is of the gateway's call (the endpoint, its role), not of the client's.
        apigw.IntegrationResponse(
            status_code="502",
            selection_pattern="4(0\\d|1[0-24-9]|2[0-35-8]|[3-9]\\d)|5(0[0-24-9]|[1-9]\\d)",
            response_templates={json_only: sagemaker_error_template(502, "bad_gateway", "the endpoint failed")},
        ),
    ]


class FrontDoorStack(Stack):
    def __init__(self, scope: Construct, cfg: InfraConfig, **kwargs: object) -> None:
        super().__init__(
            scope,
            "FrontDoor",
            stack_name=STACKS["frontdoor"],
            description="resnet-serving front door: API Gateway (REST, regional) -> SageMaker, WAF, Cognito",
            **kwargs,  # type: ignore[arg-type]
        )
        api_cfg, endpoint = cfg.api, cfg.sagemaker.endpoint_name

        self.access_logs = log_group(
            self,
            "AccessLogs",
            f"/{PROJECT}/api-gateway/{api_cfg.name}",
            cfg.log_retention_days,
            RemovalPolicy.DESTROY,
        )
        # API Gateway has no throttled-request metric: count the 429s in its access log.
        logs.MetricFilter(
            self,
            "ThrottledRequests",
            log_group=self.access_logs,
            metric_namespace=THROTTLE_METRIC[0],
            metric_name=THROTTLE_METRIC[1],
            filter_pattern=logs.FilterPattern.number_value("$.status", "=", 429),
            metric_value="1",
            default_value=0,
        )

        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=api_cfg.name,
            description="resnet-serving: POST an image, get ImageNet classes (SageMaker endpoint behind it)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=BINARY_MEDIA_TYPES,
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=api_cfg.stage,
                throttling_rate_limit=api_cfg.throttle_rate,
                throttling_burst_limit=api_cfg.throttle_burst,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies are customer images: never into logs
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        checkov_skip(
            self.api.deployment_stage,
            "CKV_AWS_120",
            "No cache: every POST carries a different image, and a cache keyed on headers would mix up clients.",
        )
        ack(
            self.api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-wide logging role; AWS maintains this policy for exactly that purpose.",
        )

        # Cognito: machine clients get tokens with the client-credentials flow; there are no human users.
        pool = cognito.UserPool(
            self,
            "Clients",
            user_pool_name=f"{PROJECT}-clients",
            self_sign_up_enabled=False,
            password_policy=cognito.PasswordPolicy(
                min_length=16, require_digits=True, require_lowercase=True, require_symbols=True, require_uppercase=True
            ),
            account_recovery=cognito.AccountRecovery.NONE,
            removal_policy=RemovalPolicy.RETAIN,
        )
        ack(pool, "AwsSolutions-COG2", "No human users sign in: clients use the client-credentials flow, no MFA step.")
        ack(
            pool,
            "AwsSolutions-COG8",
            "The Plus tier adds user sign-in protections; a client-credentials pool has none.",
        )
        pool.add_domain(
            "TokenDomain",
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=Fn.sub(f"{PROJECT}-${{AWS::AccountId}}")),
        )
        scope_ = cognito.ResourceServerScope(scope_name=api_cfg.oauth_scope, scope_description="classify images")
        server = pool.add_resource_server(
            "Api", identifier=PROJECT, user_pool_resource_server_name=PROJECT, scopes=[scope_]
        )
        client = pool.add_client(
            "MachineClient",
            user_pool_client_name=f"{PROJECT}-machine",
            generate_secret=True,
            auth_flows=cognito.AuthFlow(),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(client_credentials=True),
                scopes=[cognito.OAuthScope.resource_server(server, scope_)],
            ),
            access_token_validity=Duration.hours(1),
            prevent_user_existence_errors=True,
        )
        authorizer = apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[pool])

        # AWS service integration, no Lambda hop: API Gateway signs the InvokeEndpoint call itself, so images
        # pass through untouched, with no cold start, no extra per-request cost and no code to patch.
        invoke_role = iam.Role(
            self,
            "InvokeEndpointRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway -> SageMaker InvokeEndpoint on the resnet-serving endpoint only",
        )
        invoke_role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:InvokeEndpoint"],
                resources=[
                    Fn.sub(
                        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/" + endpoint.lower()
                    )
                ],
            )
        )
        # The headers: SageMaker hands the container its custom attributes and inference id only, one source each.
        integration = apigw.AwsIntegration(
            service="runtime.sagemaker",
            path=f"endpoints/{endpoint}/invocations",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=invoke_role,
                passthrough_behavior=apigw.PassthroughBehavior.WHEN_NO_TEMPLATES,
                timeout=Duration.seconds(29),
                request_parameters={
                    "integration.request.header.Content-Type": "method.request.header.Content-Type",
                    "integration.request.header.X-Amzn-SageMaker-Custom-Attributes": "method.request.header.X-TopK",
                    "integration.request.header.X-Amzn-SageMaker-Inference-Id": "method.request.header.X-Request-Id",
                },
                integration_responses=_integration_responses(),
            ),
        )
        validator = self.api.add_request_validator(
            "Validate",
            request_validator_name="validate-request",
            validate_request_parameters=True,  # the Content-Type header is required
            validate_request_body=True,
        )
        predictions = self.api.root.add_resource("predictions").add_resource(api_cfg.model)
        self.method = predictions.add_method(
            "POST",
            integration,
            **_guarded(authorizer, api_cfg.oauth_scope, validator),
            request_parameters={
                "method.request.header.Content-Type": True,
                "method.request.header.X-TopK": False,
                "method.request.header.X-Request-Id": False,
            },
            method_responses=[
                apigw.MethodResponse(
                    status_code=code,
                    response_parameters={
                        "method.response.header.X-Request-Id": True,
                        **({"method.response.header.Retry-After": True} if code in RETRYABLE else {}),
                    },
                )
                for code in METHOD_STATUSES
            ],
        )
        for kind, (status, code) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"Gateway{kind.response_type.title().replace('_', '')}",
                type=kind,
                status_code=status,
                response_headers={
                    "X-Request-Id": "method.request.header.X-Request-Id",
                    **({"Retry-After": f"'{RETRY_AFTER_S}'"} if status in RETRYABLE else {}),
                },
                templates={
                    "application/json": f'{{"error": "{code}", "message": $context.error.messageString, '
                    f'"status": {status}, "request_id": "$context.requestId"}}'
                },
            )
        if api_cfg.eks_integration is not None:
            self._eks_route(api_cfg.model, api_cfg.oauth_scope, api_cfg.eks_integration, authorizer, validator)

        plan = self.api.add_usage_plan(
            "UsagePlan",
            name=f"{PROJECT}-clients",
            description="per-client throttling for API keys",
            throttle=apigw.ThrottleSettings(rate_limit=api_cfg.throttle_rate, burst_limit=api_cfg.throttle_burst),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        key = self.api.add_api_key("DefaultClientKey", api_key_name=f"{PROJECT}-default-client")
        plan.add_api_key(key)

        self.web_acl = self._web_acl(cfg)
        waf.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )

        CfnOutput(self, "ApiUrl", value=self.api.url_for_path(predictions.path), description="POST images here")
        CfnOutput(self, "UserPoolId", value=pool.user_pool_id)
        CfnOutput(self, "MachineClientId", value=client.user_pool_client_id)
        CfnOutput(
            self,
            "TokenUrl",
            value=Fn.sub(f"https://{PROJECT}-${{AWS::AccountId}}.auth.${{AWS::Region}}.amazoncognito.com/oauth2/token"),
        )
        CfnOutput(self, "ApiKeyId", value=key.key_id, description="aws apigateway get-api-key --include-value")

    def _eks_route(
        self,
        model: str,
        oauth_scope: str,
        eks: EksIntegration,
        authorizer: apigw.IAuthorizer,
        validator: apigw.IRequestValidator,
    ) -> None:
        """POST /eks/predictions/<model>: the same auth, WAF and stage, proxied privately to the EKS path's ALB."""
        if eks.vpc_link_v2:
            # VPC link V2 reaches an ALB directly. CDK's REST VpcLink construct only takes NLBs (V1), so the
            # V2 link is the L1 resource and the ALB goes into the method's IntegrationTarget.
            v2 = apigwv2.CfnVpcLink(
                self,
                "EksVpcLink",
                name=f"{PROJECT}-eks",
                subnet_ids=list(eks.subnet_ids),
                security_group_ids=list(eks.security_group_ids),
            )
            link: apigw.IVpcLink = apigw.VpcLink.from_vpc_link_id(self, "EksVpcLinkId", v2.ref)
        else:
            # VPC link V1 reaches an NLB, whose ALB-type target group forwards to the ingress's ALB.
            nlb = elbv2.NetworkLoadBalancer.from_network_load_balancer_attributes(
                self, "EksNlb", load_balancer_arn=eks.load_balancer_arn
            )
            link = apigw.VpcLink(
                self,
                "EksVpcLink",
                vpc_link_name=f"{PROJECT}-eks",
                description="API Gateway -> the NLB in front of the EKS path's internal ALB",
                targets=[nlb],
            )
        integration = apigw.Integration(
            type=apigw.IntegrationType.HTTP_PROXY,
            integration_http_method="POST",
            # The host is sent as Host and as the TLS server name: the ingress routes on it, its certificate names it.
            uri=f"{eks.protocol}://{eks.host}/predictions/{model}",
            options=apigw.IntegrationOptions(
                connection_type=apigw.ConnectionType.VPC_LINK, vpc_link=link, timeout=Duration.seconds(29)
            ),
        )
        resource = self.api.root.add_resource("eks").add_resource("predictions").add_resource(model)
        self.eks_method = resource.add_method(
            "POST",
            integration,
            **_guarded(authorizer, oauth_scope, validator),
            request_parameters={"method.request.header.Content-Type": True},
        )
        if eks.vpc_link_v2:
            cfn = self.eks_method.node.default_child
            assert isinstance(cfn, apigw.CfnMethod)
            cfn.add_property_override("Integration.IntegrationTarget", eks.load_balancer_arn)
        CfnOutput(self, "EksApiUrl", value=self.api.url_for_path(resource.path), description="POST images here (EKS)")

    def _web_acl(self, cfg: InfraConfig) -> waf.CfnWebACL:
        # WAF only logs to groups named aws-waf-logs-*.
        waf_logs = log_group(self, "WafLogs", f"aws-waf-logs-{PROJECT}", cfg.log_retention_days, RemovalPolicy.DESTROY)
        # Per client, not per IP: clients call from a backend's few addresses. The API key names the client (one
        # key per usage-plan client); a request without one is refused by API Gateway anyway.
        rate_rule = waf.CfnWebACL.RuleProperty(
            name="rate-limit-per-api-key",
            priority=0,
            action=waf.CfnWebACL.RuleActionProperty(block={}),
            statement=waf.CfnWebACL.StatementProperty(
                rate_based_statement=waf.CfnWebACL.RateBasedStatementProperty(
                    aggregate_key_type="CUSTOM_KEYS",
                    custom_keys=[
                        waf.CfnWebACL.RateBasedStatementCustomKeyProperty(
                            header=waf.CfnWebACL.RateLimitHeaderProperty(
                                name="x-api-key",
                                text_transformations=[
                                    waf.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                                ],
                            )
                        )
                    ],
                    limit=cfg.api.waf_rate_limit_per_5min,
                    evaluation_window_sec=WAF_WINDOW_S,
                )
            ),
            visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name="rate-limit-per-api-key", sampled_requests_enabled=True
            ),
        )
        acl = waf.CfnWebACL(
            self,
            "WebAcl",
            name=f"{PROJECT}-api",
            scope="REGIONAL",
            default_action=waf.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=f"{PROJECT}-api", sampled_requests_enabled=True
            ),
            rules=[
                rate_rule,
                _managed_group("AWSManagedRulesAmazonIpReputationList", 1),
                # Log4j and other exploit payloads: TorchServe's front end is Java.
                _managed_group("AWSManagedRulesKnownBadInputsRuleSet", 2),
                # Image bodies exceed the group's 8 KB body limit and their bytes can look like script: count only.
                _managed_group(
                    "AWSManagedRulesCommonRuleSet", 3, count_only=("SizeRestrictions_BODY", "CrossSiteScripting_BODY")
                ),
            ],
        )
        waf.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            # WAF wants the group's ARN without the ":*" suffix that Fn::GetAtt returns.
            log_destination_configs=[
                Fn.sub(
                    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${Group}",
                    {"Group": waf_logs.log_group_name},
                )
            ],
        )
        return acl
