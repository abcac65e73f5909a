"""`resnet-serving` command line. A thin adapter: each subcommand parses flags and calls the package.

Subcommands are registered by the module that owns them (``register(subparsers)``), so this file stays a
table of contents. Heavy imports (torch) happen inside the command functions, never at import time.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from resnet_serving import __version__
from resnet_serving.errors import ResnetServingError
from resnet_serving.settings import ENV_AWS_ENDPOINT_URL, environment

# Modules that add subcommands. Each exposes ``register(subparsers: argparse._SubParsersAction) -> None``.
COMMAND_MODULES = (
    "resnet_serving.artifact.commands",  # archive
    "resnet_serving.torchserve.commands",  # serve, predict, probe
    "resnet_serving.bench.commands",  # bench
    "resnet_serving.bench.evaluate",  # evaluate
    "resnet_serving.store.commands",  # push, versions, promote, fetch
    "resnet_serving.controller.commands",  # operator
    "resnet_serving.sync.commands",  # sync
    "resnet_serving.sagemaker.commands",  # sagemaker deploy|status|rollback|delete|invoke
    "resnet_serving.plan.commands",  # plan
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-serving",
        description="Serve a ResNet50 image classifier with TorchServe: locally, on EKS, or on SageMaker.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def add_endpoint_url(p: argparse.ArgumentParser) -> None:
    """Every command that touches S3 takes --endpoint-url (default: $AWS_ENDPOINT_URL)."""
    p.add_argument(
        "--endpoint-url",
        default=environment().get(ENV_AWS_ENDPOINT_URL) or None,
        help="S3-compatible endpoint URL (default: $AWS_ENDPOINT_URL, else AWS)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except ResnetServingError as e:
        print(f"resnet-serving {args.command}: error: {e.message}", file=sys.stderr)
        return 2 if e.http_status < 500 else 1
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
