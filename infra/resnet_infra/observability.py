"""Dashboard, alarms (stack-owned names, resnet_serving.naming), their SNS topic, log retention and the budget."""

from __future__ import annotations

from aws_cdk import CfnCondition, CfnOutput, CfnParameter, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from .config import InfraConfig
from .frontdoor import THROTTLE_METRIC
from .logs import log_group
from .naming import PROJECT, STACK, STACKS, alarm_name, dashboard_name

PERIOD = Duration.minutes(1)


class ObservabilityStack(Stack):
    def __init__(self, scope: Construct, cfg: InfraConfig, **kwargs: object) -> None:
        super().__init__(
            scope,
            "Observability",
            stack_name=STACKS["observability"],
            description="resnet-serving dashboard, alarms, SNS alert topic, SageMaker log retention, monthly budget",
            **kwargs,  # type: ignore[arg-type]
        )
        sm, al = cfg.sagemaker, cfg.alarms
        endpoint = sm.endpoint_name
        email = CfnParameter(
            self, "AlertEmail", type="String", default="", description="e-mail address for alarms and budget alerts"
        )
        alb = CfnParameter(
            self,
            "AlbFullName",
            type="String",
            default="app/none/0",
            description="the EKS ingress ALB's LoadBalancer dimension (app/<name>/<id>) for the dashboard",
        )

        # Alarms and Budgets publish to an encrypted topic only through a customer-managed key that lets them.
        topic_key = kms.Key(
            self,
            "AlertsKey",
            description="resnet-serving alert topic",
            alias=f"alias/{PROJECT}-alerts",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        for service in ("cloudwatch.amazonaws.com", "budgets.amazonaws.com"):
            topic_key.add_to_resource_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    principals=[iam.ServicePrincipal(service)],
                    resources=["*"],  # in a key policy "*" means this key
                    conditions={"StringEquals": {"aws:SourceAccount": self.account}},
                )
            )
        self.topic = sns.Topic(self, "Alerts", topic_name=f"{PROJECT}-alerts", master_key=topic_key, enforce_ssl=True)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetsPublish",
                actions=["sns:Publish"],
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        has_email = CfnCondition(self, "HasAlertEmail", expression=Fn.condition_not(Fn.condition_equals(email, "")))
        subscription = sns.CfnSubscription(
            self,
            "AlertEmailSubscription",
            topic_arn=self.topic.topic_arn,
            protocol="email",
            endpoint=email.value_as_string,
        )
        subscription.cfn_options.condition = has_email

        def sagemaker(name: str, statistic: str = "Sum") -> cw.Metric:
            return cw.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": endpoint, "VariantName": sm.variant_name},
                statistic=statistic,
                period=PERIOD,
            )

        def apigateway(name: str, statistic: str = "Sum") -> cw.Metric:
            return cw.Metric(
                namespace="AWS/ApiGateway",
                metric_name=name,
                dimensions_map={"ApiName": cfg.api.name, "Stage": cfg.api.stage},
                statistic=statistic,
                period=PERIOD,
            )

        def load_balancer(name: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/ApplicationELB",
                metric_name=name,
                dimensions_map={"LoadBalancer": alb.value_as_string},
                statistic=statistic,
                period=PERIOD,
            )

        invocations = sagemaker("Invocations")
        errors_5xx = sagemaker("Invocation5XXErrors")
        # ModelLatency is reported in microseconds.
        p99 = sagemaker("ModelLatency", "p99")
        error_rate = cw.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={"errors": errors_5xx, "invocations": invocations},
            label="5xx % of invocations",
            period=PERIOD,
        )
        # SageMaker publishes no instance count; Invocations / InvocationsPerInstance is the count while traffic flows.
        instances = cw.MathExpression(
            expression="IF(perinstance > 0, invocations / perinstance, 0)",
            using_metrics={"invocations": invocations, "perinstance": sagemaker("InvocationsPerInstance")},
            label="instances in service",
            period=PERIOD,
        )
        throttled = cw.Metric(
            namespace=THROTTLE_METRIC[0], metric_name=THROTTLE_METRIC[1], statistic="Sum", period=PERIOD
        )

        # One sample a minute per instance while any runs, traffic or not: no sample means no instance serves.
        instance_samples = cw.Metric(
            namespace="/aws/sagemaker/Endpoints",
            metric_name="CPUUtilization",
            dimensions_map={"EndpointName": endpoint, "VariantName": sm.variant_name},
            statistic="SampleCount",
            period=PERIOD,
        )
        idle, down = cw.TreatMissingData.NOT_BREACHING, cw.TreatMissingData.BREACHING
        action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cw.Alarm] = {}
        for kind, metric, threshold, comparison, missing, what in (
            (
                "p99-latency",
                p99,
                al.p99_latency_ms * 1000,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                idle,
                f"p99 model latency above {al.p99_latency_ms:g} ms",
            ),
            (
                "5xx",
                error_rate,
                al.error_5xx_percent,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                idle,
                f"more than {al.error_5xx_percent:g}% of invocations answered 5xx",
            ),
            (
                "throttles",
                throttled,
                al.throttled_requests_per_minute,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                idle,
                f"API Gateway throttled more than {al.throttled_requests_per_minute:g} requests a minute (429)",
            ),
            (
                "instances-at-max",
                instances,
                sm.max_instances,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                idle,
                f"the endpoint runs at its autoscaling maximum ({sm.max_instances} instances): no headroom left",
            ),
            (
                "api-errors",
                # 5XXError is 0 or 1 per request: its average is the share answered 5xx, the front door's included
                apigateway("5XXError", "Average"),
                al.error_5xx_percent / 100,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                idle,
                f"more than {al.error_5xx_percent:g}% of API Gateway requests answered 5xx (what clients get)",
            ),
            (
                "api-latency",
                apigateway("Latency", "p99"),
                al.p99_latency_ms,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                idle,
                f"p99 of API Gateway latency (what clients wait, queue and front door included) above "
                f"{al.p99_latency_ms:g} ms",
            ),
            (
                "unavailable",
                instance_samples,
                1,
                cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                down,
                "no endpoint instance reports CPUUtilization: none is running, every request fails",
            ),
        ):
            alarm = cw.Alarm(
                self,
                "Alarm" + "".join(p.capitalize() for p in kind.split("-")),
                alarm_name=alarm_name(endpoint, kind, STACK),
                alarm_description=f"resnet-serving {endpoint}: {what}",
                metric=metric,
                threshold=threshold,
                comparison_operator=comparison,
                evaluation_periods=al.evaluation_periods,
                datapoints_to_alarm=al.evaluation_periods,
                treat_missing_data=missing,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[kind] = alarm

        dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=dashboard_name(endpoint), default_interval=Duration.hours(3)
        )
        dashboard.add_widgets(
            cw.GraphWidget(title="SageMaker invocations", left=[invocations], width=8),
            cw.GraphWidget(
                title="SageMaker model latency (µs)",
                left=[sagemaker("ModelLatency", "p50"), p99, sagemaker("OverheadLatency", "p99")],
                width=8,
            ),
            cw.GraphWidget(
                title="SageMaker errors",
                left=[sagemaker("Invocation4XXErrors"), errors_5xx],
                right=[error_rate],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(title="SageMaker instances", left=[instances], width=8),
            cw.GraphWidget(
                title="API Gateway requests",
                left=[apigateway("Count"), apigateway("4XXError"), apigateway("5XXError"), throttled],
                width=8,
            ),
            cw.GraphWidget(
                title="API Gateway latency (ms)",
                left=[apigateway("Latency", "p99"), apigateway("IntegrationLatency", "p99")],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="EKS ALB target response time (s)",
                left=[load_balancer("TargetResponseTime", "p99"), load_balancer("TargetResponseTime", "p50")],
                width=12,
            ),
            cw.GraphWidget(
                title="EKS ALB 5xx",
                left=[
                    load_balancer("HTTPCode_Target_5XX_Count", "Sum"),
                    load_balancer("HTTPCode_ELB_5XX_Count", "Sum"),
                ],
                width=12,
            ),
            cw.AlarmStatusWidget(title="resnet-serving alarms", alarms=list(self.alarms.values()), width=24),
        )

        # SageMaker creates this group itself with no expiry; created here first, it keeps the retention.
        log_group(
            self,
            "EndpointLogs",
            f"/aws/sagemaker/Endpoints/{endpoint}",
            cfg.log_retention_days,
            RemovalPolicy.RETAIN,
        )

        budgets.CfnBudget(
            self,
            "MonthlyBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=f"{PROJECT}-monthly",
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=cfg.budget.monthly_usd, unit="USD"),
                # only what carries the stacks' `project` tag (app.py; activate it as a cost-allocation tag), not
                # the whole account
                cost_filters={"TagKeyValue": [f"user:project${PROJECT}"]},
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=kind,
                        comparison_operator="GREATER_THAN",
                        threshold=cfg.budget.alert_percent,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=[
                        budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=self.topic.topic_arn)
                    ],
                )
                for kind in ("ACTUAL", "FORECASTED")
            ],
        )

        CfnOutput(self, "AlertTopicArn", value=self.topic.topic_arn)
        for kind, alarm in self.alarms.items():
            CfnOutput(self, "Alarm" + "".join(p.capitalize() for p in kind.split("-")) + "Name", value=alarm.alarm_name)
        CfnOutput(self, "DashboardName", value=dashboard_name(endpoint))
