"""``file://`` backend: the store is a directory tree with the same layout as the S3 bucket.

Used by the local default (``make serve``), by tests, and wherever a shared filesystem holds the store. Every
write goes to a temp file in the destination directory and is renamed into place, so readers never see a
partial object. Leftover temp files (from a killed process) start with ``.`` and end with ``.tmp``; nothing
lists them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from resnet_serving.errors import AccessDenied, NoSuchBucket, NotFound, StoreError
from resnet_serving.files import atomic_write, atomic_write_bytes
from resnet_serving.store.backend import Backend, OnBytes, _ignore

_CHUNK = 1 << 20


class FileBackend(Backend):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    # ---- helpers --------------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        parts = key.strip("/").split("/") if key.strip("/") else []
        if any(p in ("", ".", "..") for p in parts):
            raise StoreError(f"invalid store key {key!r}")
        return self.root.joinpath(*parts)

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise NoSuchBucket(f"store directory {self.root} does not exist: check the --store URI")

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Convert OS errors into typed store errors, naming the action and the path."""
        path = self._path(key) if key else self.root
        try:
            yield
        except FileNotFoundError as e:
            self._check_root()
            raise NotFound(f"{path} does not exist") from e
        except PermissionError as e:
            raise AccessDenied(f"access denied: {action} {path}: {e.strerror}", action=action, key=str(path)) from e
        except IsADirectoryError as e:
            raise StoreError(f"{path} is a directory, expected a file") from e
        except OSError as e:
            raise StoreError(f"{action} {path} failed: {e}") from e

    def _write_via_temp(self, key: str, write: Callable[[BinaryIO], None]) -> None:
        with self._errors("write", key):
            atomic_write(self._path(key), write)

    # ---- Backend --------------------------------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        with self._errors("read", key):
            return self._path(key).read_bytes()

    def put_bytes(self, key: str, data: bytes, *, kms_key_id: str | None = None) -> None:
        with self._errors("write", key):
            atomic_write_bytes(self._path(key), data)

    def exists(self, key: str) -> bool:
        with self._errors("stat", key):
            return self._path(key).is_file()

    def size(self, key: str) -> int:
        with self._errors("stat", key):
            return self._path(key).stat().st_size

    def list_keys(self, prefix: str) -> list[str]:
        self._check_root()
        keys: list[str] = []
        with self._errors("list", prefix):
            for dirpath, _dirs, files in os.walk(self._path(prefix)):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                keys.extend(name if rel == "." else f"{rel}/{name}" for name in files)
        return sorted(keys)

    def upload_file(self, key: str, path: Path, *, kms_key_id: str | None = None, on_bytes: OnBytes = _ignore) -> None:
        def copy(dst: BinaryIO) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    on_bytes(len(chunk))

        self._write_via_temp(key, copy)

    def download_file(self, key: str, fileobj: BinaryIO, *, on_bytes: OnBytes = _ignore) -> None:
        with self._errors("read", key), open(self._path(key), "rb") as src:
            while chunk := src.read(_CHUNK):
                fileobj.write(chunk)
                on_bytes(len(chunk))

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self._path(key).unlink(missing_ok=True)
