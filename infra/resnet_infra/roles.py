"""The four roles that may touch the model store, least privilege, with fixed names the bucket policy trusts.

The serving and operator roles are IRSA roles: their trust policy names the cluster's OIDC issuer, a stack
parameter, because eksctl creates the issuer after the cluster exists.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, CfnParameter, Fn, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from .config import InfraConfig
from .nag import ack
from .naming import ALARM_KINDS, STACKS, alarm_name
from .store import StoreStack

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


class RolesStack(Stack):
    def __init__(self, scope: Construct, cfg: InfraConfig, store: StoreStack, **kwargs: object) -> None:
        super().__init__(
            scope,
            "Roles",
            stack_name=STACKS["roles"],
            description="resnet-serving IAM roles: serving (IRSA), operator (IRSA), publisher, SageMaker execution",
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
            iam.PolicyStatement(
                sid="ListTheStorePrefix",
                actions=["s3:ListBucket"],
                resources=[bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
            ),
            iam.PolicyStatement(
                sid="DecryptThroughS3",
                actions=["kms:Decrypt"],
                resources=[key_arn],
                conditions={"StringEquals": {"kms:ViaService": Fn.sub("s3.${AWS::Region}.amazonaws.com")}},
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
                conditions={"StringEquals": {"kms:ViaService": Fn.sub("s3.${AWS::Region}.amazonaws.com")}},
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
        repos = [
            Fn.sub(f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/{r}")
            for r in cfg.ecr_repositories
        ]
        log_groups = Fn.sub(
            "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/Endpoints/*"
        )
        alarm_arns = [
            Fn.sub(f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{name}")
            for name in (alarm_name(endpoint, kind) for kind in ALARM_KINDS)
        ]
        for statement in [
            *read,
            iam.PolicyStatement(
                sid="PullTheServingImage",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=repos,
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

        for kind, role in (
            ("Serving", self.serving),
            ("Operator", self.operator),
            ("Publisher", self.publisher),
            ("SageMakerExecution", self.sagemaker),
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
