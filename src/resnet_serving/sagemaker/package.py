"""``model.tar.gz`` for SageMaker: the store version's ``model.mar`` and ``manifest.json`` at its top level.

SageMaker extracts it into ``/opt/ml/model``, where the serving container finds the same two files that
``resnet-serving fetch`` writes, and verifies the archive against the manifest before serving it.
The tarball is built deterministically (fixed mtimes and owners), so the same version packs to the same bytes.
"""

from __future__ import annotations

import gzip
import json
import tarfile
import tempfile
from pathlib import Path

from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME, SAGEMAKER_TARBALL
from resnet_serving.artifact.manifest import sha256_file
from resnet_serving.errors import IntegrityError
from resnet_serving.store import Store, tarball_key
from resnet_serving.ui import terminal_progress

TARBALL = SAGEMAKER_TARBALL
MEMBERS = (ARCHIVE_NAME, MANIFEST_NAME)
META_SOURCE_SHA = "resnet-serving-mar-sha256"
META_TARBALL_SHA = "resnet-serving-tarball-sha256"


def pack(src_dir: Path, out: Path) -> str:
    """Write ``out`` holding ``src_dir``'s model.mar and manifest.json; return the tarball's sha256."""
    with open(out, "wb") as raw:
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w") as tar,
        ):
            for name in MEMBERS:
                info = tar.gettarinfo(str(src_dir / name), arcname=name)
                info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
                with open(src_dir / name, "rb") as f:
                    tar.addfile(info, f)
    return sha256_file(out)


def ensure_tarball(store: Store, model: str, version: str, sha256: str, *, kms_key: str | None) -> tuple[str, bool]:
    """The ``s3://`` URL of the version's model.tar.gz, uploading it unless it is there for this sha256.

    Returns ``(url, uploaded)``. The version is fetched verified (sha256 against its manifest) before packing.
    """
    key = tarball_key(model, version)
    store.require_derived("sagemaker deploy")
    meta = store.derived_metadata(key)
    if meta is not None and meta.get(META_SOURCE_SHA) == sha256:
        return store.derived_url(key), False
    with tempfile.TemporaryDirectory(prefix="resnet-serving-sagemaker-") as tmp:
        src = Path(tmp) / "src"
        store.fetch(model, version, src, progress=terminal_progress())
        fetched = json.loads((src / MANIFEST_NAME).read_text(encoding="utf-8"))
        if fetched.get("sha256") != sha256:  # the manifest changed between reading and fetching it
            raise IntegrityError(f"{model} v{version} changed in {store.uri} while deploying; run deploy again")
        out = Path(tmp) / TARBALL
        digest = pack(src, out)
        size = out.stat().st_size
        with terminal_progress()(f"upload {TARBALL} {model} v{version}", size) as advance:
            url = store.put_derived(
                key,
                out,
                metadata={META_SOURCE_SHA: sha256, META_TARBALL_SHA: digest},
                content_type="application/gzip",
                kms_key_id=kms_key,
                on_bytes=advance,
            )
    return url, True
