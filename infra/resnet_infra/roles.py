"""The five roles that may touch the model store, least privilege, with fixed names the bucket policy trusts.

The serving and operator roles are IRSA roles: their trust policy names the cluster's OIDC issuer, a stack
parameter, because eksctl creates the issuer after the cluster exists. The deployer role runs
`resnet-serving sagemaker deploy|status|rollback|delete`; the operator gets the same deploy rights only when
`eks.operator_sagemaker_sync` is on.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, CfnParameter, Fn, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from .config import InfraConfig
from .nag import ack
from .naming import ALARM_KINDS, ALARM_OWNER_SUFFIX, DEPLOY, PROJECT, STACK, STACKS, alarm_name, guardrail_alarm_names
from .store import StoreStack, role_arn

# The AWS actions src/resnet_serving/sagemaker/ calls through its `call(...)` helper, by IAM service prefix.
# deploy.py (deploy, rollback, and update_endpoint_version, which the operator runs for spec.sagemakerEndpoint):
DEPLOY_ACTIONS = {
    "sagemaker": (
        "DescribeEndpoint", "DescribeEndpointConfig", "DescribeModel", "ListTags", "AddTags", "CreateModel",
        "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint",
    ),
    "cloudwatch": ("DescribeAlarms", "ListTagsForResource", "PutMetricAlarm"),
    "application-autoscaling": (
        "DescribeScalableTargets", "DescribeScalingPolicies", "RegisterScalableTarget", "PutScalingPolicy",
        "DeregisterScalableTarget",
    ),
}  # fmt: skip
# manage.py (status, delete), which only the deployer runs:
MANAGE_ACTIONS = {
    "sagemaker": ("ListEndpointConfigs", "ListModels", "DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel"),
    "cloudwatch": ("DeleteAlarms",),
    "application-autoscaling": (),
}
# SageMaker lists support no resource ARN; every other SageMaker action above is scoped to the project's names.
UNSCOPED_SAGEMAKER = ("ListEndpointConfigs", "ListModels")
UNSCOPED_AUTOSCALING = ("DescribeScalableTargets", "DescribeScalingPolicies")
# The CloudWatch actions allowed on every project alarm; the others only on deploy's own (alarm_pattern below).
ALARM_READS = ("DescribeAlarms", "ListTagsForResource")
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
AUTOSCALING_SLR = "sagemaker.application-autoscaling.amazonaws.com"

# A whole-document Fn::Sub, because IAM condition keys ("<issuer>:sub") cannot be intrinsic functions and the
# alternative, CfnJson, deploys a Lambda-backed custom resource.
IRSA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": "arn:${AWS::Partition}:iam::${AWS::AccountId}:oidc-provider/${Issuer}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    "${Issuer}:aud": "sts.amazonaws.com",
                    "${Issuer}:sub": "system:serviceaccount:{namespace}:{service_account}",
                }
            },
        }
    ],
}


def alarm_pattern(owner: str) -> str:
    """The IAM resource name pattern of every alarm ``owner`` names, for any endpoint: ``resnet-serving-*-deploy``.

    By the naming rule a name's last segment says whose it is, so the pattern matches no other owner's names. The
    stack's names are the bare rule, which every owner's names extend: there is no pattern for them alone.
    """
    if owner == STACK or owner not in ALARM_OWNER_SUFFIX:
        others = ", ".join(o for o in ALARM_OWNER_SUFFIX if o != STACK)
        raise ValueError(f"no alarm pattern for owner {owner!r}; expected one of {others}")
    return f"{PROJECT}-*{ALARM_OWNER_SUFFIX[owner]}"


def resource_prefix(cfg: InfraConfig) -> str:
    """The name prefix of the endpoints, endpoint configs and models the SageMaker policies allow.

    Model and endpoint-config names start with the endpoint name cut to 24 characters (as `delete` lists them),
    and SageMaker writes names into ARNs in lowercase.
    """
    return cfg.sagemaker.endpoint_name[:24].rstrip("-").lower()


def list_store_prefix(bucket_arn: str, prefix: str) -> iam.PolicyStatement:
    """ListBucket on the store's prefix only: a reader needs it to get 404, not 403, for a missing key."""
    return iam.PolicyStatement(
        sid="ListTheStorePrefix",
        actions=["s3:ListBucket"],
        resources=[bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
    )


def via_s3() -> dict[str, str]:
    """The store key's condition: used through S3 in this region, never directly."""
    return {"kms:ViaService": Fn.sub("s3.${AWS::Region}.amazonaws.com")}


class RolesStack(Stack):
    def __init__(self, scope: Construct, cfg: InfraConfig, store: StoreStack, **kwargs: object) -> None:
        super().__init__(
            scope,
            "Roles",
            stack_name=STACKS["roles"],
            description="resnet-serving IAM roles: serving, operator (IRSA), publisher, SageMaker execution, deployer",
            **kwargs,  # type: ignore[arg-type]
        )
        self.cfg = cfg
        issuer_url = CfnParameter(
            self,
            "OidcIssuerUrl",
            type="String",
            description="the EKS cluster's OIDC issuer: aws eks describe-cluster --query cluster.identity.oidc.issuer",
            allowed_pattern=r"^https://oidc\.eks\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/id/[A-Za-z0-9]+$",
            constraint_description="an https://oidc.eks.<region>.amazonaws.com/id/<ID> URL",
        )
        self.issuer = Fn.select(1, Fn.split("https://", issuer_url.value_as_string))
        # The bucket's ARN from its configured name rather than an import: the roles then name the bucket even
        # before it exists, and their policies read the same in the template as in review.
        bucket_arn = Fn.sub(f"arn:${{AWS::Partition}}:s3:::{cfg.store.bucket_name}")
        key_arn = store.key.key_arn
        prefix = cfg.store.prefix
        objects = f"{bucket_arn}/{prefix}/*"
        read = [
            iam.PolicyStatement(sid="ReadArchives", actions=["s3:GetObject"], resources=[objects]),
            list_store_prefix(bucket_arn, prefix),
            iam.PolicyStatement(
                sid="DecryptThroughS3",
                actions=["kms:Decrypt"],
                resources=[key_arn],
                conditions={"StringEquals": via_s3()},
            ),
        ]
        prefix_reason = "Archives and manifests live under the store prefix; their keys are only known at push time."

        self.serving = self._irsa_role("serving", cfg.eks.serving_service_account, read, "serving pods: read the store")
        self.operator = self._irsa_role(
            "operator", cfg.eks.operator_service_account, read, "model-rollout operator: list versions, read channels"
        )

        self.publisher = iam.Role(
            self,
            "Publisher",
            role_name=cfg.roles["publisher"],
            description="resnet-serving push/promote: write archives and channels; never deletes an archive",
            assumed_by=iam.AccountRootPrincipal(),
        )
        for statement in [
            *read,
            iam.PolicyStatement(
                sid="WriteVersionsAndChannels",
                actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                resources=[objects],
            ),
            # The two delete patterns are resnet_serving.store.DELETABLE_KEY_PATTERNS, the store's key shapes
            # (tests/unit/test_shared_names.py holds the synthesized policy equal to them).
            # push --force hides a version by deleting its manifest first; archives are never deleted, and
            # versioning keeps the old manifest as a noncurrent version.
            iam.PolicyStatement(
                sid="HideAVersionBeforeReplacingIt",
                actions=["s3:DeleteObject"],
                resources=[f"{bucket_arn}/{prefix}/*/manifest.json"],
            ),
            # manifests, pointers and model.tar.gz are written to a hidden `.<name>.<id>.tmp` key, copied into
            # place, then the temp key is removed: only those keys may go.
            iam.PolicyStatement(
                sid="RemoveItsOwnTempKeys",
                actions=["s3:DeleteObject"],
                resources=[f"{bucket_arn}/{prefix}/*.tmp"],
            ),
            iam.PolicyStatement(
                sid="EncryptNewObjects",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[key_arn],
                conditions={"StringEquals": via_s3()},
            ),
        ]:
            self.publisher.add_to_policy(statement)

        self.sagemaker = iam.Role(
            self,
            "SageMakerExecution",
            role_name=cfg.roles["sagemaker"],
            description="resnet-serving SageMaker endpoint execution role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        )
        endpoint = cfg.sagemaker.endpoint_name
        # Only the serving image, which SageMaker runs; ECR decrypts KMS-encrypted layers through its own key grant.
        serving_repo = Fn.sub(
            f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/{cfg.serving_repository}"
        )
        log_groups = Fn.sub(
            "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/Endpoints/*"
        )
        # Guardrails read whichever alarms an update names: the stack's, or deploy's own where the stack's are missing.
        guardrail_alarms = [alarm_name(endpoint, kind) for kind in ALARM_KINDS] + [
            *guardrail_alarm_names(endpoint, DEPLOY)
        ]
        alarm_arns = [
            Fn.sub(f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{name}")
            for name in guardrail_alarms
        ]
        for statement in [
            *read,
            iam.PolicyStatement(
                sid="PullTheServingImage",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[serving_repo],
            ),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="EndpointLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[log_groups, f"{log_groups}:log-stream:*"],
            ),
            iam.PolicyStatement(
                sid="EndpointMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}},
            ),
            iam.PolicyStatement(sid="GuardrailAlarms", actions=["cloudwatch:DescribeAlarms"], resources=alarm_arns),
        ]:
            self.sagemaker.add_to_policy(statement)

        self.deployer = iam.Role(
            self,
            "SageMakerDeployer",
            role_name=cfg.roles["deployer"],
            description="resnet-serving sagemaker deploy|status|rollback|delete: the project's endpoints only",
            assumed_by=iam.CompositePrincipal(
                *(iam.ArnPrincipal(Fn.sub(arn) if "${" in arn else arn) for arn in cfg.sagemaker.deployer_principals)
            ),
        )
        for statement in self._sagemaker_statements(bucket_arn, key_arn, manage=True):
            self.deployer.add_to_policy(statement)

        # Opt-in (eks.operator_sagemaker_sync): the operator moves spec.sagemakerEndpoint with the deploy code,
        # so it needs deploy's rights; status and delete (listing, deleting) stay with the deployer.
        self.operator_sync: iam.Policy | None = None
        if cfg.eks.operator_sagemaker_sync:
            self.operator_sync = iam.Policy(
                self,
                "OperatorSageMakerSync",
                statements=self._sagemaker_statements(bucket_arn, key_arn, manage=False),
                roles=[self.operator],
            )

        nag_bucket = "arn:<AWS::Partition>:s3:::" + cfg.store.bucket_name.replace("${", "<").replace("}", ">")
        policy = lambda role: role.node.find_child("DefaultPolicy")  # noqa: E731
        for role in (self.serving, self.operator, self.publisher, self.sagemaker):
            ack(policy(role), f"AwsSolutions-IAM5[Resource::{nag_bucket}/{prefix}/*]", prefix_reason)
        ack(
            policy(self.publisher),
            f"AwsSolutions-IAM5[Resource::{nag_bucket}/{prefix}/*/manifest.json]",
            "Only manifests may be deleted (push --force), one per version; version numbers are not known here.",
        )
        ack(
            policy(self.publisher),
            f"AwsSolutions-IAM5[Resource::{nag_bucket}/{prefix}/*.tmp]",
            "Only the hidden temp keys of its own atomic writes may be deleted; their names are random.",
        )
        ack(
            policy(self.sagemaker),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource ARN (PutMetricData is "
            "limited to the endpoint namespace by condition).",
        )
        ack(
            policy(self.sagemaker),
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
            "/aws/sagemaker/Endpoints/*]",
            "SageMaker names the endpoint's log group and streams itself, under /aws/sagemaker/Endpoints/.",
        )
        ack(
            policy(self.sagemaker),
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
            "/aws/sagemaker/Endpoints/*:log-stream:*]",
            "SageMaker names one log stream per instance and container; the names are not known in advance.",
        )

        for sync_policy in (policy(self.deployer), self.operator_sync):
            if sync_policy is not None:
                self._ack_sagemaker(sync_policy, nag_bucket, prefix)

        for kind, role in (
            ("Serving", self.serving),
            ("Operator", self.operator),
            ("Publisher", self.publisher),
            ("SageMakerExecution", self.sagemaker),
            ("SageMakerDeployer", self.deployer),
        ):
            CfnOutput(self, f"{kind}RoleArn", value=role.role_arn, description=f"{kind} role ARN")

    def _irsa_role(self, kind: str, service_account: str, statements: list[iam.PolicyStatement], what: str) -> iam.Role:
        role = iam.Role(
            self,
            kind.capitalize(),
            role_name=self.cfg.roles[kind],
            description=f"resnet-serving {what} (IRSA: {self.cfg.eks.namespace}/{service_account})",
            assumed_by=iam.WebIdentityPrincipal("sts.amazonaws.com"),  # replaced below by the IRSA trust
        )
        trust = json.dumps(IRSA_TRUST).replace("{namespace}", self.cfg.eks.namespace)
        trust = trust.replace("{service_account}", service_account)
        cfn = role.node.default_child
        assert isinstance(cfn, iam.CfnRole)
        cfn.add_property_override("AssumeRolePolicyDocument", Fn.sub(trust, {"Issuer": self.issuer}))
        for statement in statements:
            role.add_to_policy(statement)
        return role

    def _sagemaker_statements(self, bucket_arn: str, key_arn: str, *, manage: bool) -> list[iam.PolicyStatement]:
        """What `sagemaker deploy` and `rollback` need (and, with ``manage``, `status` and `delete`)."""
        cfg = self.cfg
        wanted = {
            service: [*DEPLOY_ACTIONS[service], *(MANAGE_ACTIONS[service] if manage else ())]
            for service in DEPLOY_ACTIONS
        }
        name = resource_prefix(cfg)
        arn = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}"
        sagemaker_arns = [Fn.sub(f"{arn}:{kind}/{name}*") for kind in ("endpoint", "endpoint-config", "model")]
        alarm = "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm"
        prefix = cfg.store.prefix
        objects = f"{bucket_arn}/{prefix}"
        statements = [
            iam.PolicyStatement(
                sid="ProjectEndpointsConfigsAndModels",
                actions=[f"sagemaker:{a}" for a in wanted["sagemaker"] if a not in UNSCOPED_SAGEMAKER]
                # Application Auto Scaling checks that the caller of RegisterScalableTarget may itself change
                # the variant's instance count.
                + ["sagemaker:UpdateEndpointWeightsAndCapacities"],
                resources=sagemaker_arns,
            ),
            iam.PolicyStatement(
                sid="PassOnlyTheExecutionRoleToSageMaker",
                actions=["iam:PassRole"],
                resources=[role_arn(cfg.roles["sagemaker"])],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                # Deploy reads the stack's guardrail alarms (and checks its own tags) but never writes them.
                sid="ReadTheProjectsAlarms",
                actions=[f"cloudwatch:{a}" for a in wanted["cloudwatch"] if a in ALARM_READS],
                resources=[Fn.sub(f"{alarm}:{PROJECT}-*")],
            ),
            iam.PolicyStatement(
                sid="WriteOnlyDeploysOwnAlarms",
                # put_metric_alarm passes Tags: CloudWatch authorizes them as TagResource.
                actions=[f"cloudwatch:{a}" for a in [*wanted["cloudwatch"], "TagResource"] if a not in ALARM_READS],
                resources=[Fn.sub(f"{alarm}:{alarm_pattern(DEPLOY)}")],
            ),
            iam.PolicyStatement(
                # Application Auto Scaling checks that the caller of PutScalingPolicy may itself manage the
                # target-tracking alarms it creates for the variant.
                sid="TargetTrackingAlarmsOfTheVariant",
                actions=["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
                resources=[Fn.sub(f"{alarm}:TargetTracking-endpoint/{name}*")],
            ),
            iam.PolicyStatement(
                sid="ReadScalingOfEndpoints",
                actions=[f"application-autoscaling:{a}" for a in UNSCOPED_AUTOSCALING],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="ScaleSageMakerVariantsOnly",
                actions=[
                    f"application-autoscaling:{a}"
                    for a in wanted["application-autoscaling"]
                    if a not in UNSCOPED_AUTOSCALING
                ],
                resources=[
                    Fn.sub(
                        "arn:${AWS::Partition}:application-autoscaling:${AWS::Region}:${AWS::AccountId}:scalable-target/*"
                    )
                ],
                conditions={
                    "StringEquals": {
                        "application-autoscaling:service-namespace": "sagemaker",
                        "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION,
                    }
                },
            ),
            iam.PolicyStatement(
                sid="ReadVersionsToPack",
                actions=["s3:GetObject"],
                # `deploy --channel` reads the channel's pointer (cli/sagemaker.py, through the store).
                resources=[
                    f"{objects}/*/channels/*.json",
                    f"{objects}/*/manifest.json",
                    f"{objects}/*/model.mar",
                    f"{objects}/*/sagemaker/*",
                ],
            ),
            # Without it S3 answers 403, not 404, for a model.tar.gz not uploaded yet.
            list_store_prefix(bucket_arn, prefix),
            iam.PolicyStatement(
                # model.tar.gz goes to a hidden temp key beside it, is copied into place, then the temp key goes.
                sid="WriteModelTarballs",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[f"{objects}/*/sagemaker/*"],
            ),
            iam.PolicyStatement(
                sid="RemoveItsOwnTempKeys",
                actions=["s3:DeleteObject"],
                resources=[f"{objects}/*/sagemaker/*.tmp"],
            ),
            iam.PolicyStatement(
                sid="StoreKeyThroughS3",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key_arn],
                conditions={"StringEquals": via_s3()},
            ),
            iam.PolicyStatement(
                # `deploy --kms-key <store key>` also encrypts the endpoint's ML storage volume: SageMaker grants
                # itself the key on the caller's behalf, a grant only an AWS service may create.
                sid="StoreKeyGrantsForEndpointVolumes",
                actions=["kms:CreateGrant"],
                resources=[key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            # SageMaker checks the --kms-key (its spec and state) with the caller's rights when it takes the config.
            iam.PolicyStatement(sid="DescribeTheStoreKey", actions=["kms:DescribeKey"], resources=[key_arn]),
        ]
        if manage:
            statements.append(
                iam.PolicyStatement(
                    sid="ListConfigsAndModelsToDelete",
                    actions=[f"sagemaker:{a}" for a in wanted["sagemaker"] if a in UNSCOPED_SAGEMAKER],
                    resources=["*"],
                )
            )
            # The first RegisterScalableTarget of an account creates Application Auto Scaling's SageMaker role.
            statements.append(
                iam.PolicyStatement(
                    sid="CreateTheAutoScalingServiceLinkedRole",
                    actions=["iam:CreateServiceLinkedRole"],
                    resources=[
                        Fn.sub(
                            f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/aws-service-role/{AUTOSCALING_SLR}/"
                            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
                        )
                    ],
                    conditions={"StringEquals": {"iam:AWSServiceName": AUTOSCALING_SLR}},
                )
            )
        return statements

    def _ack_sagemaker(self, scope: Construct, nag_bucket: str, prefix: str) -> None:
        """The deployer's and the operator's SageMaker findings: the same reasons, since they are the same grants."""
        name = resource_prefix(self.cfg)
        arn = "arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:"
        sagemaker, cloudwatch = arn.format(service="sagemaker"), arn.format(service="cloudwatch")
        names_reason = (
            "Deploy names models and configs after the endpoint, version, digest and settings: only names starting "
            "with the configured endpoint's are allowed."
        )
        for rule, reason in (
            (
                "Resource::*",
                "Application Auto Scaling's Describe calls and SageMaker's List calls support no resource ARN.",
            ),
            (f"Resource::{sagemaker}endpoint/{name}*", names_reason),
            (f"Resource::{sagemaker}endpoint-config/{name}*", names_reason),
            (f"Resource::{sagemaker}model/{name}*", names_reason),
            (
                f"Resource::{cloudwatch}alarm:{PROJECT}-*",
                f"Read only: deploy reads the stack's guardrail alarms and its own; every name starts with {PROJECT}-.",
            ),
            (
                f"Resource::{cloudwatch}alarm:{alarm_pattern(DEPLOY)}",
                "Deploy writes and deletes only its own alarms: named after the endpoint it is given, ending -deploy.",
            ),
            (
                f"Resource::{cloudwatch}alarm:TargetTracking-endpoint/{name}*",
                "Application Auto Scaling names a target-tracking policy's alarms itself, after the variant.",
            ),
            (
                "Resource::arn:<AWS::Partition>:application-autoscaling:<AWS::Region>:<AWS::AccountId>:"
                "scalable-target/*",
                "Scalable target ids are random; conditions allow only SageMaker variants' instance counts.",
            ),
            (
                f"Resource::{nag_bucket}/{prefix}/*/channels/*.json",
                "deploy --channel reads that channel's pointer; models and channels are only known at deploy time.",
            ),
            (
                f"Resource::{nag_bucket}/{prefix}/*/manifest.json",
                "Deploy reads the manifest of the version it packs; versions are only known at deploy time.",
            ),
            (
                f"Resource::{nag_bucket}/{prefix}/*/model.mar",
                "Deploy packs the archive of the version it deploys; versions are only known at deploy time.",
            ),
            (
                f"Resource::{nag_bucket}/{prefix}/*/sagemaker/*",
                "model.tar.gz and its temp key live in each version's sagemaker/ folder, known at deploy time.",
            ),
            (
                f"Resource::{nag_bucket}/{prefix}/*/sagemaker/*.tmp",
                "Only the hidden temp keys of its own model.tar.gz uploads may be deleted; their names are random.",
            ),
        ):
            ack(scope, f"AwsSolutions-IAM5[{rule}]", reason)
