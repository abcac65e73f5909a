"""`resnet-serving operator` as a process, against a fake Kubernetes API server, rolls one model version out.

No Kubernetes API server can run here, so :class:`tests.helpers.fake_kube.FakeKube` stands in for it (and for
the Deployment controller: a new pod template counts as rolled out at once). The model store is real S3 protocol:
the moto server. What is real: the operator's command line, kopf's login from a kubeconfig, its discovery, list,
watch, finalizer and annotation patches, the operator's own Deployment patch, status writes and Events, the store
read, and SIGTERM. What is not: admission (the CRD schema), RBAC, pods, peering (the operator runs
``--standalone``), and a real API server's watch (see tests/helpers/fake_kube.py).

The same scenario runs the operator image in tests/images/test_operator_image.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from resnet_serving.settings import ENV_PREFIX
from tests.fixtures.moto_server import TEST_ENV, UNSET_ENV, MotoS3
from tests.helpers import free_port
from tests.helpers.chart import tool
from tests.helpers.fake_kube import (
    JSON_PATCH,
    NAMESPACE,
    FakeKube,
    assert_rollout_events,
    chart_deployment,
    model_deployment_crd,
    operator_grace_seconds,
    publish,
    rollout,
    seed,
    wait_for_v1,
)

#: Seconds from the operator's start to the ModelDeployment's status saying v1 runs: kopf's start, a store read
#: and one tick, with room for a loaded machine.
RECONCILE_S = 60


def operator_env(kubeconfig: Path, moto: MotoS3, home: Path, metrics_port: int) -> dict[str, str]:
    """The host's environment without cluster, AWS or operator settings of its own, plus the fake's kubeconfig and
    moto."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV and not k.startswith(("KUBERNETES_", ENV_PREFIX))}
    env.update(TEST_ENV)
    env.update({
        "KUBECONFIG": str(kubeconfig),
        "HOME": str(home),
        "AWS_ENDPOINT_URL": moto.url,  # boto3 reads it: the ModelDeployment names no endpoint, as in production
        "RESNET_SERVING_OPERATOR_TICK_SECONDS": "1",  # follow the rollout on the next second, not in 10 s
        "RESNET_SERVING_OPERATOR_METRICS_HOST": "127.0.0.1",
        "RESNET_SERVING_OPERATOR_METRICS_PORT": str(metrics_port),
    })  # fmt: skip
    return env


@pytest.mark.helm
def test_the_operator_rolls_v1_out_against_the_fake_api_and_stops_on_sigterm(moto_s3: MotoS3, tmp_path: Path) -> None:
    helm = tool("HELM", ".tools/bin/helm")
    store = f"s3://{moto_s3.create_bucket()}/models"
    publish(store, moto_s3.url, tmp_path)
    grace = operator_grace_seconds(helm)
    log = tmp_path / "operator.log"

    with FakeKube(crds=[model_deployment_crd()], deployment_controller=True) as fake:
        seed(fake, chart_deployment(helm, store), store)
        before = rollout(fake)
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE)
        argv = [sys.executable, "-m", "resnet_serving", "operator", "--standalone", "--namespace", NAMESPACE]
        env = operator_env(kubeconfig, moto_s3, tmp_path, free_port())
        t0 = time.monotonic()
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:

            def details() -> str:
                return f"--- operator log ---\n{log.read_text(errors='replace')[-6000:]}\n--- fake ---\n{fake.report()}"

            def gone() -> str | None:
                return None if proc.poll() is None else f"the operator exited ({proc.returncode})"

            patched, ready, t_patched, t_ready = wait_for_v1(fake, t0, RECONCILE_S, gone, details)
            t1 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=grace)
            t_stop = time.monotonic() - t1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        events = fake.objects("v1", "Event", NAMESPACE)
        unknown, report, output = list(fake.unknown), fake.report(), log.read_text(errors="replace")

    assert before["annotation"] == "" and before["env"] == "", before  # the chart leaves the version to the channel
    assert rc == 0, f"SIGTERM: exit status {rc}\n{output[-4000:]}"
    assert "Traceback" not in output, output[-6000:]
    assert [line for line in output.splitlines() if "ERROR" in line] == [], f"{output[-6000:]}\n{report}"
    assert unknown == [], f"the operator asked what the fake does not serve:\n{report}"
    assert patched["finalizers"] == ["resnet-serving.io/operator"], patched
    # kopf stores what it handled once the watch brings its own finalizer patch back (a MODIFIED event)
    assert "resnet-serving.io/last-handled-configuration" in ready["annotations"], ready
    assert any(r.streamed for r in fake.requests if "watch=true" in r.query), report
    assert all(r.status < 500 for r in fake.requests), report
    assert_rollout_events(events)
    print(
        f"\noperator on the host against the fake API: v1 in the pod template after {t_patched:.1f} s, "
        f"status Ready after {t_ready:.1f} s, SIGTERM to exit {t_stop:.1f} s"
    )


def test_the_fake_answers_writes_and_watches_as_the_api_server_does() -> None:
    """The fake's own contract, on the points the operator's run relies on (a wrong fake would make the test above
    pass for the wrong reason): auth, Status errors, the status subresource, generation, patches, watch."""
    crd = model_deployment_crd()
    with FakeKube(crds=[crd]) as fake:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {fake.token}"
        base = f"{fake.url}/apis/{crd['spec']['group']}/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"
        md = {"apiVersion": f"{crd['spec']['group']}/v1alpha1", "kind": "ModelDeployment",
              "metadata": {"name": "m", "namespace": NAMESPACE}, "spec": {"channel": "stable"}}  # fmt: skip

        assert requests.get(f"{fake.url}/api", timeout=5).status_code == 401
        assert s.post(base, json=md, timeout=5).json()["reason"] == "NotFound"  # no namespace yet
        fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        created = s.post(base, json=md, timeout=5).json()
        assert created["metadata"]["generation"] == 1
        assert s.post(base, json=md, timeout=5).status_code == 409

        def patch(url: str, body: object, kind: str = "application/merge-patch+json") -> requests.Response:
            return s.patch(url, data=json.dumps(body), headers={"Content-Type": kind}, timeout=5)

        rv0 = created["metadata"]["resourceVersion"]
        main = patch(f"{base}/m", {"metadata": {"annotations": {"a": "1"}}, "status": {"phase": "X"}}).json()
        assert (
            "status" not in main and main["metadata"]["generation"] == 1 and main["metadata"]["resourceVersion"] != rv0
        )
        status = patch(f"{base}/m/status", {"spec": {"channel": "other"}, "status": {"phase": "Ready"}}).json()
        assert status["status"] == {"phase": "Ready"} and status["spec"] == {"channel": "stable"}
        same = patch(f"{base}/m", {"metadata": {"annotations": {"a": "1"}}}).json()
        assert same["metadata"]["resourceVersion"] == status["metadata"]["resourceVersion"]  # a no-op write
        spec = patch(f"{base}/m", [{"op": "replace", "path": "/spec/channel", "value": "canary"}], JSON_PATCH).json()
        assert spec["metadata"]["generation"] == 2 and spec["status"] == {"phase": "Ready"}
        stale = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv0}]
        assert patch(f"{base}/m", stale, JSON_PATCH).status_code == 422
        put = s.put(f"{base}/m", json={**spec, "metadata": {**spec["metadata"], "resourceVersion": rv0}}, timeout=5)
        assert put.status_code == 409 and put.json()["kind"] == "Status"
        assert patch(f"{base}/m", {}, "application/strategic-merge-patch+json").status_code == 415

        watched = s.get(base, params={"watch": "true", "resourceVersion": rv0, "timeoutSeconds": "1"}, timeout=10)
        events = [json.loads(line) for line in watched.text.splitlines()]
        assert [e["type"] for e in events] == ["MODIFIED"] * 3
        assert [e["object"]["metadata"]["resourceVersion"] for e in events][-1] == spec["metadata"]["resourceVersion"]

        assert s.get(f"{fake.url}/apis/kopf.dev/v1/namespaces/{NAMESPACE}/kopfpeerings", timeout=5).status_code == 404
        assert [(r.method, r.path) for r in fake.unknown] == [
            ("GET", f"/apis/kopf.dev/v1/namespaces/{NAMESPACE}/kopfpeerings")
        ]
