"""Versioned model store on ``s3://bucket/prefix`` or ``file://dir``: the only code that talks to S3.

::

    store = open_store("s3://models/prod", endpoint_url=None)
    store.push("model-store/resnet50/3/model.mar", Manifest.load(".../manifest.json"), version="3")
    store.set_channel("resnet50", "stable", "3")
    store.fetch("resnet50", store.resolve_channel("resnet50", "stable"), "/models")  # verified

Layout and visibility rules: :mod:`resnet_serving.store.model_store` and ``model-store/README.md``.
Errors: :class:`~resnet_serving.errors.StoreError` and its subclasses, plus
:class:`~resnet_serving.errors.IntegrityError` (checksum mismatch) and
:class:`~resnet_serving.errors.InputError` (bad names, versions, URIs).
Which version to run is not the store's business: :mod:`resnet_serving.policy` decides it.
"""

from resnet_serving.errors import (
    AccessDenied,
    NoSuchBucket,
    NotFound,
    StoreError,
    StoreUnavailable,
    Throttled,
    VersionExists,
)
from resnet_serving.store.model_store import (
    DEFAULT_CHANNEL,
    DELETABLE_KEY_PATTERNS,
    Store,
    VersionInfo,
    archive_key,
    channel_key,
    derived_key,
    manifest_key,
    open_store,
    parse_store_uri,
    tarball_key,
    validate_channel,
    validate_model_name,
)
from resnet_serving.store.retry import POLL_RETRY, RetryPolicy

__all__ = [
    "DEFAULT_CHANNEL",
    "DELETABLE_KEY_PATTERNS",
    "POLL_RETRY",
    "AccessDenied",
    "NoSuchBucket",
    "NotFound",
    "RetryPolicy",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Throttled",
    "VersionExists",
    "VersionInfo",
    "archive_key",
    "channel_key",
    "derived_key",
    "manifest_key",
    "open_store",
    "parse_store_uri",
    "tarball_key",
    "validate_channel",
    "validate_model_name",
]
