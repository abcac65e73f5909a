"""Plain objects under an ``s3://bucket/prefix`` or ``file://dir`` location: what ``batch run`` reads and writes.

The model store (:mod:`.model_store`) knows versions and manifests; a batch job's inputs and outputs are just
objects, so this module hands out the same backends (:mod:`.s3`, :mod:`.local`: one retry layer, typed errors,
atomic small writes) plus a listing that streams, page by page, instead of :meth:`Backend.list_keys`'s list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_serving.store.backend import TEMP_SUFFIX, Backend
from resnet_serving.store.model_store import parse_store_uri


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key relative to the location, its size, and its ETag (``None`` on ``file://``)."""

    key: str
    size: int
    etag: str | None = None


class Location:
    """Objects under one URI. Keys are relative to it; every method raises typed store errors only."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def uri(self) -> str:
        return self.backend.uri

    def key_uri(self, key: str) -> str:
        return self.backend.key_uri(key)

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, in ascending key order, one listing page held at a time (S3 lists in
        UTF-8 binary order already). Hidden temp keys (``.name.<hex>.tmp``) are skipped."""
        from resnet_serving.store.local import FileBackend
        from resnet_serving.store.s3 import S3Backend

        if isinstance(self.backend, S3Backend):
            objects: Iterator[ObjectInfo] = _s3_objects(self.backend, prefix, page_size)
        elif isinstance(self.backend, FileBackend):
            objects = _file_objects(self.backend, prefix)
        else:  # pragma: no cover - only the two backends exist
            raise TypeError(f"cannot list {type(self.backend).__name__}")
        for obj in objects:
            if not _is_temp(obj.key):
                yield obj

    def get_bytes(self, key: str) -> bytes:
        return self.backend.get_bytes(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Atomic: readers see the old object or the new one, never a part (temp key or file, then in place)."""
        self.backend.put_bytes(key, data)

    def exists(self, key: str) -> bool:
        return self.backend.exists(key)

    def delete(self, key: str) -> None:
        self.backend.delete(key)


def _is_temp(key: str) -> bool:
    name = key.rpartition("/")[2]
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _s3_objects(backend: Any, prefix: str, page_size: int) -> Iterator[ObjectInfo]:
    full = backend.object_key(prefix)
    strip = len(backend.object_key(""))
    token: str | None = None
    while True:
        args: dict[str, Any] = {"Bucket": backend.bucket, "Prefix": full, "MaxKeys": page_size}
        if token:
            args["ContinuationToken"] = token
        # one request per page, each with the store's retries: a throttled page is retried, not the listing
        page = backend.call("ListObjectsV2", prefix, lambda args=args: backend.client.list_objects_v2(**args))
        for obj in page.get("Contents", []):
            yield ObjectInfo(obj["Key"][strip:], int(obj["Size"]), str(obj.get("ETag", "")).strip('"') or None)
        token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        if not token:
            return


def _file_objects(backend: Any, prefix: str) -> Iterator[ObjectInfo]:
    # A directory tree is walked whole, then sorted: a local input is small next to an S3 prefix, and the sorted
    # order must match S3's (byte order of the full key), which a directory-by-directory walk does not give.
    root: Path = backend.root
    found: list[tuple[str, int]] = []
    with backend._errors("list", prefix):
        backend._check_root()
        for dirpath, _dirs, files in os.walk(backend._path(prefix)):
            rel = Path(dirpath).relative_to(root).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                found.append((key, (Path(dirpath) / name).stat().st_size))
    found.sort(key=lambda item: item[0].encode("utf-8"))
    for key, size in found:
        yield ObjectInfo(key, size)


def open_location(uri: str, endpoint_url: str | None = None) -> Location:
    """``s3://bucket[/prefix]``, ``file:///dir`` or a directory path, as :func:`.open_store` reads store URIs."""
    where = parse_store_uri(uri)
    if where.bucket is not None:
        from resnet_serving.store.s3 import S3Backend

        return Location(S3Backend(where.bucket, where.prefix, endpoint_url=endpoint_url))
    from resnet_serving.store.local import FileBackend

    return Location(FileBackend(where.path or ""))
