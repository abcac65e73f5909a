"""``resnet-serving operator``: run the kopf operator (the operator image's command). A thin adapter.

kopf is imported only when the command runs, so the rest of the CLI works without the ``operator`` extra.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from resnet_serving.controller.config import OperatorConfig, load_config
from resnet_serving.errors import ResnetServingError

if TYPE_CHECKING:
    import kopf

ANNOTATION_PREFIX = "resnet-serving.io"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "operator",
        help="run the model-rollout operator (ModelDeployment → Deployment rollouts, rollback, drift)",
        description="Watch ModelDeployment resources, poll the model store, and roll new model versions out by "
        "patching each target Deployment's pod template; roll back failed rollouts; never revert manual changes. "
        "Settings fall back to the environment the Helm chart sets (RESNET_SERVING_OPERATOR_*).",
    )
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="namespace to watch (repeatable; default: $RESNET_SERVING_OPERATOR_NAMESPACES or $POD_NAMESPACE)",
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
        help="KopfPeering object coordinating replicas (default: "
        "$RESNET_SERVING_OPERATOR_PEERING); mandatory when given",
    )
    peering.add_argument("--standalone", action="store_true", help="run without peering (one replica only)")
    p.add_argument("--priority", type=int, help="peering priority (default: random, so replicas differ)")
    p.add_argument("--metrics-host", help="address of /metrics, /healthz, /readyz (default 0.0.0.0)")
    p.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (default 8080; 0: off)")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_operator)


def build_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    """kopf's settings for this operator: namespaced, its own annotation prefix, quiet Events."""
    import kopf

    settings = kopf.OperatorSettings()
    # The chart grants namespaced RBAC only: no cluster-wide watch of CRDs or namespaces.
    settings.scanning.disabled = True
    settings.peering.mandatory = config.peering is not None
    settings.peering.standalone = config.peering is None
    settings.peering.name = config.peering or "default"
    settings.peering.priority = config.priority
    settings.peering.clusterwide = config.all_namespaces
    settings.peering.stealth = True
    # kopf's bookkeeping lives in annotations under our prefix; .status belongs to the ModelDeployment schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/operator"
    # Events are posted explicitly (rollout started/failed, rollback, drift); kopf's own log lines are not.
    settings.posting.level = logging.WARNING
    return settings


def cmd_operator(args: argparse.Namespace) -> int:
    try:
        import kopf
    except ImportError as e:
        raise ResnetServingError("the operator needs kopf: pip install 'resnet-serving[operator]'") from e

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

    from resnet_serving.controller import handlers  # registers the handlers with kopf

    kopf.configure(verbose=config.verbose, log_prefix=True)
    if not config.verbose:  # kopf logs every timer run at INFO; our own log lines say what happened
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    memo = kopf.Memo(runtime=handlers.Runtime(config=config))
    kopf.run(
        settings=build_settings(config),
        clusterwide=config.all_namespaces,
        namespaces=list(config.namespaces),
        standalone=config.peering is None,
        peering_name=config.peering,
        priority=config.priority,
        memo=memo,
    )
    return 0
