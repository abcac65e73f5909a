"""The one place where botocore / s3transfer exceptions become typed store errors with actionable messages.

Everything the S3 backend calls goes through :func:`convert` (via ``S3Backend.call``); nothing else in the
store catches botocore exceptions. What an S3 error answer means is read by :class:`~resnet_serving.errors.AwsReply`,
the classifier SageMaker's answers go through too; this module words it for the store (IAM action, ARN, URI).
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from s3transfer.exceptions import RetriesExceededError

from resnet_serving.errors import (
    ACCESS_CODES,
    AccessDenied,
    AwsFault,
    AwsReply,
    NoSuchBucket,
    NotFound,
    StoreError,
    StoreUnavailable,
    Throttled,
)

# botocore operation -> the IAM action a policy must allow for it.
IAM_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
}


def _resource_arn(bucket: str, key: str, action: str) -> str:
    return f"arn:aws:s3:::{bucket}" if action == "s3:ListBucket" else f"arn:aws:s3:::{bucket}/{key}"


def convert(
    exc: BaseException,
    *,
    operation: str,
    bucket: str,
    key: str,
    endpoint: str | None,
    attempts: int = 1,
) -> StoreError | None:
    """Map ``exc`` raised while calling ``operation`` on ``s3://bucket/key`` to a typed error.

    Returns ``None`` for exceptions that do not come from botocore or s3transfer (the caller re-raises them).
    ``attempts`` is how many tries were made so far; it appears in messages of transient errors.
    """
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    at = f" at {endpoint}" if endpoint else ""
    tries = f" (gave up after {attempts} attempt{'s' if attempts != 1 else ''})"
    if isinstance(exc, RetriesExceededError):
        # s3transfer's download gave up on the body stream: a socket error, a timeout or a short read.
        last = exc.last_exception
        converted = (
            convert(last, operation=operation, bucket=bucket, key=key, endpoint=endpoint, attempts=attempts)
            if isinstance(last, BaseException)
            else None
        )
        return converted or StoreUnavailable(
            f"S3 {operation} on {where}{at}: the download broke off: {last or exc}{tries}"
        )

    if isinstance(exc, ClientError):
        reply = AwsReply.of(exc.response)
        code, message, status, fault = reply.code, reply.message, reply.status, reply.fault
        op = exc.operation_name or operation
        action = IAM_ACTIONS.get(op, f"s3:{op}")
        if code == "NoSuchBucket":
            return NoSuchBucket(
                f"bucket {bucket!r} does not exist{at}: check the --store URI (or create it: aws s3 mb s3://{bucket})"
            )
        if fault is AwsFault.ACCESS_DENIED:
            hint = f"allow {action} on {_resource_arn(bucket, key, action)} for the caller (IRSA role or profile)"
            if "kms" in message.lower():
                hint += ", and kms:GenerateDataKey / kms:Decrypt on the KMS key"
            said = "" if code in ACCESS_CODES or code in ("", "403") else f" [{code}: {message}]"
            return AccessDenied(f"access denied: {action} on {where} ({op}){said}: {hint}", action=action, key=where)
        if fault is AwsFault.CREDENTIALS:
            return AccessDenied(
                f"credentials rejected for {action} on {where}: {code}: {message}. Check AWS_PROFILE / "
                f"AWS_ACCESS_KEY_ID, or the IRSA role of the service account",
                action=action,
                key=where,
            )
        if fault is AwsFault.NOT_FOUND:
            return NotFound(f"{where} does not exist")
        if fault is AwsFault.THROTTLED:
            return Throttled(f"S3 throttled {op} on {where}{at}: {code}{tries}; try again later")
        if fault is AwsFault.UNAVAILABLE:
            return StoreUnavailable(f"S3 failed {op} on {where}{at}: {status} {code}: {message}{tries}")
        return StoreError(f"S3 refused {op} on {where}: {code or status}: {message}")

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AccessDenied(
            f"no usable AWS credentials for {where}: {exc}. Set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            f"AWS_SECRET_ACCESS_KEY, or give the pod's service account an IRSA role",
            action=IAM_ACTIONS.get(operation, f"s3:{operation}"),
            key=where,
        )
    if isinstance(exc, (IncompleteReadError, FlexibleChecksumError)):
        return StoreUnavailable(
            f"S3 {operation} on {where}{at}: the body arrived incomplete or corrupted in transit: {exc}{tries}"
        )
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return StoreUnavailable(f"S3 endpoint{at or ''} unreachable during {operation} on {where}: {exc}{tries}")
    if isinstance(exc, BotoCoreError):
        return StoreError(f"S3 {operation} on {where} failed: {exc}")
    return None
