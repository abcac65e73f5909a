"""Build the model archive (above ``inference/``, whose weights and labels it packs, and ``artifact/``, whose
format it writes): ``model.mar`` (TorchServe) plus its ``manifest.json`` (sha256, weights, labels).

The .mar holds the state_dict (``model.pt``), the handler, ``index_to_name.json`` and ``model_info.json``
(name, version, weights source, runtime) so that every response can say which weights produced it. Built with
``runtime="openvino"``, it also holds the network as OpenVINO IR (``model.xml``, ``model.bin``), converted here so
that a worker only compiles it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torchvision

from resnet_serving import MODEL_NAME, ui
from resnet_serving.artifact.layout import (
    ARCHIVE_NAME,
    ARCHIVE_SUFFIX,
    HANDLER_FILE,
    LABELS_FILE,
    MANIFEST_NAME,
    MODEL_INFO_FILE,
    STATE_DICT_FILE,
)
from resnet_serving.artifact.manifest import Manifest, sha256_file, validate_version
from resnet_serving.artifact.runtime import OPENVINO_FILES, OPENVINO_PRECISIONS, RUNTIMES, TORCH, runtime_unavailable
from resnet_serving.errors import ArchiveError, InputError
from resnet_serving.files import atomic_write_bytes
from resnet_serving.inference.imaging import WEIGHTS, categories
from resnet_serving.inference.model import resolve_weights
from resnet_serving.inference.postprocess import labels_to_json
from resnet_serving.settings import Settings, env_name, environment, source_checkout


def default_handler_path() -> Path:
    """``$RESNET_SERVING_HANDLER`` (the serving image sets it), else ``handlers/`` of a source checkout."""
    configured = Settings.from_env().handler
    if configured is not None:
        return configured
    checkout = source_checkout()
    if checkout is None:
        raise ArchiveError(
            f"no handler shim: set {env_name('handler')} to {HANDLER_FILE} (in handlers/ of the repository) "
            "or pass it to build_archive"
        )
    return checkout / "handlers" / HANDLER_FILE


def build_archive(
    *,
    weights: str,
    version: str,
    out_dir: Path,
    handler: Path | None = None,
    model_name: str = MODEL_NAME,
    runtime: str = "torch",
    precision: str | None = None,
) -> tuple[Path, Manifest]:
    """Build ``out_dir/model.mar`` and ``out_dir/manifest.json``. Returns the archive path and its manifest.

    ``runtime="openvino"`` also packs the OpenVINO IR, to be compiled in ``precision`` (default auto)."""
    validate_version(version)
    precision = checked_runtime(runtime, precision)
    handler = handler or default_handler_path()
    if not handler.is_file():
        raise ArchiveError(f"handler {handler} not found (set {env_name('handler')})")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".archive-", dir=out_dir) as tmp_s:
        tmp = Path(tmp_s)
        with ui.status(f"resolving weights ({weights})"):
            state, info = resolve_weights(weights)
        if not info["pretrained"] and info["source"] == "random":
            reason = info.get("fallback_reason", "--weights random")
            ui.warn(f"using SEEDED RANDOM weights ({reason}). Predictions will be meaningless; responses say so.")
        created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        labels = categories()
        labels_json = labels_to_json(labels)
        (tmp / LABELS_FILE).write_text(labels_json, encoding="utf-8")
        labels_info: dict[str, Any] = {
            "source": f"torchvision {WEIGHTS}.meta['categories']",
            "count": len(labels),
            "file": LABELS_FILE,
            "sha256": hashlib.sha256(labels_json.encode("utf-8")).hexdigest(),
        }
        model_info = {
            "name": model_name,
            "version": version,
            "weights": info,
            "labels": labels_info,
            "created": created,
        }
        record: dict[str, Any] = dict(TORCH)
        extra_files = [tmp / LABELS_FILE, tmp / MODEL_INFO_FILE]
        if runtime == "openvino":
            from resnet_serving.inference.openvino_model import export_ir

            with ui.status(f"converting the network to OpenVINO IR ({precision})"):
                record = export_ir(state, tmp, str(precision))
            extra_files += [tmp / name for name in OPENVINO_FILES]
        model_info["runtime"] = record
        (tmp / MODEL_INFO_FILE).write_text(json.dumps(model_info, indent=2), encoding="utf-8")
        with ui.status("saving state_dict"):
            torch.save(state, tmp / STATE_DICT_FILE)
        with ui.status("packing model.mar (torch-model-archiver)"):
            built = pack_mar(
                model_name=model_name,
                version=version,
                serialized_file=tmp / STATE_DICT_FILE,
                handler=str(handler),
                extra_files=extra_files,
                work_dir=tmp,
            )
        with ui.status("hashing archive"):
            digest = sha256_file(built)
        manifest = Manifest(
            name=model_name,
            version=version,
            sha256=digest,
            size=built.stat().st_size,
            created=created,
            torch=torch.__version__,
            torchvision=torchvision.__version__,
            weights=info,
            labels=labels_info,
            runtime=record,
        )
        # Archive first, manifest last: a directory with a manifest always has the archive it describes.
        final = out_dir / ARCHIVE_NAME
        os.replace(built, final)  # a rename within out_dir: complete or absent
        atomic_write_bytes(out_dir / MANIFEST_NAME, manifest.to_json().encode("utf-8"))
    return final, manifest


def checked_runtime(runtime: str, precision: str | None) -> str | None:
    """``precision`` for ``runtime`` (auto by default for openvino), or :class:`InputError` for a combination that
    means nothing; an OpenVINO build where OpenVINO is missing fails here, before the weights are resolved."""
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime {runtime}: use one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        if precision is not None:
            raise InputError(
                f"--precision {precision} is for --runtime openvino: a torch archive's precision is chosen when it "
                f"is served ({env_name('amp')})"
            )
        return None
    if precision is not None and precision not in OPENVINO_PRECISIONS:
        raise InputError(f"--precision {precision}: the openvino runtime takes {', '.join(OPENVINO_PRECISIONS)}")
    if missing := runtime_unavailable({"name": runtime}, "archive --runtime openvino"):
        raise ArchiveError(missing)
    return precision or OPENVINO_PRECISIONS[0]


def build_into_store(
    store_dir: Path,
    *,
    weights: str,
    version: str,
    model_name: str = MODEL_NAME,
    force: bool = False,
    runtime: str = "torch",
    precision: str | None = None,
) -> Manifest:
    """Build in a staging folder inside ``store_dir``, then publish into the local store (``Store.push``: archive
    first, manifest last), so a half-built version is never visible. Returns the manifest."""
    from resnet_serving.store import open_store

    store_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=store_dir))
    try:
        mar, manifest = build_archive(
            weights=weights,
            version=version,
            out_dir=staging,
            model_name=model_name,
            runtime=runtime,
            precision=precision,
        )
        with ui.status(f"publishing {model_name} v{version} to {store_dir}"):
            open_store(f"file://{store_dir.resolve()}").push(
                mar, manifest, model=model_name, version=version, force=force
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def pack_mar(
    *, model_name: str, version: str, serialized_file: Path, handler: str, extra_files: list[Path], work_dir: Path
) -> Path:
    """Run torch-model-archiver: ``work_dir/export/<model_name>.mar``. ``handler`` is a file or one of
    TorchServe's stock handler names (``image_classifier``: the bench's baseline)."""
    export = work_dir / "export"
    export.mkdir()
    cmd = [
        sys.executable, "-m", "model_archiver.model_packaging",
        "--model-name", model_name,
        "--version", version,
        "--serialized-file", str(serialized_file),
        "--handler", handler,
        "--extra-files", ",".join(str(f) for f in extra_files),
        "--export-path", str(export),
        "--archive-format", "default",
        "--force",
    ]  # fmt: skip
    # torch-model-archiver stages into $TMPDIR/<model name>, which it first deletes: one folder machine-wide,
    # so two builds at once would delete each other's files. A private TMPDIR gives each build its own.
    staging = work_dir / "staging"
    staging.mkdir()
    env = {**environment(), "TMPDIR": str(staging)}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    built = export / f"{model_name}{ARCHIVE_SUFFIX}"
    if proc.returncode != 0 or not built.is_file():
        raise ArchiveError(f"torch-model-archiver failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return built
