"""The one place where botocore exceptions from SageMaker, sagemaker-runtime, Application Auto Scaling and
CloudWatch become typed errors that name the call and the resource.

Every AWS call in this package goes through :func:`call`; nothing else here catches botocore exceptions.
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
    ResnetServingError,
    SageMakerAccessDenied,
    SageMakerError,
    SageMakerInvalid,
    SageMakerNotFound,
    SageMakerQuota,
    SageMakerUnavailable,
)

ACCESS_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}
)
CREDENTIAL_CODES = frozenset(
    {"InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException"}
)
VALIDATION_CODES = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameterValueException",
        "MissingParameter",
        "InvalidFormat",
    }
)
THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ConcurrentUpdateException",
    }
)
NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "ObjectNotFoundException"})
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
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "") or code)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        low = message.lower()
        if code in ACCESS_CODES or (status == 403 and code not in THROTTLE_CODES):
            return SageMakerAccessDenied(
                f"access denied: {action} ({what}): {message}. Allow {action} for the caller (profile or role)"
            )
        if code in CREDENTIAL_CODES:
            return SageMakerAccessDenied(f"credentials rejected for {what}: {code}: {message}. Check AWS_PROFILE")
        if code in ("ResourceLimitExceeded", "LimitExceededException", "LimitExceeded"):
            return SageMakerQuota(
                f"quota reached: {what}: {message}. Ask for a higher limit in Service Quotas (SageMaker, the "
                f"instance type's 'for endpoint usage'), or use fewer or smaller instances"
            )
        if code == "ResourceInUse":
            return SageMakerInvalid(f"{what}: in use: {message}")
        if code in VALIDATION_CODES and ("role" in low or any(p in low for p in ROLE_PHRASES)):
            return SageMakerAccessDenied(
                f"{what}: {message}. Check that the --role exists, trusts sagemaker.amazonaws.com, and may "
                f"read the model data (s3:GetObject, kms:Decrypt) and pull the image (ecr:BatchGetImage)"
            )
        if code in NOT_FOUND_CODES or (code in VALIDATION_CODES and any(p in low for p in NOT_FOUND_PHRASES)):
            return SageMakerNotFound(f"{resource} not found ({op}): {message}")
        if code in VALIDATION_CODES:
            return SageMakerInvalid(f"{what} refused: {message}")
        if code in THROTTLE_CODES or status == 429:
            return SageMakerUnavailable(f"{service} throttled {what}: {code}: {message}; try again later")
        if status >= 500 or code in ("InternalFailure", "ServiceUnavailable", "InternalServerError"):
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
