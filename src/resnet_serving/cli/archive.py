"""``resnet-serving archive``: build model.mar + manifest.json and publish them into a local store."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_serving import MODEL_NAME, ui
from resnet_serving.artifact.layout import MANIFEST_NAME
from resnet_serving.artifact.manifest import validate_version
from resnet_serving.artifact.runtime import OPENVINO_PRECISIONS, RUNTIMES
from resnet_serving.errors import ConfigError, InputError
from resnet_serving.settings import DEFAULT_STORE
from resnet_serving.store import parse_store_uri


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("archive", help="build model.mar + manifest.json into a local model store")
    p.add_argument("--weights", default="auto", help="imagenet | random | auto (imagenet, else random) | PATH")
    p.add_argument("--version", default="1", help="model version (numeric, e.g. 3 or 1.2)")
    p.add_argument("--store", default=DEFAULT_STORE, help="local store directory or file:// URI")
    p.add_argument("--model", default=MODEL_NAME, help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help="replace an existing version")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=RUNTIMES[0],
        help="what runs the network when served: torch (CPU and GPU; the default) or openvino (CPU only, needs the "
        "openvino extra; the IR is converted now, so serve only compiles it)",
    )
    p.add_argument(
        "--precision",
        choices=OPENVINO_PRECISIONS,
        default=None,
        help="with --runtime openvino: the precision OpenVINO compiles it in where it is served (default auto: bf16 "
        "on a CPU with AVX512-BF16 or AMX, fp32 elsewhere; bf16 pays only on such a CPU, and OpenVINO compiles it in "
        "fp32 on others)",
    )
    p.set_defaults(func=cmd_archive)


# ---- archive ------------------------------------------------------------------------------------------
def local_store_dir(uri: str) -> Path:
    where = parse_store_uri(uri)
    if where.path is None:
        raise ConfigError(f"--store {uri}: archive writes to a local store; build here, then `resnet-serving push`")
    return Path(where.path)


def cmd_archive(args: argparse.Namespace) -> int:
    from resnet_serving.archiver import build_into_store

    version = validate_version(args.version)
    store_dir = local_store_dir(args.store)
    final = store_dir / args.model / version
    if (final / MANIFEST_NAME).exists() and not args.force:
        raise InputError(f"{final} already exists; pass --force to replace it or choose another --version")
    manifest = build_into_store(
        store_dir,
        weights=args.weights,
        version=version,
        model_name=args.model,
        force=args.force,
        runtime=args.runtime,
        precision=args.precision,
    )
    runtime = manifest.runtime["name"] + (
        f" {manifest.runtime['precision']}" if "precision" in manifest.runtime else ""
    )
    ui.info(
        f"built {args.model} v{version}: {manifest.size / 1e6:.1f} MB, sha256 {manifest.sha256[:12]}…, "
        f"weights {manifest.weights.get('id')}, runtime {runtime} → {final}"
    )
    return 0
