"""``push``, ``versions``, ``promote``, ``fetch``: thin CLI adapters over :mod:`resnet_serving.store`.

Flags fall back to the environment the Helm chart's init container sets: ``RESNET_SERVING_STORE``,
``RESNET_SERVING_MODEL_VERSION`` and ``RESNET_SERVING_MODEL_CHANNEL`` (an empty version means "use the
channel"). ``--endpoint-url`` defaults to ``$AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from resnet_serving import MODEL_NAME, ui
from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
from resnet_serving.artifact.manifest import Manifest
from resnet_serving.cli.flags import add_endpoint_url
from resnet_serving.errors import InputError, NotFound
from resnet_serving.settings import ENV_CHANNEL, ENV_STORE, ENV_VERSION, environment
from resnet_serving.store.model_store import DEFAULT_CHANNEL, Store, open_store
from resnet_serving.store.weights import ALLOW_FLAG, check_weights_for_store
from resnet_serving.ui import terminal_progress


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "push",
        help="upload a model archive and its manifest to the store as a new version",
        description="Upload ARCHIVE (a .mar with its manifest.json beside it) as a new version. The version "
        "becomes visible only once the archive and then the manifest are completely uploaded.",
    )
    p.add_argument("archive", metavar="ARCHIVE", help="the model.mar, or the directory holding model.mar")
    _add_store_flags(p)
    p.add_argument(
        "--version",
        help="version to push as (default: the manifest's). It must equal the manifest's version, which is "
        "also baked into the archive: rebuild with `resnet-serving archive --version V` to change it",
    )
    p.add_argument("--manifest", help=f"the archive's manifest (default: {MANIFEST_NAME} beside ARCHIVE)")
    p.add_argument("--force", action="store_true", help="replace the version if it already exists")
    p.add_argument("--kms-key-id", help="encrypt the objects with SSE-KMS under this key (s3:// only)")
    p.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="push an archive built with random weights to an s3:// store anyway, e.g. for a smoke test of the "
        "install (without it such an archive is refused there; local stores always take it)",
    )
    p.set_defaults(func=cmd_push)

    p = subparsers.add_parser(
        "versions",
        help="list the versions in the store, with their channels",
        description="List the complete versions of a model in numeric order, with the channels pointing at them.",
    )
    _add_store_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_versions)

    p = subparsers.add_parser(
        "promote",
        help="point a channel at a version",
        description=f"Point a channel (default: {DEFAULT_CHANNEL}) at an existing, complete version. Servers and the "
        "operator following the channel roll it out.",
    )
    _add_store_flags(p)
    p.add_argument("--version", required=True, help="the version to promote")
    p.add_argument("--channel", default=DEFAULT_CHANNEL, help=f"the channel to move (default: {DEFAULT_CHANNEL})")
    p.set_defaults(func=cmd_promote)

    p = subparsers.add_parser(
        "fetch",
        help="download a version, verified, into a directory (the init-container command)",
        description=f"Download DEST/{ARCHIVE_NAME} and DEST/{MANIFEST_NAME} for a version or a channel. The "
        "archive is checked against the manifest's size and sha256 before it is renamed into place; on a "
        "mismatch nothing is installed and the command fails.",
    )
    _add_store_flags(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", help=f"the version to fetch (default: ${ENV_VERSION})")
    which.add_argument("--channel", help=f"fetch the version this channel points at (default: ${ENV_CHANNEL})")
    p.add_argument("--dest", required=True, help="directory to write model.mar and manifest.json into")
    p.set_defaults(func=cmd_fetch)


def _add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=environment().get(ENV_STORE) or None,
        help=f"s3://BUCKET/PREFIX, file:///DIR or a directory (default: ${ENV_STORE})",
    )
    p.add_argument("--model", default=MODEL_NAME, help=f"model name (default: {MODEL_NAME})")
    add_endpoint_url(p)


def _open(args: argparse.Namespace) -> Store:
    return open_store(args.store, endpoint_url=args.endpoint_url)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# ---- push ---------------------------------------------------------------------------------------------
def cmd_push(args: argparse.Namespace) -> int:
    archive = Path(args.archive)
    if archive.is_dir():
        archive = archive / ARCHIVE_NAME
    manifest_path = Path(args.manifest) if args.manifest else archive.with_name(MANIFEST_NAME)
    if not archive.is_file():
        raise InputError(f"{archive}: no such archive (build one with `resnet-serving archive`)")
    try:
        manifest = Manifest.load(manifest_path)
    except FileNotFoundError as e:
        raise InputError(f"{manifest_path}: no manifest beside the archive (pass --manifest)") from e
    if check_weights_for_store(manifest, args.store, allow_random=args.allow_random_weights):
        ui.warn(
            f"pushing {manifest.name} v{manifest.version} with RANDOM weights to {args.store} ({ALLOW_FLAG}): "
            "its predictions are meaningless; do not promote it where clients are served"
        )
    store = _open(args)
    version = args.version or manifest.version
    store.push(
        archive,
        manifest,
        model=args.model,
        version=version,
        force=args.force,
        kms_key_id=args.kms_key_id,
        progress=terminal_progress(),
    )
    print(
        f"pushed {args.model} v{version} to {store.backend.key_uri(f'{args.model}/{version}/')} "
        f"({_human(manifest.size)}, sha256 {manifest.sha256[:12]})"
    )
    print(f"promote it with: resnet-serving promote --store {store.uri} --version {version}")
    return 0


# ---- versions -----------------------------------------------------------------------------------------
def cmd_versions(args: argparse.Namespace) -> int:
    store = _open(args)
    channels = store.channels(args.model)
    rows = store.inventory(args.model, channels=channels)
    listed = {r.version for r in rows}
    dangling = {c: v for c, v in channels.items() if v not in listed}
    if args.json:
        print(
            json.dumps(
                {
                    "store": store.uri,
                    "model": args.model,
                    "channels": channels,
                    "versions": [
                        {
                            "version": r.version,
                            "channels": list(r.channels),
                            "created": r.manifest.created if r.manifest else None,
                            "size": r.manifest.size if r.manifest else None,
                            "sha256": r.manifest.sha256 if r.manifest else None,
                            "weights_source": r.manifest.weights.get("source") if r.manifest else None,
                            "error": r.error,
                        }
                        for r in rows
                    ],
                },
                indent=2,
            )
        )
        return 0
    console = Console(width=None if sys.stdout.isatty() else 200)
    if not rows:
        console.print(f"no versions of {args.model} in {store.uri}", highlight=False)
    else:
        table = Table(title=f"{args.model} in {store.uri}", title_justify="left")
        for name in ("VERSION", "CHANNELS", "CREATED", "SIZE", "WEIGHTS", "SHA256"):
            table.add_column(name, justify="right" if name == "SIZE" else "left", no_wrap=True)
        for r in rows:
            marks = ", ".join(r.channels)
            if r.manifest is None:
                table.add_row(r.version, marks, "[red]unreadable manifest[/]", "", "", "")
                continue
            m = r.manifest
            table.add_row(
                r.version,
                f"[bold green]{marks}[/]" if marks else "",
                m.created,
                _human(m.size),
                str(m.weights.get("source", "?")),
                m.sha256[:12],
            )
        console.print(table)
        for r in rows:
            if r.error:
                console.print(f"[red]v{r.version}: {r.error}[/]", highlight=False)
    for channel, version in dangling.items():
        console.print(f"[yellow]channel {channel} points at v{version}, which is not in the store[/]")
    return 0


# ---- promote ------------------------------------------------------------------------------------------
def cmd_promote(args: argparse.Namespace) -> int:
    store = _open(args)
    previous = store.resolve_channel(args.model, args.channel)
    store.set_channel(args.model, args.channel, args.version)
    was = f"v{previous}" if previous else "unset"
    print(f"{args.model} {args.channel}: {was} -> v{args.version} in {store.uri}")
    return 0


# ---- fetch --------------------------------------------------------------------------------------------
def fetch_target(version: str | None, channel: str | None, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(version, channel) to fetch: flags first, then the environment; a version wins over a channel."""
    if version or channel:
        return version or None, channel or None
    version = environ.get(ENV_VERSION) or None
    if version:
        return version, None
    channel = environ.get(ENV_CHANNEL) or None
    if channel:
        return None, channel
    raise InputError(f"give --version or --channel (or set {ENV_VERSION} or {ENV_CHANNEL})")


def cmd_fetch(args: argparse.Namespace) -> int:
    version, channel = fetch_target(args.version, args.channel, environment())
    store = _open(args)
    if version is None:
        assert channel is not None
        version = store.resolve_channel(args.model, channel)
        if version is None:
            raise NotFound(
                f"channel {channel!r} of {args.model} is not set in {store.uri}: promote a version first "
                f"(resnet-serving promote --store {store.uri} --version V --channel {channel})"
            )
    path = store.fetch(args.model, version, args.dest, progress=terminal_progress())
    manifest = Manifest.load(path.with_name(MANIFEST_NAME))
    via = f" (channel {channel})" if channel else ""
    print(f"fetched {args.model} v{version}{via} to {path}: sha256 {manifest.sha256[:12]} verified")
    return 0
