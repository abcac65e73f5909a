"""The model store: layout, visibility, channels and verified transfers, over any :class:`Backend`.

Layout (model-store/README.md)::

    <store>/<model>/<version>/model.mar
    <store>/<model>/<version>/manifest.json      written last: its presence makes the version visible
    <store>/<model>/channels/<channel>.json      {"version": "3"}
    <store>/<model>/<version>/sagemaker/model.tar.gz   derived: built from the version for SageMaker

Visibility rule: ``push`` uploads ``model.mar`` first and writes ``manifest.json`` last, so a version is listed
only once both are complete. A crash at any point before that leaves at most an unlisted archive (S3: an
aborted or never-completed multipart upload, which is not an object at all). ``fetch`` applies the same rule
to its destination: it writes ``model.mar`` and then ``manifest.json``, and only after the archive's size and
sha256 matched the manifest.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from resnet_serving import MODEL_NAME
from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME, SAGEMAKER_TARBALL
from resnet_serving.artifact.manifest import VERSION_RE, Manifest, validate_version, version_key
from resnet_serving.errors import (
    InputError,
    IntegrityError,
    NotFound,
    VersionExists,
)
from resnet_serving.files import atomic_write, atomic_write_bytes
from resnet_serving.settings import ENV_STORE
from resnet_serving.store.backend import TEMP_SUFFIX, Backend, OnBytes, _ignore
from resnet_serving.store.retry import RetryPolicy
from resnet_serving.ui import ProgressFactory, no_progress

#: What a fetch says when an archive no longer matches the manifest beside it.
CHANGED_AFTER_MANIFEST = "The archive changed after its manifest was written; push the version again (--force)"

log = logging.getLogger(__name__)

MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CHANNEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CHANNELS_DIR = "channels"
#: The channel `promote` moves and `sync` follows when none is named; the chart's `model.channel` and k8s/'s
#: examples are held equal to it by tests/unit/test_shared_names.py.
DEFAULT_CHANNEL = "stable"


def validate_model_name(model: str) -> str:
    if not isinstance(model, str) or not MODEL_RE.match(model) or model == CHANNELS_DIR:
        raise InputError(f"invalid model name {model!r}: use letters, digits, '.', '_' and '-'")
    return model


def validate_channel(channel: str) -> str:
    """Channels are lowercase DNS labels (``stable``, ``canary``), so they also fit Kubernetes names."""
    if not isinstance(channel, str) or not CHANNEL_RE.match(channel):
        raise InputError(f"invalid channel {channel!r}: use lowercase letters, digits and '-', e.g. {DEFAULT_CHANNEL}")
    return channel


def archive_key(model: str, version: str) -> str:
    return f"{model}/{version}/{ARCHIVE_NAME}"


def manifest_key(model: str, version: str) -> str:
    return f"{model}/{version}/{MANIFEST_NAME}"


def channel_key(model: str, channel: str) -> str:
    return f"{model}/{CHANNELS_DIR}/{channel}.json"


#: Objects built from a version for another system sit in a folder of the version named for that system. They
#: are not version files (only the manifest makes a version visible) and the publisher never deletes them.
SAGEMAKER_DIR = "sagemaker"


def derived_key(model: str, version: str, system: str, name: str) -> str:
    """``<model>/<version>/<system>/<name>``: an object derived from a version (:meth:`Store.put_derived`)."""
    return f"{model}/{version}/{system}/{name}"


def tarball_key(model: str, version: str) -> str:
    """The SageMaker ``model.tar.gz`` built from a version: ``<model>/<version>/sagemaker/model.tar.gz``."""
    return derived_key(model, version, SAGEMAKER_DIR, SAGEMAKER_TARBALL)


#: IAM resource patterns (``*`` spans ``/``), relative to the store root, of the only keys a publisher deletes:
#: a manifest (``push --force`` hides the version first) and the temp keys of its own writes. infra/'s publisher
#: policy grants exactly these (tests/unit/test_shared_names.py).
DELETABLE_KEY_PATTERNS = (f"*/{MANIFEST_NAME}", f"*{TEMP_SUFFIX}")


@dataclass(frozen=True)
class VersionInfo:
    """One row of ``resnet-serving versions``: the manifest, or why it could not be read."""

    version: str
    manifest: Manifest | None
    error: str | None = None
    channels: tuple[str, ...] = field(default=())


class Store:
    """A model store. Get one with :func:`open_store`; every method raises typed errors only."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def uri(self) -> str:
        return self.backend.uri

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # ---- versions -------------------------------------------------------------------------------------
    def list_versions(self, model: str = MODEL_NAME) -> list[str]:
        """Complete (visible) versions, in numeric order: ``2`` before ``10``."""
        validate_model_name(model)
        found = set()
        for key in self.backend.list_keys(f"{model}/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == MANIFEST_NAME and VERSION_RE.match(parts[1]):
                found.add(parts[1])
        return sorted(found, key=version_key)

    def _manifest(self, model: str, version: str) -> tuple[bytes, Manifest]:
        validate_model_name(model)
        validate_version(version)
        key = manifest_key(model, version)
        try:
            data = self.backend.get_bytes(key)
        except NotFound as e:
            available = self.list_versions(model)  # raises NoSuchBucket when the store itself is missing
            raise NotFound(
                f"{model} version {version} is not in {self.uri} (versions there: {', '.join(available) or 'none'})"
            ) from e
        where = self.backend.key_uri(key)
        manifest = Manifest.from_json(data, where=where)
        if manifest.name != model or manifest.version != version:
            raise IntegrityError(
                f"{where}: the manifest describes {manifest.name} v{manifest.version} but is stored as "
                f"{model} v{version}; refusing to use it"
            )
        return data, manifest

    def read_manifest(self, model: str, version: str) -> Manifest:
        """The version's validated manifest; :class:`NotFound` if the version is not (completely) there."""
        return self._manifest(model, version)[1]

    def inventory(self, model: str = MODEL_NAME, channels: dict[str, str] | None = None) -> list[VersionInfo]:
        """Every version with its manifest (or the reason it is unreadable) and the channels pointing at it."""
        if channels is None:
            channels = self.channels(model)
        rows = []
        for version in self.list_versions(model):
            marks = tuple(sorted(c for c, v in channels.items() if v == version))
            try:
                rows.append(VersionInfo(version, self.read_manifest(model, version), channels=marks))
            except (IntegrityError, NotFound) as e:
                rows.append(VersionInfo(version, None, error=e.message, channels=marks))
        return rows

    # ---- channels -------------------------------------------------------------------------------------
    def resolve_channel(self, model: str, channel: str) -> str | None:
        """The version the channel points at, or ``None`` when the channel was never set."""
        validate_model_name(model)
        validate_channel(channel)
        key = channel_key(model, channel)
        try:
            data = self.backend.get_bytes(key)
        except NotFound:
            return None
        where = self.backend.key_uri(key)
        try:
            version = json.loads(data)["version"]
            return validate_version(str(version) if isinstance(version, int) else version)
        except (ValueError, UnicodeDecodeError, TypeError, KeyError, InputError) as e:
            raise IntegrityError(f'{where}: malformed channel pointer, expected {{"version": "N"}}') from e

    def set_channel(self, model: str, channel: str, version: str) -> None:
        """Point the channel at ``version``; :class:`NotFound` unless that version is complete in the store."""
        validate_channel(channel)
        self.read_manifest(model, version)
        self.backend.put_bytes(channel_key(model, channel), (json.dumps({"version": version}) + "\n").encode())

    def channels(self, model: str = MODEL_NAME) -> dict[str, str]:
        """Every channel of the model and the version it points at. Malformed pointers are skipped (logged)."""
        validate_model_name(model)
        result = {}
        for key in self.backend.list_keys(f"{model}/{CHANNELS_DIR}/"):
            name = key.rsplit("/", 1)[-1]
            if key.count("/") != 2 or not name.endswith(".json") or not CHANNEL_RE.match(name[: -len(".json")]):
                continue
            channel = name[: -len(".json")]
            try:
                version = self.resolve_channel(model, channel)
            except IntegrityError as e:
                log.warning("skipping channel %s: %s", channel, e.message)
                continue
            if version is not None:
                result[channel] = version
        return dict(sorted(result.items()))

    # ---- transfers ------------------------------------------------------------------------------------
    def push(
        self,
        archive_path: str | os.PathLike[str],
        manifest: Manifest,
        model: str = MODEL_NAME,
        version: str | None = None,
        force: bool = False,
        kms_key_id: str | None = None,
        *,
        progress: ProgressFactory | None = None,
    ) -> None:
        """Upload an archive and its manifest as ``model``/``version`` (default: the manifest's version).

        Refuses (:class:`InputError`) a manifest whose name or version differs from ``model``/``version``:
        both are also baked into the archive, so renaming only the manifest would serve mislabelled responses.
        Refuses (:class:`IntegrityError`) an archive that does not match its manifest, and
        (:class:`VersionExists`) an existing version unless ``force``. The version becomes visible only when
        the manifest is written, after the archive upload completed and its stored size was checked.
        """
        validate_model_name(model)
        version = validate_version(version if version is not None else manifest.version)
        if manifest.version != version:
            raise InputError(
                f"the manifest says version {manifest.version}, not {version}: the version is also recorded "
                f"inside the archive, so rebuild it with `resnet-serving archive --version {version}`"
            )
        if manifest.name != model:
            raise InputError(f"the manifest is for model {manifest.name!r}, not {model!r}")
        if kms_key_id and not self.backend.supports_kms:
            raise InputError(f"--kms-key-id applies to s3:// stores only, not {self.uri}")
        path = Path(archive_path)
        if not path.is_file():
            raise InputError(f"{path}: no such archive file")
        manifest.verify_file(path)

        akey, mkey = archive_key(model, version), manifest_key(model, version)
        if self.backend.exists(mkey):
            if not force:
                raise VersionExists(
                    f"{model} version {version} already exists in {self.uri}: push a new version, or pass "
                    f"--force to replace it"
                )
            log.warning("replacing %s version %s in %s (--force)", model, version, self.uri)
            self.backend.delete(mkey)  # invisible before its archive changes
        with (progress or no_progress)(f"push {model} v{version}", manifest.size) as advance:
            self.backend.upload_file(akey, path, kms_key_id=kms_key_id, on_bytes=advance)
        stored = self.backend.size(akey)
        if stored != manifest.size:
            raise IntegrityError(
                f"{self.backend.key_uri(akey)}: stored {stored} bytes, expected {manifest.size}; "
                f"version {version} was left invisible"
            )
        self.backend.put_bytes(mkey, manifest.to_json().encode(), kms_key_id=kms_key_id)

    def fetch(
        self,
        model: str,
        version: str,
        dest_dir: str | os.PathLike[str],
        *,
        progress: ProgressFactory | None = None,
    ) -> Path:
        """Download ``dest_dir/model.mar`` and ``dest_dir/manifest.json``, verified; return the archive path.

        The archive goes to a temp file in ``dest_dir``; only when its size and sha256 match the manifest is
        it renamed to ``model.mar``, and the manifest written after it. On a mismatch
        (:class:`IntegrityError`) the temp file is removed and ``dest_dir`` is left as it was. A ``dest_dir``
        that already holds this exact version, verified, is left alone without downloading.
        """
        manifest_bytes, manifest = self._manifest(model, version)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        archive, manifest_path = dest / ARCHIVE_NAME, dest / MANIFEST_NAME
        if self._already_fetched(manifest, archive, manifest_path):
            log.info("%s v%s already in %s (verified)", model, version, dest)
            return archive

        source = self.backend.key_uri(archive_key(model, version))

        def download(f: BinaryIO) -> None:
            with (progress or no_progress)(f"fetch {model} v{version}", manifest.size) as advance:
                self.backend.download_file(archive_key(model, version), f, on_bytes=advance)

        def verified(tmp: Path) -> None:
            manifest.verify_file(tmp, source=source, hint=CHANGED_AFTER_MANIFEST)
            manifest_path.unlink(missing_ok=True)  # never an old manifest beside the new archive

        atomic_write(archive, download, before_replace=verified)
        atomic_write_bytes(manifest_path, manifest_bytes)
        return archive

    # ---- derived objects (s3:// only) -----------------------------------------------------------------
    def require_derived(self, why: str) -> None:
        """:class:`InputError` unless this store keeps derived objects; ``why`` names what needs them."""
        if not self.backend.supports_derived:
            raise InputError(f"{why} needs an s3:// store, not {self.uri}")

    def derived_url(self, key: str) -> str:
        """The URL another system reads a derived object by: ``s3://bucket/prefix/key``."""
        self.require_derived("an S3 URL")
        return self.backend.key_uri(key)

    def derived_metadata(self, key: str) -> dict[str, str] | None:
        """The derived object's user metadata (lowercase names), or ``None`` when it is not there."""
        self.require_derived("reading object metadata")
        return self.backend.metadata(key)

    def put_derived(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        metadata: dict[str, str],
        content_type: str,
        kms_key_id: str | None = None,
        on_bytes: OnBytes = _ignore,
    ) -> str:
        """Upload ``path`` to ``key`` with ``metadata``, atomically (a temp key, then a server-side copy: a failed
        upload leaves no object at ``key``); return the object's URL."""
        self.require_derived(f"uploading {key.rsplit('/', 1)[-1]}")
        self.backend.upload_file_with_metadata(
            key, Path(path), metadata=metadata, content_type=content_type, kms_key_id=kms_key_id, on_bytes=on_bytes
        )
        return self.derived_url(key)

    @staticmethod
    def _already_fetched(manifest: Manifest, archive: Path, manifest_path: Path) -> bool:
        if not (archive.is_file() and manifest_path.is_file()):
            return False
        try:
            local = Manifest.load(manifest_path)
            if (local.name, local.version, local.sha256, local.size) != (
                manifest.name,
                manifest.version,
                manifest.sha256,
                manifest.size,
            ):
                return False
            local.verify_file(archive)
        except (IntegrityError, OSError):
            return False
        return True


def open_store(
    uri: str | os.PathLike[str] | None, endpoint_url: str | None = None, *, retry: RetryPolicy | None = None
) -> Store:
    """Open ``s3://bucket[/prefix]``, ``file:///abs/dir`` (or ``file://rel/dir``) or a plain directory path.

    ``endpoint_url`` selects an S3-compatible endpoint (moto, MinIO); ``None`` lets boto3 decide (it honours
    ``AWS_ENDPOINT_URL``). ``retry`` bounds the retries on throttling and transient S3 errors.
    """
    where = parse_store_uri(uri)
    if where.bucket is not None:
        from resnet_serving.store.s3 import S3Backend

        return Store(S3Backend(where.bucket, where.prefix, endpoint_url=endpoint_url, retry=retry))
    from resnet_serving.store.local import FileBackend

    return Store(FileBackend(where.path or ""))


@dataclass(frozen=True)
class StoreURI:
    """A parsed store URI: ``s3://BUCKET/PREFIX`` (``bucket`` and ``prefix``) or a local ``path``."""

    bucket: str | None = None
    prefix: str = ""
    path: str | None = None


def parse_store_uri(uri: str | os.PathLike[str] | None) -> StoreURI:
    """The one store-URI grammar: ``s3://bucket[/prefix]``, ``file:///abs/dir`` (or ``file://rel/dir``) or a
    plain directory path. Raises InputError naming the accepted forms."""
    uri = os.fspath(uri) if uri is not None else ""
    if not isinstance(uri, str) or not uri.strip():
        raise InputError(f"no store given: pass --store s3://BUCKET/PREFIX or file:///DIR (or set {ENV_STORE})")
    parts = urlsplit(uri.strip())
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InputError(f"invalid store URI {uri!r}: expected s3://BUCKET[/PREFIX]")
        return StoreURI(bucket=parts.netloc, prefix=parts.path)
    if parts.scheme == "file":
        netloc = "" if parts.netloc in ("", "localhost") else parts.netloc
        path = unquote(netloc + parts.path)
        if not path:
            raise InputError(f"invalid store URI {uri!r}: expected file:///DIR")
        return StoreURI(path=path)
    if parts.scheme == "" or len(parts.scheme) == 1:  # a plain path (or a Windows drive letter)
        return StoreURI(path=uri.strip())
    raise InputError(f"unsupported store URI {uri!r}: use s3://BUCKET[/PREFIX], file:///DIR or a directory path")
