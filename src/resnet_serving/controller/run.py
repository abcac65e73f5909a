"""Run the kopf operator with its settings: what ``resnet-serving operator`` starts (the operator image's command)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_serving.controller.config import OperatorConfig
from resnet_serving.controller.spec import GROUP
from resnet_serving.errors import ConfigError, ResnetServingError
from resnet_serving.settings import environment

if TYPE_CHECKING:
    import kopf

ANNOTATION_PREFIX = GROUP


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


#: Where a pod's ServiceAccount token is mounted (what kopf's in-cluster login reads).
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
NO_CLUSTER = (
    "no Kubernetes cluster to talk to: not in a pod with a ServiceAccount token (KUBERNETES_SERVICE_HOST and "
    f"{SERVICE_ACCOUNT_TOKEN}), and no kubeconfig ($KUBECONFIG or ~/.kube/config)"
)


def cluster_credentials(environ: Mapping[str, str], token: Path = SERVICE_ACCOUNT_TOKEN) -> str | None:
    """Where kopf's login will find the cluster (an in-cluster token or a kubeconfig), or None when nowhere."""
    if environ.get("KUBERNETES_SERVICE_HOST") and token.is_file():
        return "in-cluster ServiceAccount"
    configs = [Path(p) for p in environ.get("KUBECONFIG", "").split(":") if p]
    configs = configs or [Path(environ.get("HOME") or Path.home()) / ".kube" / "config"]
    found = next((c for c in configs if c.is_file()), None)
    return f"kubeconfig {found}" if found else None


def run(config: OperatorConfig) -> None:
    """Register the handlers and run kopf until it stops (blocking)."""
    try:
        import kopf
    except ImportError as e:
        raise ResnetServingError("the operator needs kopf: pip install 'resnet-serving[operator]'") from e
    if cluster_credentials(environment()) is None:
        raise ConfigError(NO_CLUSTER)

    from resnet_serving.controller import handlers  # registers the handlers with kopf

    kopf.configure(verbose=config.verbose, log_prefix=True)
    if not config.verbose:  # kopf logs every timer run at INFO; our own log lines say what happened
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    memo = kopf.Memo(runtime=handlers.Runtime(config=config))
    try:
        _run_kopf(kopf, config, memo)
    except kopf.LoginError as e:  # the credentials were found but do not log in
        raise ConfigError(f"cannot log in to the Kubernetes cluster: {e}") from e


def _run_kopf(kopf: Any, config: OperatorConfig, memo: Any) -> None:
    kopf.run(
        settings=build_settings(config),
        clusterwide=config.all_namespaces,
        namespaces=list(config.namespaces),
        standalone=config.peering is None,
        peering_name=config.peering,
        priority=config.priority,
        memo=memo,
    )
