"""The built images, run for real (`make image-test`; `make test` runs them whenever a Docker engine answers).

Without an engine every test here is skipped, and says so. With one, the images of this version are built by
``docker/build.sh`` (`make images`) first if they are missing. Three cases:

* **As the chart runs the serving image**: the container's command, args, env and ports come from
  ``helm template`` of the chart's defaults, not copied here; it runs as the chart's securityContext asks (read-only
  root filesystem, UID/GID 10001, every capability dropped, no privilege escalation, ``/tmp`` a tmpfs as the
  chart's emptyDir), with the model where the init step's ``fetch`` puts it. Its probes pass, it answers the
  example photo as ``serve`` on the host does, its metrics ports answer, and SIGTERM stops it within the chart's
  grace period.
* **As SageMaker runs it**: ``docker run IMAGE serve`` with ``/opt/ml/model`` mounted read-only from an extracted
  ``model.tar.gz`` as ``sagemaker deploy`` packs it.
* **The operator image** starts, and says clearly that it has no cluster.

Then both images go to a real registry on loopback (Debian's docker-registry) and come back by digest, and the
chart's ``image.digest`` renders that digest.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from resnet_serving import __version__
from tests.helpers import REPO, free_ports
from tests.helpers.chart import account_args, tool
from tests.helpers.images import NO_ROOM, OPERATOR, SERVING, docker, engine, report
from tests.helpers.sagemaker_model import sagemaker_model_dir

EXAMPLE = REPO / "examples" / "grace_hopper.jpg"
#: Seconds for a container to answer a prediction (the chart's startup probe allows 5 minutes).
READY_S = 300


def test_a_build_without_room_stops_before_it_starts() -> None:
    """docker/build.sh checks Docker's data root for room first: with more asked than any disk has, it exits 3
    (what `built` skips on) with a message that says how much there is, and builds nothing."""
    why = engine()
    if why:
        pytest.skip(f"needs a Docker engine: {why}")
    before = docker("image", "ls", "-q", "--no-trunc").stdout.split()
    env = {**os.environ, "IMAGES_MIN_FREE_GB": "1000000"}
    proc = subprocess.run(["bash", "docker/build.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == NO_ROOM, proc.stderr
    assert re.search(r"has \d+ GB free; a build of the images needs about 1000000 GB", proc.stderr), proc.stderr
    assert "make-base" not in proc.stderr and "building" not in proc.stderr
    assert sorted(docker("image", "ls", "-q", "--no-trunc").stdout.split()) == sorted(before)


def readable_copy(src: Path, dest: Path) -> Path:
    """A copy of a model directory that UID 10001 can read (pytest's temp directories are private to root)."""
    shutil.copytree(src, dest)
    dest.chmod(0o755)
    for f in dest.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    return dest


@dataclass
class Running:
    name: str
    url: str

    def logs(self) -> str:
        proc = docker("logs", "--tail", "80", self.name, check=False)
        return proc.stdout + proc.stderr

    def wait_answering(self, path: str = "/ping") -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < READY_S:
            state = docker("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip()
            assert state == "true", f"{self.name} exited before it answered:\n{self.logs()}"
            try:
                if requests.get(self.url + path, timeout=3).status_code == 200:
                    return time.monotonic() - t0
            except requests.RequestException:
                pass
            time.sleep(1)
        raise AssertionError(f"{self.name} did not answer {path} within {READY_S} s:\n{self.logs()}")

    def stop_seconds(self, grace: int) -> float:
        """SIGTERM, then how long the container took to exit (SIGKILL after ``grace``)."""
        t0 = time.monotonic()
        docker("stop", "-t", str(grace), self.name, timeout=grace + 60)
        return time.monotonic() - t0


HARDENED = ["--read-only", "--tmpfs", "/tmp:rw,exec,size=2g", "--user", "10001:10001", "--cap-drop", "ALL"]
HARDENED += ["--security-opt", "no-new-privileges"]


# ---- as SageMaker runs it ------------------------------------------------------------------------------------
def sagemaker_model(archive_dir: Path, root: Path, *, tamper: bool = False) -> Path:
    """/opt/ml/model as SageMaker lays it out, readable by the container's UID 10001."""
    return readable_copy(sagemaker_model_dir(archive_dir, root, tamper=tamper), root / "mounted")


def sagemaker_run(containers: list[str], model: Path, name: str, port: int, *extra: str) -> Running:
    docker(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
        "-v", f"{model}:/opt/ml/model:ro", *HARDENED, *extra, SERVING, "serve",
        timeout=60,
    )  # fmt: skip
    containers.append(name)
    return Running(name, f"http://127.0.0.1:{port}")


def test_sagemaker_contract(built: None, archive_dir: Path, tmp_path: Path, containers: list[str]) -> None:
    """`docker run IMAGE serve` with /opt/ml/model read-only: /ping, /invocations raw and JSON, a 7 MB body gets
    413, and SIGTERM exits inside SageMaker's 30 s."""
    model = sagemaker_model(archive_dir, tmp_path / "sm")
    (port,) = free_ports(1)
    c = sagemaker_run(containers, model, f"rs-sm-{port}", port)
    cold = c.wait_answering("/ping")
    photo = EXAMPLE.read_bytes()
    raw = requests.post(f"{c.url}/invocations", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert raw.status_code == 200 and raw.json()["predictions"], raw.text[:500]
    body = {"images": [base64.b64encode(photo).decode()], "topk": 3}
    js = requests.post(f"{c.url}/invocations", json=body, timeout=60)
    assert js.status_code == 200, js.text[:500]
    (result,) = js.json()["results"]
    assert [p["index"] for p in result["predictions"]] == [p["index"] for p in raw.json()["predictions"][:3]]
    big = requests.post(
        f"{c.url}/invocations", data=b"\xff" * (7 << 20), headers={"Content-Type": "image/jpeg"}, timeout=60
    )
    assert big.status_code == 413, (big.status_code, big.text[:300])
    took = c.stop_seconds(30)
    state = json.loads(docker("inspect", "-f", "{{json .State}}", c.name).stdout)
    assert took < 30 and not state["OOMKilled"], (took, state, c.logs())
    report(f"serving image, SageMaker mode: /ping after {cold:.1f} s, SIGTERM to exit {took:.1f} s")


def test_sagemaker_bind_to_port(built: None, archive_dir: Path, tmp_path: Path, containers: list[str]) -> None:
    model = sagemaker_model(archive_dir, tmp_path / "sm")
    (port,) = free_ports(1)
    name = f"rs-sm-bind-{port}"
    docker(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9090", "-e", "SAGEMAKER_BIND_TO_PORT=9090",
        "-v", f"{model}:/opt/ml/model:ro", *HARDENED, SERVING, "serve",
        timeout=60,
    )  # fmt: skip
    containers.append(name)
    c = Running(name, f"http://127.0.0.1:{port}")
    c.wait_answering("/ping")
    r = requests.post(f"{c.url}/invocations", data=EXAMPLE.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text[:300]


def test_a_tampered_archive_exits_with_the_integrity_message(
    built: None, archive_dir: Path, tmp_path: Path, containers: list[str]
) -> None:
    model = sagemaker_model(archive_dir, tmp_path / "sm", tamper=True)
    proc = docker(
        "run", "--rm", "-v", f"{model}:/opt/ml/model:ro", *HARDENED, SERVING, "serve", timeout=300, check=False
    )  # fmt: skip
    assert proc.returncode != 0
    assert "does not match its manifest" in proc.stderr, proc.stderr[-2000:]


# ---- as the chart runs it ------------------------------------------------------------------------------------
def chart_container(helm_bin: str) -> tuple[dict[str, Any], int]:
    """The serving container of the chart's default Deployment, and the pod's grace period."""
    out = subprocess.run(
        [helm_bin, "template", "resnet50-serving", str(REPO / "charts" / "resnet50-serving"), *account_args()],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    deployment = next(
        d
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "Deployment" and "operator" not in d["metadata"]["name"]
    )
    spec = deployment["spec"]["template"]["spec"]
    return spec["containers"][0], int(spec["terminationGracePeriodSeconds"])


def test_as_the_chart_runs_it(
    built: None, archive_dir: Path, tmp_path: Path, containers: list[str], torchserve: Any
) -> None:
    container, grace = chart_container(tool("HELM", ".tools/bin/helm"))
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsUser"] == sc["runAsGroup"] == 10001
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False
    models = readable_copy(archive_dir, tmp_path / "models" / "current").parent
    env = [a for e in container.get("env", []) if "value" in e for a in ("-e", f"{e['name']}={e['value']}")]
    ports = {p["containerPort"]: free_ports(1)[0] for p in container["ports"]}
    publish = [a for inner, host in ports.items() for a in ("-p", f"127.0.0.1:{host}:{inner}")]
    name = f"rs-chart-{ports[8080]}"
    docker(
        "run", "-d", "--name", name, *publish, *env, "-v", f"{models}:/models:ro", *HARDENED,
        "--entrypoint", container["command"][0], SERVING, *container["args"],
        timeout=60,
    )  # fmt: skip
    containers.append(name)
    c = Running(name, f"http://127.0.0.1:{ports[8080]}")
    probe = container["readinessProbe"]["exec"]["command"]
    t0 = time.monotonic()
    while docker("exec", name, *probe, check=False, timeout=60).returncode != 0:
        assert time.monotonic() - t0 < READY_S, f"the readiness probe never passed:\n{c.logs()}"
        state = docker("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip()
        assert state == "true", f"{name} exited:\n{c.logs()}"
        time.sleep(2)
    cold = time.monotonic() - t0
    live = container["livenessProbe"]["httpGet"]
    port = (
        live["port"]
        if isinstance(live["port"], int)
        else next(p["containerPort"] for p in container["ports"] if p.get("name") == live["port"])
    )
    assert requests.get(f"http://127.0.0.1:{ports[port]}{live['path']}", timeout=10).status_code == 200
    photo = EXAMPLE.read_bytes()
    headers = {"Content-Type": "image/jpeg"}
    ours = requests.post(f"{c.url}/predictions/resnet50", data=photo, headers=headers, timeout=60)
    host = requests.post(torchserve.predict_url, data=photo, headers=headers, timeout=60)
    assert ours.status_code == host.status_code == 200, (ours.text[:300], host.text[:300])
    mine, theirs = ours.json(), host.json()
    assert [p["index"] for p in mine["predictions"]] == [p["index"] for p in theirs["predictions"]]
    pairs = zip(mine["predictions"], theirs["predictions"], strict=True)
    assert all(abs(a["score"] - b["score"]) <= 1e-4 for a, b in pairs), (mine, theirs)
    for metrics_port in (8082, 8083):
        r = requests.get(f"http://127.0.0.1:{ports[metrics_port]}/metrics", timeout=10)
        assert r.status_code == 200 and "# TYPE" in r.text, metrics_port
    took = c.stop_seconds(grace)
    assert took < grace, f"SIGTERM took {took:.0f} s, beyond the chart's {grace} s:\n{c.logs()}"
    worst = max(abs(a["score"] - b["score"]) for a, b in zip(mine["predictions"], theirs["predictions"], strict=True))
    top = ", ".join(f"{p['label']} {p['score']:.4f}" for p in mine["predictions"][:2])
    report(
        f"serving image as the chart runs it (read-only root, UID/GID 10001, no capabilities): ready after "
        f"{cold:.1f} s, SIGTERM to exit {took:.1f} s; same {len(mine['predictions'])} classes in the same order as "
        f"serve on the host ({top}), largest score difference {worst:.1e}"
    )


# ---- the operator image --------------------------------------------------------------------------------------
def test_operator_image_says_it_has_no_cluster(built: None) -> None:
    args = ("operator", "--standalone", "--namespace", "default")
    proc = docker("run", "--rm", *HARDENED, OPERATOR, *args, timeout=180, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    assert "no Kubernetes cluster to talk to" in out, out[-2000:]


# ---- what the images are -------------------------------------------------------------------------------------
def test_images_run_as_10001_with_their_labels(built: None) -> None:
    for image in (SERVING, OPERATOR):
        cfg = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", image).stdout)
        assert cfg["User"] == "10001:10001", image
        labels = cfg["Labels"]
        assert labels["org.opencontainers.image.version"] == __version__, labels
        assert labels["org.opencontainers.image.revision"] not in ("", "unknown"), labels
    size = int(docker("image", "inspect", "-f", "{{.Size}}", SERVING).stdout)
    layers = len(json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", SERVING).stdout))
    operator = int(docker("image", "inspect", "-f", "{{.Size}}", OPERATOR).stdout)
    report(f"serving image: {size / 1e9:.2f} GB in {layers} layers; operator image: {operator / 1e6:.0f} MB")


# ---- a registry ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry (the CNCF distribution registry) on loopback, storing under a temp directory."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("no docker-registry binary (Debian's docker-registry package; .ci/docker-engine.sh installs it)")
    root = tmp_path_factory.mktemp("registry")
    (port,) = free_ports(1)
    config = root / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}"},
                "log": {"level": "warn"},
            }
        )
    )
    log = open(root / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (root / "registry.log").read_text()
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(root / "data", ignore_errors=True)  # the pushed layers: gigabytes nothing reads again


def test_push_pull_by_digest_and_the_chart_renders_it(built: None, registry: str) -> None:
    """Both images pushed to a real registry, pulled back by digest (the same image), and the chart's
    `image.digest` / `operator.image.digest` render exactly those references."""
    digests = {}
    for image, name in ((SERVING, "resnet-serving"), (OPERATOR, "resnet-serving-operator")):
        remote = f"{registry}/{name}:{__version__}"
        docker("tag", image, remote)
        docker("push", remote, timeout=1800)
        ref = docker("image", "inspect", "-f", "{{index .RepoDigests 0}}", remote).stdout.strip()
        assert ref.startswith(f"{registry}/{name}@sha256:"), ref
        local_id = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
        docker("rmi", remote)
        docker("pull", ref, timeout=600)
        assert docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip() == local_id, ref
        digests[name] = ref.split("@", 1)[1]
        docker("rmi", ref, check=False)
    out = subprocess.run(
        [
            tool("HELM", ".tools/bin/helm"), "template", "resnet50-serving", str(REPO / "charts" / "resnet50-serving"),
            *account_args(),
            "--set", f"image.repository={registry}/resnet-serving",
            "--set", f"image.digest={digests['resnet-serving']}",
            "--set", "operator.enabled=true",
            "--set", f"operator.image.repository={registry}/resnet-serving-operator",
            "--set", f"operator.image.digest={digests['resnet-serving-operator']}",
        ],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    images = {
        c["image"]
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"].get("initContainers", [])
    }
    assert images == {
        f"{registry}/resnet-serving@{digests['resnet-serving']}",
        f"{registry}/resnet-serving-operator@{digests['resnet-serving-operator']}",
    }, images
    report(f"pushed and pulled by digest: {digests}")
