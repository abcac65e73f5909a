"""``s3://bucket/prefix`` backend (boto3). The only module in the package that talks to S3.

Every call goes through :meth:`S3Backend.call`: one retry layer (throttling, 5xx, unreachable endpoint; see
:mod:`.retry`) and one error conversion (:mod:`.s3_errors`). Large files move with s3transfer's multipart
transfers; a failed or interrupted multipart upload is aborted, and an upload that is never completed is never
an object, so it cannot become visible.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from s3transfer.subscribers import BaseSubscriber

from resnet_serving.errors import NotFound, StoreError
from resnet_serving.store import s3_errors
from resnet_serving.store.backend import TEMP_SUFFIX, Backend, OnBytes, _ignore
from resnet_serving.store.retry import RetryPolicy, call_with_retries

T = TypeVar("T")
log = logging.getLogger(__name__)
MiB = 1 << 20
# num_download_attempts=1: s3transfer would otherwise retry a cut or reset download body itself, without
# backoff, under our retries (a second layer); store/retry.py retries the whole download instead.
DEFAULT_TRANSFER = TransferConfig(
    multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4, use_threads=True,
    num_download_attempts=1,
)  # fmt: skip


def make_client(endpoint_url: str | None = None) -> Any:
    """An S3 client with botocore's retries off (ours are in :mod:`.retry`) and bounded timeouts.

    With a custom ``endpoint_url`` (moto, MinIO, another S3-compatible store) path-style addressing is used,
    since such endpoints rarely resolve ``bucket.host`` names.
    """
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": 1},
        "connect_timeout": 5,
        "read_timeout": 60,
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=Config(**options))


def temp_key(key: str) -> str:
    """A unique hidden sibling of ``key``: ``a/b/.c.json.<hex>.tmp``. Listings of versions and channels skip it."""
    parent, _, name = key.rpartition("/")
    hidden = f".{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"
    return f"{parent}/{hidden}" if parent else hidden


class ProgressSubscriber(BaseSubscriber):
    def __init__(self, on_bytes: OnBytes) -> None:
        self._on_bytes = on_bytes

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._on_bytes(bytes_transferred)


class S3Backend(Backend):
    supports_kms = True
    supports_derived = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        retry: RetryPolicy | None = None,
        transfer_config: TransferConfig | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not bucket:
            raise StoreError("an s3:// store URI needs a bucket: s3://BUCKET[/PREFIX]")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client if client is not None else make_client(endpoint_url)
        self.endpoint_url = endpoint_url or getattr(getattr(self.client, "meta", None), "endpoint_url", None)
        self.retry = retry or RetryPolicy()
        self.transfer_config = transfer_config or DEFAULT_TRANSFER
        self._sleep = sleep

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def call(self, operation: str, key: str, fn: Callable[[], T]) -> T:
        """Run one store operation with retries; raise only typed store errors for S3 failures."""
        full_key = self.object_key(key)

        def convert(exc: Exception, attempt: int) -> StoreError | None:
            return s3_errors.convert(
                exc,
                operation=operation,
                bucket=self.bucket,
                key=full_key,
                endpoint=self.endpoint_url,
                attempts=attempt,
            )

        return call_with_retries(
            fn, convert=convert, policy=self.retry, what=f"s3 {operation} {self.key_uri(key)}", sleep=self._sleep
        )

    def sse(self, kms_key_id: str | None) -> dict[str, str]:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}

    # ---- Backend --------------------------------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
            with body:
                return bytes(body.read())

        return self.call("GetObject", key, get)

    def put_bytes(self, key: str, data: bytes, *, kms_key_id: str | None = None) -> None:
        sse = self.sse(kms_key_id)
        content_type = "application/json" if key.endswith(".json") else "application/octet-stream"
        self.put_via_temp(
            key,
            lambda tmp: self.client.put_object(
                Bucket=self.bucket, Key=self.object_key(tmp), Body=data, ContentType=content_type, **sse
            ),
            kms_key_id=kms_key_id,
        )

    def put_via_temp(self, key: str, upload: Callable[[str], object], *, kms_key_id: str | None = None) -> None:
        """``upload(tmp)`` writes a temp key; a server-side copy then puts it at ``key`` and the temp key goes.

        Some S3-compatible stores keep a body cut off mid-request (moto does); then a cut leaves at most a stray
        temp key, never a partial object at ``key``: only an upload that was answered is copied.
        """
        tmp = temp_key(key)
        sse = self.sse(kms_key_id)
        self.call("PutObject", tmp, lambda: upload(tmp))
        try:
            self.call(
                "CopyObject",
                key,
                lambda: self.client.copy_object(
                    Bucket=self.bucket,
                    Key=self.object_key(key),
                    CopySource={"Bucket": self.bucket, "Key": self.object_key(tmp)},
                    MetadataDirective="COPY",
                    **sse,
                ),
            )
        finally:
            try:
                self.delete(tmp)
            except StoreError as e:  # the real key is whole either way; a stray temp key is only clutter
                log.warning("could not remove %s: %s", self.key_uri(tmp), e.message)

    def size(self, key: str) -> int:
        head = self.call(
            "HeadObject", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        )
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def list_keys(self, prefix: str) -> list[str]:
        full = self.object_key(prefix)
        strip = len(self.object_key(""))

        def list_all() -> list[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            return [
                obj["Key"][strip:]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=full)
                for obj in page.get("Contents", [])
            ]

        return sorted(self.call("ListObjectsV2", prefix, list_all))

    def upload_file(self, key: str, path: Path, *, kms_key_id: str | None = None, on_bytes: OnBytes = _ignore) -> None:
        def upload() -> None:
            # Leaving the `with` on an exception (KeyboardInterrupt included) cancels the transfer, and
            # s3transfer aborts the multipart upload: no object, no billed orphan parts.
            # An open file rather than a name: on a cancelled transfer s3transfer leaves the part readers it
            # opened by name for the garbage collector; this file is closed here, whatever happens.
            with open(path, "rb") as f, create_transfer_manager(self.client, self.transfer_config) as manager:
                manager.upload(
                    f,
                    self.bucket,
                    self.object_key(key),
                    extra_args=self.sse(kms_key_id) or None,
                    subscribers=[ProgressSubscriber(on_bytes)],
                ).result()

        self.call("PutObject", key, upload)

    def download_file(self, key: str, fileobj: BinaryIO, *, on_bytes: OnBytes = _ignore) -> None:
        def download() -> None:
            fileobj.seek(0)
            fileobj.truncate()
            with create_transfer_manager(self.client, self.transfer_config) as manager:
                manager.download(
                    self.bucket, self.object_key(key), fileobj, subscribers=[ProgressSubscriber(on_bytes)]
                ).result()

        self.call("GetObject", key, download)

    def delete(self, key: str) -> None:
        self.call("DeleteObject", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key)))

    def metadata(self, key: str) -> dict[str, str] | None:
        try:
            head = self.call(
                "HeadObject", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            )
        except NotFound:
            return None
        return {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}

    def upload_file_with_metadata(
        self,
        key: str,
        path: Path,
        *,
        metadata: dict[str, str],
        content_type: str,
        kms_key_id: str | None = None,
        on_bytes: OnBytes = _ignore,
    ) -> None:
        """A multipart upload to a temp key, then a server-side copy into place (:meth:`put_via_temp`)."""
        extra = {"Metadata": metadata, "ContentType": content_type, **self.sse(kms_key_id)}

        def upload(tmp: str) -> None:
            with open(path, "rb") as f, create_transfer_manager(self.client, self.transfer_config) as manager:
                manager.upload(
                    f, self.bucket, self.object_key(tmp), extra_args=extra, subscribers=[ProgressSubscriber(on_bytes)]
                ).result()

        self.put_via_temp(key, upload, kms_key_id=kms_key_id)
