"""``resnet-serving operator``: run the kopf operator (the operator image's command). A thin adapter.

kopf is imported only when the command runs (:mod:`resnet_serving.controller.run`), so the rest of the CLI works
without the ``operator`` extra.
"""

from __future__ import annotations

import argparse
from typing import Any

from resnet_serving.controller.config import (
    DEFAULT_METRICS_PORT,
    ENV_NAMESPACES,
    ENV_PEERING,
    ENV_POD_NAMESPACE,
    load_config,
)
from resnet_serving.settings import ENV_PREFIX


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "operator",
        help="run the model-rollout operator (ModelDeployment → Deployment rollouts, rollback, drift)",
        description="Watch ModelDeployment resources, poll the model store, and roll new model versions out by "
        "patching each target Deployment's pod template; roll back failed rollouts; never revert manual changes. "
        f"Settings fall back to the environment the Helm chart sets ({ENV_PREFIX}OPERATOR_*).",
    )
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NS",
        help=f"namespace to watch (repeatable; default: ${ENV_NAMESPACES} or ${ENV_POD_NAMESPACE})",
    )
    p.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        default=None,
        help="watch every namespace (needs cluster-wide RBAC; the chart grants namespaced RBAC)",
    )
    peering = p.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        help=f"KopfPeering object coordinating replicas (default: ${ENV_PEERING}); mandatory when given",
    )
    peering.add_argument("--standalone", action="store_true", help="run without peering (one replica only)")
    p.add_argument("--priority", type=int, help="peering priority (default: random, so replicas differ)")
    p.add_argument("--metrics-host", help="address of /metrics, /healthz, /readyz (default 0.0.0.0)")
    p.add_argument(
        "--metrics-port", type=int, help=f"port of /metrics, /healthz, /readyz (default {DEFAULT_METRICS_PORT}; 0: off)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_operator)


def cmd_operator(args: argparse.Namespace) -> int:
    config = load_config(
        namespaces=args.namespaces,
        all_namespaces=args.all_namespaces,
        peering=args.peering,
        standalone=args.standalone,
        priority=args.priority,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        verbose=args.verbose,
    )
    from resnet_serving.controller.run import run  # kopf: the operator extra

    run(config)
    return 0
