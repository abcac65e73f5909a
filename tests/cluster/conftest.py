"""Fixtures for tests that need a real Kubernetes cluster (kind or EKS) named by KUBECONFIG.

No Kubernetes API server can run on the CI machine, so without KUBECONFIG (and the settings below) these
tests are skipped, each with the reason. Settings, from the environment:

``KUBECONFIG``                              the cluster (required)
``RESNET_SERVING_E2E_STORE``                ``s3://BUCKET/PREFIX`` that this machine may write and the cluster's
                                            pods may read (IRSA / Pod Identity on EKS); a fresh sub-prefix is
                                            used per run (required)
``RESNET_SERVING_E2E_IMAGE``                the serving image the cluster can pull (required)
``RESNET_SERVING_E2E_OPERATOR_IMAGE``       the operator image; when unset the operator runs on this machine
                                            (``resnet-serving operator``) against KUBECONFIG
``RESNET_SERVING_E2E_VALUES``               an extra values file for the chart (IRSA annotations, ...)
``RESNET_SERVING_E2E_CLUSTER_ENDPOINT_URL`` the S3 endpoint as seen from the pods, when it differs from this
                                            machine's ``AWS_ENDPOINT_URL`` (MinIO in the cluster)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cluster import ROOT, Cluster

REQUIRED = {
    "KUBECONFIG": "a cluster to run against (kind or EKS)",
    "RESNET_SERVING_E2E_STORE": "an s3:// model store this machine writes and the cluster's pods read",
    "RESNET_SERVING_E2E_IMAGE": "the serving image, pullable by the cluster",
}


def tool(env: str, fallback: str) -> str:
    path = os.environ.get(env) or str(ROOT / fallback)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    found = shutil.which(Path(fallback).name)
    if found is None:
        pytest.skip(f"{env} not set and {fallback} missing: run `make tools`")
    return found


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    missing = [f"{k} ({why})" for k, why in REQUIRED.items() if not os.environ.get(k)]
    if missing:
        pytest.skip(
            "needs a real Kubernetes cluster; no API server can run on the CI machine. Not set: " + "; ".join(missing)
        )
    c = Cluster(
        kubectl=tool("KUBECTL", ".tools/bin/kubectl"),
        helm=tool("HELM", ".tools/bin/helm"),
        namespace=f"rs-e2e-{uuid.uuid4().hex[:8]}",
        store=f"{os.environ['RESNET_SERVING_E2E_STORE'].rstrip('/')}/e2e-{uuid.uuid4().hex[:8]}",
        image=os.environ["RESNET_SERVING_E2E_IMAGE"],
        operator_image=os.environ.get("RESNET_SERVING_E2E_OPERATOR_IMAGE") or None,
        values=os.environ.get("RESNET_SERVING_E2E_VALUES") or None,
        cluster_endpoint=os.environ.get("RESNET_SERVING_E2E_CLUSTER_ENDPOINT_URL") or None,
    )
    if c.run(c.kubectl, "version", "--request-timeout=20s", check=False).returncode != 0:
        pytest.skip("KUBECONFIG is set but the cluster does not answer `kubectl version`")
    c.run(c.kubectl, "create", "namespace", c.namespace)
    try:
        yield c
    finally:
        c.run(c.kubectl, "delete", "namespace", c.namespace, "--wait=false", check=False)
