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

from .config import EksIntegration, InfraConfig
from .logs import log_group
from .nag import ack, checkov_skip
from .naming import PROJECT, STACKS

BINARY_MEDIA_TYPES = ["image/*", "application/octet-stream"]
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
                    "integration.request.header.X-Amzn-SageMaker-Custom-Attributes": (
                        "method.request.header.X-Amzn-SageMaker-Custom-Attributes"
                    ),
                },
                integration_responses=[
                    apigw.IntegrationResponse(status_code="200"),
                    # SageMaker answers 424 (ModelError) when the container rejects the input.
                    apigw.IntegrationResponse(status_code="400", selection_pattern="4(0\\d|1\\d|2[0-8]|[3-9]\\d)"),
                    apigw.IntegrationResponse(status_code="429", selection_pattern="429"),
                    apigw.IntegrationResponse(status_code="502", selection_pattern="5\\d{2}"),
                ],
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
                "method.request.header.X-Amzn-SageMaker-Custom-Attributes": False,
            },
            method_responses=[apigw.MethodResponse(status_code=code) for code in ("200", "400", "429", "502")],
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
        rate_rule = waf.CfnWebACL.RuleProperty(
            name="rate-limit-per-ip",
            priority=0,
            action=waf.CfnWebACL.RuleActionProperty(block={}),
            statement=waf.CfnWebACL.StatementProperty(
                rate_based_statement=waf.CfnWebACL.RateBasedStatementProperty(
                    aggregate_key_type="IP", limit=cfg.api.waf_rate_limit_per_5min, evaluation_window_sec=300
                )
            ),
            visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name="rate-limit-per-ip", sampled_requests_enabled=True
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
