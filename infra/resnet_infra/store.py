"""The model store: the versioned, KMS-encrypted bucket only the five resnet-serving roles may read or write;
and the ECR repositories of the serving and operator images, under the same key.

The key policy is CDK's default: the account may use the key through IAM policies, so each role's own policy
(roles.py) is what admits it, the deployer included; a principal named in a key policy would also have to
exist before this stack, which the roles stack (deployed after it) cannot give. The repositories use the same key
rather than one of their own: ECR gives itself a grant on it when it creates a repository, so the key policy
stays as it is, and pulls (EKS nodes, SageMaker) need no KMS rights.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .config import IMAGE_KINDS, InfraConfig, Replication
from .nag import ack, checkov_skip
from .naming import STACKS

# Object-level actions the bucket policy denies to every principal but the resnet-serving roles. Bucket
# administration (policy, encryption, lifecycle) stays with the account's admins, so a typo in the role list
# cannot lock the account out of its own bucket.
DATA_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAttributes",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:RestoreObject",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
]
# Untagged images only come from pushes by digest (tags are immutable, so none is ever moved off an image).
UNTAGGED_IMAGE_DAYS = 14


def role_arn(name: str) -> str:
    return Fn.sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{name}")


class StoreStack(Stack):
    def __init__(self, scope: Construct, cfg: InfraConfig, **kwargs: object) -> None:
        super().__init__(
            scope,
            "Store",
            stack_name=STACKS["store"],
            description="resnet-serving model store (KMS-encrypted, versioned S3 bucket, its access-log bucket) and "
            "the ECR repositories of the serving and operator images",
            **kwargs,  # type: ignore[arg-type]
        )
        sc = cfg.store
        self.key = kms.Key(
            self,
            "StoreKey",
            description="resnet-serving model store (SSE-KMS with an S3 Bucket Key) and image repositories (ECR)",
            alias=f"alias/{cfg.project}-store",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        # Server access logs: S3's log delivery only writes to SSE-S3 buckets.
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(sc.access_log_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(sc.abort_incomplete_multipart_days),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        checkov_skip(self.log_bucket, "CKV_AWS_18", "This is the access-log bucket itself; logging it would loop.")

        allowed = [role_arn(cfg.roles[kind]) for kind in ("serving", "operator", "publisher", "sagemaker", "deployer")]
        replication_role = self._replication_role(cfg) if sc.replication else None
        if replication_role is not None:
            allowed.append(replication_role.role_arn)

        self.bucket = s3.Bucket(
            self,
            "ModelStore",
            bucket_name=Fn.sub(sc.bucket_name),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix=f"{cfg.project}-models/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                            transition_after=Duration.days(sc.noncurrent_to_intelligent_tiering_days),
                        )
                    ],
                    noncurrent_version_expiration=Duration.days(sc.noncurrent_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(sc.abort_incomplete_multipart_days),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyAllButTheResnetServingRoles",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=DATA_ACTIONS,
                resources=[self.bucket.bucket_arn, self.bucket.arn_for_objects("*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": allowed}},
            )
        )
        if replication_role is not None and sc.replication is not None:
            self._replicate(replication_role, sc.replication)

        CfnOutput(self, "BucketName", value=self.bucket.bucket_name, description="the model store bucket")
        CfnOutput(self, "StoreUri", value=f"s3://{self.bucket.bucket_name}/{sc.prefix}", description="--store URI")
        CfnOutput(self, "KeyArn", value=self.key.key_arn, description="--kms-key-id for resnet-serving push")
        CfnOutput(self, "AccessLogBucketName", value=self.log_bucket.bucket_name)

        self.repositories = {kind: self._image_repository(kind, name) for kind, name in cfg.repositories.items()}
        for kind, repository in self.repositories.items():
            CfnOutput(
                self,
                f"{kind.capitalize()}RepositoryUri",
                # The URI spelled out, rather than CDK's split of the repository ARN: the same value, readable.
                value=Fn.sub(
                    "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${Name}",
                    {"Name": repository.repository_name},
                ),
                description=f"docker push target of the {kind} image (docker/Dockerfile.{kind})",
            )

    def _image_repository(self, kind: str, name: str) -> ecr.Repository:
        assert kind in IMAGE_KINDS, kind
        return ecr.Repository(
            self,
            f"{kind.capitalize()}Images",
            repository_name=name,
            # A pushed tag names one image for good: moving it would change what pods and endpoints pull.
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            image_scan_on_push=True,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=self.key,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"expire untagged images {UNTAGGED_IMAGE_DAYS} days after their push",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(UNTAGGED_IMAGE_DAYS),
                )
            ],
            # Deleting the stack must not delete the images running endpoints and pods pull.
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _replication_role(self, cfg: InfraConfig) -> iam.Role:
        assert cfg.store.replication is not None
        return iam.Role(
            self,
            "ReplicationRole",
            role_name=cfg.store.replication.role_name,
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            description="S3 cross-region replication of the model store",
        )

    def _replicate(self, role: iam.Role, rep: Replication) -> None:
        source, destination_arn = self.bucket, rep.destination_bucket_arn
        destination_region = rep.destination_kms_key_arn.split(":")[3]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetReplicationConfiguration", "s3:ListBucket"], resources=[source.bucket_arn]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
                resources=[source.arn_for_objects("*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:ReplicateObject", "s3:ReplicateTags"], resources=[f"{destination_arn}/*"])
        )
        # Both keys only through S3, each in its own region: the role cannot use them for anything else.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": Fn.sub("s3.${AWS::Region}.amazonaws.com")}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Encrypt", "kms:GenerateDataKey"],
                resources=[rep.destination_kms_key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{destination_region}.amazonaws.com"}},
            )
        )
        cfn = source.node.default_child
        assert isinstance(cfn, s3.CfnBucket)
        cfn.replication_configuration = s3.CfnBucket.ReplicationConfigurationProperty(
            role=role.role_arn,
            rules=[
                s3.CfnBucket.ReplicationRuleProperty(
                    id="dr-copy",
                    status="Enabled",
                    priority=0,
                    filter=s3.CfnBucket.ReplicationRuleFilterProperty(prefix=""),
                    delete_marker_replication=s3.CfnBucket.DeleteMarkerReplicationProperty(status="Disabled"),
                    source_selection_criteria=s3.CfnBucket.SourceSelectionCriteriaProperty(
                        sse_kms_encrypted_objects=s3.CfnBucket.SseKmsEncryptedObjectsProperty(status="Enabled")
                    ),
                    destination=s3.CfnBucket.ReplicationDestinationProperty(
                        bucket=destination_arn,
                        encryption_configuration=s3.CfnBucket.EncryptionConfigurationProperty(
                            replica_kms_key_id=rep.destination_kms_key_arn
                        ),
                    ),
                )
            ],
        )
        # The finding names the bucket by its logical id: derive it, a hard-coded hash goes stale silently.
        ack(
            role,
            f"AwsSolutions-IAM5[Resource::<{self.get_logical_id(cfn)}.Arn>/*]",
            "Replication reads every object version of the store: the keys are not known in advance.",
        )
        ack(
            role,
            f"AwsSolutions-IAM5[Resource::{destination_arn}/*]",
            "Replication writes every object version into the destination bucket: the keys are not known in advance.",
        )
