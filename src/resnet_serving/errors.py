"""Typed errors with one base class, mapped to HTTP / exit codes / kopf errors at the edges.

Every error raised on purpose by this package derives from :class:`ResnetServingError`. Each carries the
HTTP status it maps to at the serving edge, so the handler never has to guess, and a message written for the
person who sent the input.
"""

from __future__ import annotations


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
