"""End to end on a real cluster: install the chart with the operator, push v1 and v2 and see them roll out, push
a corrupt v3 and see the automatic rollback, then `kubectl rollout undo` and see the operator hold.

No Kubernetes API server can run on the CI machine: without KUBECONFIG (and the settings listed in
tests/cluster/conftest.py) every test here is skipped with the reason. Against kind or EKS it takes about
15-25 minutes (each rollout starts TorchServe pods; the corrupt version fails after `rolloutTimeout`, 4m here).
The steps are the commands a user runs: `helm install`, `kubectl apply` of a ModelDeployment,
`resnet-serving push` / `promote`, `kubectl rollout status|history|undo`, `kubectl get modeldeployments`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.cluster import ROOT, Cluster, wait_for

pytestmark = pytest.mark.cluster

RELEASE = "resnet50-serving"
CHART = ROOT / "charts" / "resnet50-serving"
ROLLOUT_S = 15 * 60


def image_values(prefix: str, ref: str) -> list[str]:
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return ["--set", f"{prefix}.repository={repo}", "--set", f"{prefix}.digest={digest}"]
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    out = ["--set", f"{prefix}.repository={repo or ref}"]
    return out + (["--set-string", f"{prefix}.tag={tag}"] if tag else [])


def cli(*args: str) -> str:
    """`resnet-serving ARGS` as a user runs it (AWS_ENDPOINT_URL and credentials from the environment)."""
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_serving", *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"resnet-serving {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real model archives (random weights) for versions 1, 2 and 3."""
    pytest.importorskip("torch", reason="building model archives needs the serve extra (torch)")
    from resnet_serving.archiver import build_archive

    out = {}
    for version in ("1", "2", "3"):
        d = tmp_path_factory.mktemp(f"v{version}")
        build_archive(weights="random", version=version, out_dir=d)
        out[version] = d
    return out


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster, archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    c = cluster
    cli("push", str(archives["1"]), "--store", c.store, "--allow-random-weights")
    cli("promote", "--store", c.store, "--version", "1", "--channel", "stable")
    args = [
        c.helm, "install", RELEASE, str(CHART), "--namespace", c.namespace, "--wait", "--timeout", "15m",
        *image_values("image", c.image),
        "--set", f"model.store={c.store}",
        "--set", "autoscaling.enabled=false", "--set", "replicaCount=2",
        "--set", "topologySpread.zone.enabled=false", "--set", "ingress.enabled=false",
        "--set", "resources.requests.cpu=500m", "--set", "resources.requests.memory=2Gi",
        "--set", "resources.limits.cpu=1", "--set", "resources.limits.memory=3Gi",
        "--set", f"operator.enabled={'true' if c.operator_image else 'false'}",
    ]  # fmt: skip
    if c.operator_image:
        args += image_values("operator.image", c.operator_image)
    if c.cluster_endpoint:
        args += ["--set-string", f"model.endpointUrl={c.cluster_endpoint}"]
    if c.values:
        args += ["-f", c.values]
    c.run(*args, timeout=20 * 60)
    operator = None
    if not c.operator_image:  # run the operator here, against the same cluster
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        operator = subprocess.Popen(
            [sys.executable, "-m", "resnet_serving", "operator", "-n", c.namespace, "--standalone",
             "--metrics-port", "0"],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
    try:
        yield c
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        c.run(c.helm, "uninstall", RELEASE, "--namespace", c.namespace, check=False)


def model_deployment(c: Cluster) -> dict[str, Any]:
    return {
        "apiVersion": "resnet-serving.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": RELEASE, "namespace": c.namespace},
        "spec": {
            "store": c.store,
            "channel": "stable",
            "deployment": RELEASE,
            "pollInterval": "10s",
            "rolloutTimeout": "4m",
        },
    }


def status(c: Cluster) -> dict[str, Any]:
    md = c.get("modeldeployment", RELEASE) or {}
    return md.get("status") or {}


def template_version(c: Cluster) -> str:
    dep = c.get("deployment", RELEASE) or {}
    return dep["spec"]["template"]["metadata"]["annotations"]["resnet-serving.io/model-version"]


def reached(c: Cluster, version: str, phase: str = "Ready") -> dict[str, Any] | None:
    s = status(c)
    return s if s.get("currentVersion") == version and s.get("phase") == phase else None


def events(c: Cluster, reason: str) -> list[dict[str, Any]]:
    return c.kubectl_json("get", "events", "--field-selector", f"reason={reason}")["items"]


def test_rollouts_rollback_and_drift(installed: Cluster, archives: dict[str, Path], tmp_path: Path) -> None:
    c = installed
    manifest = tmp_path / "modeldeployment.yaml"
    manifest.write_text(yaml.safe_dump(model_deployment(c)))
    c.run(c.kubectl, "apply", "-f", str(manifest))

    # v1: the channel's version is made explicit in the pod template and rolled out.
    wait_for("v1 Ready", lambda: reached(c, "1"), timeout=ROLLOUT_S)
    assert template_version(c) == "1"
    c.run(c.kubectl, "-n", c.namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=10m", timeout=700)
    table = c.run(c.kubectl, "-n", c.namespace, "get", "modeldeployments").stdout
    assert "Ready" in table and RELEASE in table

    # v2: push + promote is a rolling update, visible in `kubectl rollout history`.
    cli("push", str(archives["2"]), "--store", c.store, "--allow-random-weights")
    cli("promote", "--store", c.store, "--version", "2")
    wait_for("v2 Ready", lambda: reached(c, "2"), timeout=ROLLOUT_S)
    c.run(c.kubectl, "-n", c.namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=10m", timeout=700)
    history = c.run(c.kubectl, "-n", c.namespace, "rollout", "history", f"deployment/{RELEASE}").stdout
    assert "resnet-serving operator: model v2 (channel stable)" in history

    # v3, corrupt: its archive no longer matches the manifest, so `fetch` refuses it, the new pods never get
    # ready, and the operator rolls back to v2 by itself.
    cli("push", str(archives["3"]), "--store", c.store, "--allow-random-weights")
    from resnet_serving.store import archive_key, open_store

    store = open_store(c.store, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    store.backend.put_bytes(archive_key("resnet50", "3"), b"not the archive the manifest describes")
    cli("promote", "--store", c.store, "--version", "3")
    rolled_back = wait_for("the rollback to v2", lambda: reached(c, "2", "Degraded"), timeout=ROLLOUT_S)
    assert rolled_back["failedVersions"] == ["3"] and rolled_back["reason"] == "RolledBack"
    assert template_version(c) == "2"
    assert events(c, "RolloutFailed") and events(c, "RolledBack")
    c.run(c.kubectl, "-n", c.namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=5m", timeout=400)

    # A human undoes the rollout back to v1: the operator reports the drift and does not revert it.
    history = c.run(c.kubectl, "-n", c.namespace, "rollout", "history", f"deployment/{RELEASE}").stdout
    v1 = next(line.split()[0] for line in history.splitlines() if "model v1 (" in line)
    c.run(c.kubectl, "-n", c.namespace, "rollout", "undo", f"deployment/{RELEASE}", f"--to-revision={v1}")
    drift = wait_for("Drifted", lambda: (s := status(c)).get("phase") == "Drifted" and s, timeout=120)
    undone = template_version(c)
    assert undone == "1" and drift["drift"]["expectedVersion"] == "2"
    polled = drift.get("lastPollTime")
    wait_for("two more polls", lambda: status(c).get("lastPollTime", "") > (polled or ""), timeout=120)
    assert template_version(c) == undone, "the operator never reverts a human"
    assert events(c, "DriftDetected")

    # The channel moves on (away from the failed v3): the operator resumes from the human's version.
    cli("promote", "--store", c.store, "--version", "2")
    resumed = wait_for("v2 Ready again", lambda: reached(c, "2"), timeout=ROLLOUT_S)
    assert "drift" not in resumed and events(c, "DriftReleased")
    assert template_version(c) == "2"
