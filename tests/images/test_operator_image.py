"""The operator image rolls one model version out against a fake Kubernetes API server, and stops on SIGTERM.

No Kubernetes API server can run here, so :class:`tests.helpers.fake_kube.FakeKube` stands in for it (and for
the Deployment controller); the model store is the moto server. Both listen on the host's loopback, which the
container shares (``--network host``). The container runs as the chart runs the operator: read-only root, UID/GID
10001, no capabilities, ``/tmp`` a small tmpfs (the chart's emptyDir), the namespace from
``RESNET_SERVING_OPERATOR_NAMESPACES``; but ``--standalone`` (the fake has no KopfPeering objects) and with a
kubeconfig instead of the ServiceAccount token. tests/integration/test_operator_fake_api.py runs the same scenario
with the operator on the host, and says what the fake does not prove.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tests.fixtures.moto_server import TEST_ENV, MotoS3, aws_test_env, moto_s3  # noqa: F401
from tests.helpers import free_port
from tests.helpers.chart import tool
from tests.helpers.fake_kube import (
    NAMESPACE,
    FakeKube,
    assert_rollout_events,
    chart_deployment,
    model_deployment_crd,
    operator_grace_seconds,
    publish,
    seed,
    wait_for_v1,
)
from tests.helpers.images import OPERATOR, docker

#: Seconds from `docker run` to the ModelDeployment's status saying v1 runs.
RECONCILE_S = 60
#: The chart's operator container, as `docker run` flags (operator.yaml: securityContext, the /tmp emptyDir).
HARDENED = ["--read-only", "--tmpfs", "/tmp:rw,size=64m", "--user", "10001:10001", "--cap-drop", "ALL"]
HARDENED += ["--security-opt", "no-new-privileges"]


def test_the_operator_image_rolls_v1_out_against_the_fake_api_and_stops_on_sigterm(
    built: None,
    moto_s3: MotoS3,  # noqa: F811
    tmp_path: Path,
    containers: list[str],
) -> None:
    helm = tool("HELM", ".tools/bin/helm")
    store = f"s3://{moto_s3.create_bucket()}/models"
    publish(store, moto_s3.url, tmp_path)
    grace = operator_grace_seconds(helm)
    name = f"operator-fake-api-{uuid.uuid4().hex[:8]}"

    with FakeKube(crds=[model_deployment_crd()], deployment_controller=True) as fake:
        seed(fake, chart_deployment(helm, store), store)
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE)
        env = {
            **TEST_ENV,
            "AWS_ENDPOINT_URL": moto_s3.url,
            "KUBECONFIG": "/kube/config",
            "RESNET_SERVING_OPERATOR_NAMESPACES": NAMESPACE,
            "RESNET_SERVING_OPERATOR_TICK_SECONDS": "1",  # follow the rollout on the next second, not in 10 s
            "RESNET_SERVING_OPERATOR_METRICS_HOST": "127.0.0.1",
            "RESNET_SERVING_OPERATOR_METRICS_PORT": str(free_port()),  # the host's network: no fixed port
        }
        flags = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        t0 = time.monotonic()
        docker("run", "-d", "--name", name, "--network", "host", *HARDENED,
               "-v", f"{kubeconfig}:/kube/config:ro", *flags, OPERATOR, "operator", "--standalone")  # fmt: skip
        containers.append(name)

        def logs() -> str:
            proc = docker("logs", "--tail", "120", name, check=False)
            return proc.stdout + proc.stderr

        def details() -> str:
            return f"--- container log ---\n{logs()}\n--- fake ---\n{fake.report()}"

        def gone() -> str | None:
            state = docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name, check=False).stdout
            return None if state.startswith("running") else f"the container is {state.strip()}"

        patched, ready, t_patched, t_ready = wait_for_v1(fake, t0, RECONCILE_S, gone, details)
        t1 = time.monotonic()
        docker("stop", "-t", str(grace), name, timeout=grace + 60)
        t_stop = time.monotonic() - t1
        exit_code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        output, report = logs(), fake.report()
        events = fake.objects("v1", "Event", NAMESPACE)
        unknown = list(fake.unknown)

    assert exit_code == "0" and t_stop < grace, f"SIGTERM: exit {exit_code} after {t_stop:.1f} s\n{output}"
    assert "Traceback" not in output, output
    assert [line for line in output.splitlines() if "ERROR" in line] == [], f"{output}\n{report}"
    assert unknown == [], f"the operator asked what the fake does not serve:\n{report}"
    assert patched["finalizers"] == ["resnet-serving.io/operator"], patched
    assert "resnet-serving.io/last-handled-configuration" in ready["annotations"], ready
    assert_rollout_events(events)
    print(
        f"\noperator image against the fake API: v1 in the pod template after {t_patched:.1f} s, status Ready after "
        f"{t_ready:.1f} s (from docker run), docker stop (SIGTERM) to exit {t_stop:.1f} s of the chart's {grace} s"
    )
