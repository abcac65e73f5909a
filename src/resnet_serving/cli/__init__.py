"""`resnet-serving` command line: every command module, and the flags they share (:mod:`.flags`).

One module per command group. Each exposes ``register(subparsers)`` and parses flags, then calls the package
below it; nothing outside ``cli/`` imports it (the import-layers contract in pyproject.toml says so). Heavy
imports (torch, kopf) stay inside the command functions, so ``--help`` and the store commands start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from resnet_serving import __version__
from resnet_serving.cli import archive, batch, bench, evaluate, operator, plan, sagemaker, serve, store, sync
from resnet_serving.errors import ResnetServingError

#: In the order `--help` lists them.
COMMAND_MODULES = (archive, serve, bench, evaluate, batch, store, operator, sync, sagemaker, plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-serving",
        description="Serve a ResNet50 image classifier with TorchServe: locally, on EKS, or on SageMaker.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


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
