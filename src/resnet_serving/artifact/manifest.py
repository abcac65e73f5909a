"""The manifest that sits beside every archive: ``<store>/<model>/<version>/manifest.json``.

One definition used by ``archive`` (writes it), ``store`` (verifies it) and ``serve`` (reports it). Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from resnet_serving.artifact.runtime import TORCH, validate_runtime
from resnet_serving.errors import InputError, IntegrityError

VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){0,2}$")
_CHUNK = 1 << 20


def validate_version(version: str) -> str:
    """Versions are numeric (``3``, ``1.2``, ``1.2.3``) so they order numerically, never by upload time."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise InputError(f"invalid version {version!r}: use digits with up to two dots, e.g. 3 or 1.2.0")
    return version


def version_key(version: str) -> tuple[int, ...]:
    """Sort key: ``2 < 10``, ``1.2 < 1.10``."""
    return tuple(int(p) for p in validate_version(version).split("."))


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    sha256: str
    size: int
    created: str  # ISO 8601, UTC
    torch: str
    torchvision: str
    weights: dict[str, Any]  # {"source": "imagenet"|"random"|"file", "id": ..., "pretrained": bool, ...}
    labels: dict[str, Any]  # {"source": ..., "count": 1000, "sha256": ...}
    extra: dict[str, Any] = field(default_factory=dict)
    #: What runs the network (artifact/runtime.py); a manifest without one was written before runtimes: torch.
    runtime: dict[str, Any] = field(default_factory=lambda: dict(TORCH))

    REQUIRED = ("name", "version", "sha256", "size", "created", "torch", "torchvision", "weights", "labels")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "manifest") -> Manifest:
        if not isinstance(data, dict):
            raise IntegrityError(f"{where}: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in cls.REQUIRED if k not in data]
        if missing:
            raise IntegrityError(f"{where}: missing field(s) {', '.join(missing)}")
        sha = data["sha256"]
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise IntegrityError(f"{where}: sha256 must be 64 lowercase hex characters")
        if not isinstance(data["size"], int) or data["size"] < 0:
            raise IntegrityError(f"{where}: size must be a non-negative integer")
        try:
            validate_version(str(data["version"]))
        except InputError as e:
            raise IntegrityError(f"{where}: {e.message}") from e
        for k in ("weights", "labels"):
            if not isinstance(data[k], dict):
                raise IntegrityError(f"{where}: {k} must be an object")
        known = {k: data[k] for k in cls.REQUIRED}
        known["version"] = str(known["version"])
        runtime = validate_runtime(data.get("runtime", TORCH), where=where)
        return cls(**known, extra=dict(data.get("extra") or {}), runtime=runtime)

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise IntegrityError(f"{where}: not valid JSON ({e})") from e
        return cls.from_dict(data, where=where)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        return cls.from_json(Path(path).read_bytes(), where=str(path))

    def verify_file(self, archive: str | os.PathLike[str], *, source: str | None = None, hint: str = "") -> None:
        """Raise :class:`IntegrityError` unless the archive's size and sha256 match this manifest.

        The one integrity check: ``push`` runs it before uploading, ``fetch`` before a download is renamed into
        place, ``serve --model-dir`` before starting. ``source`` names the archive in the message (a URI).
        """
        where = source or str(archive)
        refusal = f"it does not match its manifest, so refusing {self.name} v{self.version}.{hint and ' ' + hint}"
        size = os.path.getsize(archive)
        if size != self.size:
            raise IntegrityError(f"{where} is {size} bytes but its manifest says {self.size}: {refusal}")
        digest = sha256_file(archive)
        if digest != self.sha256:
            raise IntegrityError(
                f"{where} has sha256 {digest[:16]}… but its manifest says {self.sha256[:16]}…: {refusal}"
            )


def open_model_dir(model_dir: str | os.PathLike[str], *, flag: str = "--model-dir") -> Manifest:
    """The one way to open a directory holding ``model.mar`` + ``manifest.json`` (a pod's mount, SageMaker's
    /opt/ml/model, a store version fetched locally): its manifest, after checking the archive against it."""
    from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
    from resnet_serving.errors import ConfigError

    path = Path(model_dir)
    if not (path / MANIFEST_NAME).is_file() or not (path / ARCHIVE_NAME).is_file():
        raise ConfigError(f"{flag} {path}: expected {ARCHIVE_NAME} and {MANIFEST_NAME} in it")
    manifest = Manifest.load(path / MANIFEST_NAME)
    manifest.verify_file(path / ARCHIVE_NAME)
    return manifest
