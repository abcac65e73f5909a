"""The one place where botocore exceptions from SageMaker, sagemaker-runtime, Application Auto Scaling and
CloudWatch become typed errors that name the call and the resource.

Every AWS call in this package goes through :func:`call`; nothing else here catches botocore exceptions. What an
error answer means is read by :class:`~resnet_serving.errors.AwsReply`, the classifier the S3 store's answers go
through too; this module words it for SageMaker (the call, the resource, the permission to grant).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from resnet_serving.errors import (
    AwsFault,
    AwsReply,
    ResnetServingError,
    SageMakerAccessDenied,
    SageMakerError,
    SageMakerInvalid,
    SageMakerNotFound,
    SageMakerQuota,
    SageMakerUnavailable,
)

# SageMaker says "Could not find endpoint ..." with a ValidationException for a missing resource.
NOT_FOUND_PHRASES = ("could not find", "does not exist", "not found")
ROLE_PHRASES = ("assume", "execution role", "could not access model data", "not authorized")
ACTION_PREFIX = {
    "sagemaker": "sagemaker",
    "sagemaker-runtime": "sagemaker",
    "application-autoscaling": "application-autoscaling",
    "cloudwatch": "cloudwatch",
}


def call(client: Any, operation: str, resource: str, **kwargs: Any) -> Any:
    """``client.<operation>(**kwargs)``; any botocore failure raised as a typed error naming the call and
    ``resource`` (``endpoint resnet50-prod``)."""
    fn: Callable[..., Any] = getattr(client, operation)
    try:
        return fn(**kwargs)
    except ResnetServingError:
        raise
    except Exception as exc:
        err = convert(exc, service=client.meta.service_model.service_name, operation=operation, resource=resource)
        if err is None:
            raise
        raise err from exc


def _pascal(operation: str) -> str:
    return "".join(p.capitalize() for p in operation.split("_"))


def convert(exc: BaseException, *, service: str, operation: str, resource: str) -> SageMakerError | None:
    """Map ``exc`` from ``service``'s ``operation`` on ``resource`` to a typed error (``None``: not botocore's)."""
    op = _pascal(operation)
    action = f"{ACTION_PREFIX.get(service, service)}:{op}"
    what = f"{op} on {resource}"
    if isinstance(exc, ClientError):
        reply = AwsReply.of(exc.response)
        code, message, status, fault = reply.code, reply.message, reply.status, reply.fault
        low = message.lower()
        if fault is AwsFault.ACCESS_DENIED:
            return SageMakerAccessDenied(
                f"access denied: {action} ({what}): {message}. Allow {action} for the caller (profile or role)"
            )
        if fault is AwsFault.CREDENTIALS:
            return SageMakerAccessDenied(f"credentials rejected for {what}: {code}: {message}. Check AWS_PROFILE")
        if fault is AwsFault.QUOTA:
            return SageMakerQuota(
                f"quota reached: {what}: {message}. Ask for a higher limit in Service Quotas (SageMaker, the "
                f"instance type's 'for endpoint usage'), or use fewer or smaller instances"
            )
        if code == "ResourceInUse":
            return SageMakerInvalid(f"{what}: in use: {message}")
        if fault is AwsFault.INVALID and ("role" in low or any(p in low for p in ROLE_PHRASES)):
            return SageMakerAccessDenied(
                f"{what}: {message}. Check that the --role exists, trusts sagemaker.amazonaws.com, and may "
                f"read the model data (s3:GetObject, kms:Decrypt) and pull the image (ecr:BatchGetImage)"
            )
        if fault is AwsFault.NOT_FOUND or (fault is AwsFault.INVALID and any(p in low for p in NOT_FOUND_PHRASES)):
            return SageMakerNotFound(f"{resource} not found ({op}): {message}")
        if fault is AwsFault.INVALID:
            return SageMakerInvalid(f"{what} refused: {message}")
        if fault is AwsFault.THROTTLED:
            return SageMakerUnavailable(f"{service} throttled {what}: {code}: {message}; try again later")
        if fault is AwsFault.UNAVAILABLE:
            return SageMakerUnavailable(f"{service} failed {what}: {status} {code}: {message}; try again later")
        if code == "ModelError":
            original = int(exc.response.get("OriginalStatusCode", 0) or 0)
            cls = SageMakerInvalid if 400 <= original < 500 else SageMakerError
            return cls(f"the model container answered {original or '?'} to {what}: {message}")
        return SageMakerError(f"{service} refused {what}: {code or status}: {message}")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return SageMakerAccessDenied(
            f"no usable AWS credentials for {what}: {exc}. Set AWS_PROFILE or AWS_ACCESS_KEY_ID"
        )
    if isinstance(exc, (EndpointConnectionError, BotoConnectionError)):
        return SageMakerUnavailable(f"{service} endpoint unreachable during {what}: {exc}")
    if isinstance(exc, BotoCoreError):
        return SageMakerError(f"{service} {what} failed: {exc}")
    return None
