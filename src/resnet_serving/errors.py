"""Typed errors with one base class, mapped to HTTP / exit codes / kopf errors at the edges.

Every error raised on purpose by this package derives from :class:`ResnetServingError`. Each carries the
HTTP status it maps to at the serving edge, so the handler never has to guess, and a message written for the
person who sent the input. Every error class of the package lives in this module::

    ResnetServingError (500)
    ├── InputError (400)                    the request or the command line is wrong
    │   ├── PayloadTooLarge (413)
    │   └── UnsupportedMediaType (415)
    ├── ConfigError (400)                   settings, flags or environment; exit 2
    ├── ArchiveError
    │   └── WeightsUnavailable
    ├── IntegrityError                      bytes that do not match their manifest
    ├── TorchServeError
    │   └── ManagementError                 a management API call failed (status, unreachable)
    ├── Overloaded (503)                    serve's guard: TorchServe's queue is full
    ├── StoreError (502)                    ``transient`` says whether retrying can help
    │   ├── NotFound (404)
    │   ├── NoSuchBucket (404)
    │   ├── AccessDenied (403)              names the IAM action and the key
    │   ├── VersionExists (409)
    │   ├── Throttled (503, transient)
    │   └── StoreUnavailable (503, transient)
    ├── OperatorError                       kopf.TemporaryError when transient, else PermanentError
    │   ├── InvalidModelDeployment (422)
    │   ├── InvalidTarget (422)
    │   └── KubernetesUnavailable (503, transient)
    └── SageMakerError (502)
        ├── SageMakerInvalid (400)
        ├── SageMakerAccessDenied (403)
        ├── SageMakerNotFound (404)
        ├── SageMakerQuota (503)
        ├── SageMakerUnavailable (503, transient)
        └── DeploymentFailed

    Exception (not errors of the package's edges: they never leave `sync` or `serve`)
    ├── VersionFailed                       a version did not register, load or answer; sync rolls back
    └── Stopped                             a wait ended because its stop event was set (a signal)

AWS answers (S3 and SageMaker alike) are read once, by :class:`AwsReply`: ``store/s3_errors.py`` and
``sagemaker/errors.py`` hand it the ``ClientError``'s response and turn its :class:`AwsFault` into their own
typed errors; only those two modules see botocore's exception types.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ResnetServingError(Exception):
    """Base class. ``http_status`` is what the serving edge answers; ``code`` is a stable machine-readable tag."""

    http_status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "status": self.http_status}


# ---- bad input (client errors) -------------------------------------------------------------------------
class InputError(ResnetServingError):
    """The request itself is wrong: undecodable image, bad JSON, bad base64, bad parameter."""

    http_status = 400
    code = "bad_request"


class PayloadTooLarge(InputError):
    """Too many bytes, too many pixels (decompression bomb guard) or too many images in one request."""

    http_status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InputError):
    """A content type or an image format that we do not accept."""

    http_status = 415
    code = "unsupported_media_type"


# ---- configuration / local state -----------------------------------------------------------------------
class ConfigError(ResnetServingError):
    """Settings, flags or environment are invalid. Raised at start-up: fail fast. The caller's mistake (exit 2)."""

    http_status = 400
    code = "config_error"


class ArchiveError(ResnetServingError):
    """Building or reading a model archive failed."""

    code = "archive_error"


class WeightsUnavailable(ArchiveError):
    """Pretrained weights were asked for but are neither cached nor downloadable."""

    code = "weights_unavailable"


class IntegrityError(ResnetServingError):
    """An artifact's bytes do not match the sha256 in its manifest. Never served."""

    code = "integrity_error"


class TorchServeError(ResnetServingError):
    """TorchServe could not be started, did not become ready, or its management API refused a call."""

    code = "torchserve_error"


class ManagementError(TorchServeError):
    """A management call failed. ``status`` is the HTTP status TorchServe answered (``None`` if it did not
    answer); ``unreachable`` says the connection itself failed (TorchServe down), as opposed to a timeout."""

    def __init__(self, message: str, *, status: int | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


class Overloaded(ResnetServingError):
    """TorchServe's queue for the model is full (or TorchServe does not answer): retry later."""

    http_status = 503
    code = "overloaded"


class VersionFailed(Exception):
    """The version itself is bad: it did not register, load or answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Stopped(Exception):
    """A wait gave up because its stop event was set (a signal, not a failure): ``TorchServe.wait_ready``, and
    every wait of ``Versions``."""


# ---- model store ---------------------------------------------------------------------------------------
class StoreError(ResnetServingError):
    """The model store (``s3://`` or ``file://``) failed or refused an operation.

    ``transient`` says whether trying again later can help (throttling, an unreachable endpoint): the sync
    loop keeps the current version serving and retries, the operator maps it to ``kopf.TemporaryError``.
    """

    http_status = 502
    code = "store_error"
    transient = False


class NotFound(StoreError):
    """A version, channel pointer, object or store directory does not exist."""

    http_status = 404
    code = "not_found"


class NoSuchBucket(StoreError):
    """The store itself does not exist: the S3 bucket (at this endpoint), or a ``file://`` store's directory."""

    http_status = 404
    code = "no_such_bucket"


class AccessDenied(StoreError):
    """The caller may not perform ``action`` (an IAM action such as ``s3:PutObject``) on ``key`` (a URI)."""

    http_status = 403
    code = "access_denied"

    def __init__(self, message: str, *, action: str, key: str) -> None:
        super().__init__(message)
        self.action = action
        self.key = key


class VersionExists(StoreError):
    """``push`` would overwrite a version that is already visible; ``--force`` allows it."""

    http_status = 409
    code = "version_exists"


class Throttled(StoreError):
    """The store kept answering "slow down" after all retries."""

    http_status = 503
    code = "throttled"
    transient = True


class StoreUnavailable(StoreError):
    """The store's endpoint could not be reached or kept failing (5xx, timeouts) after all retries."""

    http_status = 503
    code = "store_unavailable"
    transient = True


# ---- Kubernetes operator -------------------------------------------------------------------------------
class OperatorError(ResnetServingError):
    """The model-rollout operator cannot act on a ModelDeployment now.

    ``transient`` maps to ``kopf.TemporaryError`` (try again after ``retry_after`` seconds) at the handler
    edge; a non-transient error maps to ``kopf.PermanentError`` (wait until the spec or the target changes).
    """

    http_status = 500
    code = "operator_error"
    transient = False
    retry_after: float | None = None


class InvalidModelDeployment(OperatorError):
    """The ModelDeployment's spec is invalid (the CRD's schema normally rejects it at admission already)."""

    http_status = 422
    code = "invalid_model_deployment"


class InvalidTarget(OperatorError):
    """The target Deployment cannot be rolled out by the operator (no `fetch` init container, another store)."""

    http_status = 422
    code = "invalid_target"


class KubernetesUnavailable(OperatorError):
    """The Kubernetes API refused or failed a call (forbidden, conflict, server error, unreachable)."""

    http_status = 503
    code = "kubernetes_unavailable"
    transient = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


# ---- SageMaker -----------------------------------------------------------------------------------------
class SageMakerError(ResnetServingError):
    """SageMaker, Application Auto Scaling or CloudWatch failed or refused a call (the message names both)."""

    http_status = 502
    code = "sagemaker_error"
    transient = False


class SageMakerInvalid(SageMakerError):
    """The caller's request or settings are invalid (``ValidationException``, a resource that is not ours)."""

    http_status = 400
    code = "sagemaker_invalid"


class SageMakerAccessDenied(SageMakerError):
    """The caller lacks a permission, or SageMaker cannot assume the execution role."""

    http_status = 403
    code = "sagemaker_access_denied"


class SageMakerNotFound(SageMakerError):
    """The endpoint, config, model or alarm does not exist."""

    http_status = 404
    code = "sagemaker_not_found"


class SageMakerQuota(SageMakerError):
    """An account quota (``ResourceLimitExceeded``) stops the call; a quota increase or fewer instances helps."""

    http_status = 503
    code = "sagemaker_quota"


class SageMakerUnavailable(SageMakerError):
    """Throttled or a 5xx after the SDK's retries; trying again later can help."""

    http_status = 503
    code = "sagemaker_unavailable"
    transient = True


class DeploymentFailed(SageMakerError):
    """An endpoint create or update did not end with the new config in service (rolled back, failed, timed out)."""

    code = "deployment_failed"


# ---- AWS answers (S3, SageMaker, Application Auto Scaling, CloudWatch) -----------------------------------
class AwsFault(enum.Enum):
    """What an AWS error answer means, whichever service gave it."""

    ACCESS_DENIED = "access_denied"  # a policy refuses the action
    CREDENTIALS = "credentials"  # the caller's keys or token were rejected
    NOT_FOUND = "not_found"
    QUOTA = "quota"  # an account limit; a quota increase helps
    INVALID = "invalid"  # the request's parameters (a validation error)
    THROTTLED = "throttled"  # slow down: trying again later helps
    UNAVAILABLE = "unavailable"  # the service failed (5xx): trying again later helps
    OTHER = "other"


ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "Forbidden",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "InvalidSignatureException",
    }
)
NOT_FOUND_CODES = frozenset(
    {"NoSuchKey", "404", "NotFound", "ResourceNotFound", "ResourceNotFoundException", "ObjectNotFoundException"}
)
QUOTA_CODES = frozenset({"ResourceLimitExceeded", "LimitExceededException", "LimitExceeded"})
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
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ConcurrentUpdateException",
    }
)
UNAVAILABLE_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
#: 501 Not Implemented is not among them: asking again gets the same answer.
UNAVAILABLE_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class AwsReply:
    """An AWS error answer (botocore's ``ClientError.response``), read once: its code, message, HTTP status and
    what it means (:attr:`fault`). The one classifier of AWS answers; the S3 and SageMaker edges word the
    typed errors."""

    code: str
    message: str
    status: int
    response: Mapping[str, Any]

    @classmethod
    def of(cls, response: Mapping[str, Any]) -> AwsReply:
        error = response.get("Error", {}) or {}
        code = str(error.get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return cls(code=code, message=str(error.get("Message", "") or code), status=status, response=response)

    @property
    def fault(self) -> AwsFault:
        code, status = self.code, self.status
        if code in ACCESS_CODES:
            return AwsFault.ACCESS_DENIED
        if code in CREDENTIAL_CODES:
            return AwsFault.CREDENTIALS
        if status == 403 and code not in THROTTLE_CODES:
            return AwsFault.ACCESS_DENIED
        if code in QUOTA_CODES:
            return AwsFault.QUOTA
        if code in NOT_FOUND_CODES or status == 404:
            return AwsFault.NOT_FOUND
        if code in VALIDATION_CODES:
            return AwsFault.INVALID
        if code in THROTTLE_CODES or status == 429:
            return AwsFault.THROTTLED
        if code in UNAVAILABLE_CODES or status in UNAVAILABLE_STATUSES:
            return AwsFault.UNAVAILABLE
        return AwsFault.OTHER
