"""Derived objects beside a version in an ``s3://`` store (the SageMaker ``model.tar.gz``), written atomically.

A blob is uploaded to a temp key, then copied into place and the temp key removed, so a failed or interrupted
upload never leaves a half-written object at the real key. Its metadata records the sha256 of the archive it
was built from, so an unchanged blob is not uploaded twice. Every call goes through the S3 backend's retry
layer and error conversion (:mod:`.s3_errors`).
"""

from __future__ import annotations

from pathlib import Path

from boto3.s3.transfer import create_transfer_manager

from resnet_serving.errors import InputError, NotFound
from resnet_serving.store.backend import OnBytes, _ignore
from resnet_serving.store.model_store import Store
from resnet_serving.store.s3 import ProgressSubscriber, S3Backend


def s3_backend(store: Store, why: str) -> S3Backend:
    backend = store.backend
    if not isinstance(backend, S3Backend):
        raise InputError(f"{why} needs an s3:// store, not {store.uri}")
    return backend


def object_url(store: Store, key: str) -> str:
    """``s3://bucket/prefix/key`` for a key relative to the store root."""
    backend = s3_backend(store, "an S3 URL")
    return f"s3://{backend.bucket}/{backend.object_key(key)}"


def metadata(store: Store, key: str) -> dict[str, str] | None:
    """The object's user metadata, or ``None`` when there is no object at ``key``."""
    backend = s3_backend(store, "reading object metadata")
    try:
        head = backend.call(
            "HeadObject", key, lambda: backend.client.head_object(Bucket=backend.bucket, Key=backend.object_key(key))
        )
    except NotFound:
        return None
    return {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}


def put_file_atomic(
    store: Store,
    key: str,
    path: Path,
    *,
    meta: dict[str, str],
    kms_key_id: str | None = None,
    on_bytes: OnBytes = _ignore,
) -> str:
    """Upload ``path`` to ``key`` via a temp key and a server-side copy; return the object's ``s3://`` URL."""
    backend = s3_backend(store, "uploading a model.tar.gz")
    extra = {"Metadata": meta, "ContentType": "application/gzip", **backend.sse(kms_key_id)}

    def upload(tmp: str) -> None:
        with open(path, "rb") as f, create_transfer_manager(backend.client, backend.transfer_config) as manager:
            manager.upload(
                f, backend.bucket, backend.object_key(tmp), extra_args=extra, subscribers=[ProgressSubscriber(on_bytes)]
            ).result()

    backend.put_via_temp(key, upload, kms_key_id=kms_key_id)
    return object_url(store, key)
