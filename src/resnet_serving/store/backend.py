"""The object-level interface that each store backend (``s3://``, ``file://``) implements.

Backends know nothing about models, versions or manifests: they move bytes under string keys relative to the
store root (``resnet50/3/model.mar``). Layout, visibility and verification live once, in
:class:`resnet_serving.store.model_store.Store`, so both backends behave the same by construction.
Every backend method raises typed :class:`~resnet_serving.errors.StoreError` subclasses, never raw botocore or
OS errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

OnBytes = Callable[[int], None]
"""Called with the number of bytes moved since the last call (progress reporting)."""

#: How a temp key ends (``a/b/.c.json.<hex>.tmp``): a write goes there first, then into place. Listings of
#: versions and channels skip such keys, and the publisher's IAM policy (infra/) may delete only them and
#: manifests (:data:`~resnet_serving.store.model_store.DELETABLE_KEY_PATTERNS`).
TEMP_SUFFIX = ".tmp"


def _ignore(_: int) -> None:
    return None


class Backend(ABC):
    uri: str
    """The store root as a URI, used in messages: ``s3://bucket/prefix`` or ``file:///abs/dir``."""

    supports_kms: bool = False
    #: Derived objects (:meth:`metadata`, :meth:`upload_file_with_metadata`): objects that carry user metadata,
    #: which another system reads by URL. ``s3://`` only.
    supports_derived: bool = False

    def key_uri(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; :class:`NotFound` if it does not exist."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, kms_key_id: str | None = None) -> None:
        """Write a small object atomically: readers see the old bytes or the new, never a mix or a part, even
        when the write is cut off at any byte."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; :class:`NotFound` if it does not exist."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (which ends with ``/``), recursively, relative to the store root."""

    @abstractmethod
    def upload_file(self, key: str, path: Path, *, kms_key_id: str | None = None, on_bytes: OnBytes = _ignore) -> None:
        """Upload a (large) file. The object appears whole or not at all: a failure leaves no object at ``key``
        that was not there before (S3: an aborted or never-completed multipart upload is not an object)."""

    @abstractmethod
    def download_file(self, key: str, fileobj: BinaryIO, *, on_bytes: OnBytes = _ignore) -> None:
        """Write the object's bytes into ``fileobj`` (an open, empty, seekable file)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""

    def metadata(self, key: str) -> dict[str, str] | None:
        """The object's user metadata (lowercase names), or ``None`` when there is no object at ``key``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no object metadata")

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
        """Upload a (large) file with user metadata, atomically: a failed upload leaves no object at ``key``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no object metadata")
