"""One owner per shared name (issue 25): the copies that cannot import their Python owner are held equal to it.

Python imports each name from its owner; what is written in YAML, a Makefile, a Dockerfile, shell or a
synthesized template is read here and compared with that owner. The chart's templates are checked through
``k8s/rendered/`` (the chart rendered with its defaults and each example values file, which
tests/chart/test_k8s_manifests.py keeps equal to the chart) and, for the lines no values file renders, in
their source.
"""

from __future__ import annotations

import ast
import fnmatch
import itertools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from resnet_serving import ports
from tests.helpers import REPO

CHART = REPO / "charts" / "resnet50-serving"
RENDERED = REPO / "k8s" / "rendered"
DOCKER = REPO / "docker"


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return values


def rendered() -> dict[str, list[dict[str, Any]]]:
    found = {p.stem: yaml_docs(p) for p in sorted(RENDERED.glob("*.yaml"))}
    assert {"default", "prod"} <= set(found)
    return found


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def serving_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "torchserve"]
    return container


def flag_values(args: list[str]) -> dict[str, str]:
    return {flag: value for flag, value in itertools.pairwise(args) if flag.startswith("--")}


# ---- TCP ports: resnet_serving.ports ---------------------------------------------------------------------
SERVE_PORTS = {
    "--port": ports.INFERENCE_PORT,
    "--management-port": ports.MANAGEMENT_PORT,
    "--metrics-port": ports.METRICS_PORT,
    "--model-metrics-port": ports.MODEL_METRICS_PORT,
}


def test_the_chart_serves_on_the_owned_ports() -> None:
    for name, docs in rendered().items():
        container = serving_container(docs)
        flags = flag_values(container["args"])
        assert {flag: int(flags[flag]) for flag in SERVE_PORTS} == SERVE_PORTS, name
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
            "http": ports.INFERENCE_PORT,
            "metrics": ports.METRICS_PORT,
            "model-metrics": ports.MODEL_METRICS_PORT,
        }, name
        for probe in ("startupProbe", "readinessProbe"):
            command = container[probe]["exec"]["command"]
            assert flag_values(command)["--url"] == ports.loopback_url(ports.INFERENCE_PORT), (name, probe)
        for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
            opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
            assert opened <= {ports.INFERENCE_PORT, ports.METRICS_PORT, ports.MODEL_METRICS_PORT}, name
    metrics = one(rendered()["prod"], "Service", "resnet50-serving-metrics")
    assert sorted(p["port"] for p in metrics["spec"]["ports"]) == [ports.METRICS_PORT, ports.MODEL_METRICS_PORT]


def test_every_port_the_chart_templates_spell_out_is_an_owned_one() -> None:
    """The templates' literal ports, including those of templates no values file renders."""
    owned = {ports.INFERENCE_PORT, ports.MANAGEMENT_PORT, ports.METRICS_PORT, ports.MODEL_METRICS_PORT}
    literal = re.compile(r"(?:\bport:|containerPort:|127\.0\.0\.1:)\s*(\d+)\b|--[a-z-]*port\n\s*- \"(\d+)\"")
    found: set[int] = set()
    for path in sorted(p for p in (CHART / "templates").rglob("*") if p.is_file()):
        for match in literal.finditer(path.read_text(encoding="utf-8")):
            found.add(int(match.group(1) or match.group(2)))
    assert found == owned


def test_the_operator_listens_on_the_owned_port() -> None:
    from resnet_serving.controller.config import DEFAULT_METRICS_PORT

    assert chart_values()["operator"]["metricsPort"] == ports.OPERATOR_METRICS_PORT == DEFAULT_METRICS_PORT


def test_make_serve_uses_the_owned_ports() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    defaults = {m[1]: int(m[2]) for m in re.finditer(r"^([A-Z_]*PORT) \?= (\d+)$", makefile, re.M)}
    assert defaults == {
        "PORT": ports.INFERENCE_PORT,
        "MANAGEMENT_PORT": ports.MANAGEMENT_PORT,
        "METRICS_PORT": ports.METRICS_PORT,
        "MODEL_METRICS_PORT": ports.MODEL_METRICS_PORT,
        "GRPC_PORT": ports.GRPC_INFERENCE_PORT,
        "GRPC_MANAGEMENT_PORT": ports.GRPC_MANAGEMENT_PORT,
    }


def test_the_serving_image_exposes_and_binds_the_owned_ports() -> None:
    dockerfile = (DOCKER / "Dockerfile.serving").read_text(encoding="utf-8")
    (exposed,) = re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)
    owned = [ports.INFERENCE_PORT, ports.METRICS_PORT, ports.MODEL_METRICS_PORT]
    assert sorted(int(p) for p in exposed.split()) == owned
    entrypoint = (DOCKER / "entrypoint.sh").read_text(encoding="utf-8")
    assert re.findall(r"--port \"\$\{SAGEMAKER_BIND_TO_PORT:-(\d+)\}\"", entrypoint) == [str(ports.INFERENCE_PORT)]
    assert "EXPOSE" not in (DOCKER / "Dockerfile.operator").read_text(encoding="utf-8")


# ---- store keys: resnet_serving.store ---------------------------------------------------------------------
def publisher_deletes() -> set[str]:
    """The key patterns, relative to the store prefix, that infra/'s publisher role may delete."""
    infra = REPO / "infra"
    prefix = json.loads((infra / "config.json").read_text(encoding="utf-8"))["store"]["prefix"]
    template = json.loads((infra / "templates" / "resnet-serving-roles.json").read_text(encoding="utf-8"))
    (policy,) = [r for n, r in template["Resources"].items() if n.startswith("PublisherDefaultPolicy")]
    found = set()
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        if "s3:DeleteObject" in statement["Action"]:
            tail = statement["Resource"]["Fn::Join"][1][-1]
            assert tail.startswith(f"/{prefix}/"), tail
            found.add(tail.removeprefix(f"/{prefix}/"))
    return found


def test_the_publisher_may_delete_exactly_the_keys_the_store_deletes() -> None:
    from resnet_serving.store import (
        DELETABLE_KEY_PATTERNS,
        archive_key,
        channel_key,
        manifest_key,
        tarball_key,
    )
    from resnet_serving.store.s3 import temp_key

    assert publisher_deletes() == set(DELETABLE_KEY_PATTERNS)

    def deletable(key: str) -> bool:  # IAM's `*` spans `/`, as fnmatch's does
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in DELETABLE_KEY_PATTERNS)

    kept = [archive_key("resnet50", "3"), channel_key("resnet50", "stable"), tarball_key("resnet50", "3")]
    assert not any(deletable(key) for key in kept)
    assert deletable(manifest_key("resnet50", "3"))  # push --force hides the version first
    assert all(deletable(temp_key(key)) for key in [*kept, manifest_key("resnet50", "3")])


def deployer_patterns(sid: str) -> set[str]:
    """The key patterns, relative to the store prefix, of one statement of infra/'s SageMaker deployer role."""
    infra = REPO / "infra"
    prefix = json.loads((infra / "config.json").read_text(encoding="utf-8"))["store"]["prefix"]
    template = json.loads((infra / "templates" / "resnet-serving-roles.json").read_text(encoding="utf-8"))
    (policy,) = [r for n, r in template["Resources"].items() if n.startswith("SageMakerDeployerDefaultPolicy")]
    (statement,) = [st for st in policy["Properties"]["PolicyDocument"]["Statement"] if st.get("Sid") == sid]
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    tails = [r["Fn::Join"][1][-1] for r in resources]
    assert all(t.startswith(f"/{prefix}/") for t in tails), tails
    return {t.removeprefix(f"/{prefix}/") for t in tails}


def test_the_sagemaker_deployer_reaches_exactly_the_keys_deploy_uses() -> None:
    """The deployer's key patterns (written in infra/resnet_infra/roles.py) match the store's own keys for what
    `sagemaker deploy` reads (a channel, a manifest, the archive) and writes (model.tar.gz via a temp key), and
    nothing it must not write."""
    from resnet_serving.store import archive_key, channel_key, manifest_key, tarball_key
    from resnet_serving.store.s3 import temp_key

    def matches(key: str, sid: str) -> bool:  # IAM's `*` spans `/`, as fnmatch's does
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in deployer_patterns(sid))

    reads = [channel_key("resnet50", "stable"), manifest_key("resnet50", "3"), archive_key("resnet50", "3"),
             tarball_key("resnet50", "3")]  # fmt: skip
    assert all(matches(key, "ReadVersionsToPack") for key in reads), reads
    tarball = tarball_key("resnet50", "3")
    assert matches(tarball, "WriteModelTarballs") and matches(temp_key(tarball), "WriteModelTarballs")
    assert matches(temp_key(tarball), "RemoveItsOwnTempKeys") and not matches(tarball, "RemoveItsOwnTempKeys")
    never = [archive_key("resnet50", "3"), manifest_key("resnet50", "3"), channel_key("resnet50", "stable")]
    assert not any(matches(key, "WriteModelTarballs") for key in never)


def test_make_archive_writes_the_owned_archive_name() -> None:
    from resnet_serving.artifact.layout import ARCHIVE_NAME

    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    (target,) = re.findall(r"^\t@test -f \$\(STORE\)/resnet50/\$\(VERSION\)/(\S+) \|\|", makefile, re.M)
    assert target == ARCHIVE_NAME


# ---- batching defaults: resnet_serving.torchserve.config ------------------------------------------------
def test_one_set_of_batching_defaults_for_serve_sync_and_the_chart(tmp_path: Path) -> None:
    from resnet_serving.sync.loop import Syncer
    from resnet_serving.torchserve.config import BATCH_SIZE, MAX_BATCH_DELAY_MS, RESPONSE_TIMEOUT_S, ServeConfig

    cfg = ServeConfig(model_store=tmp_path, workers=1)
    assert (cfg.batch_size, cfg.max_batch_delay_ms, cfg.response_timeout_s) == (
        BATCH_SIZE,
        MAX_BATCH_DELAY_MS,
        RESPONSE_TIMEOUT_S,
    )
    syncer = Syncer(None, None, channel="stable", model_store=tmp_path, inference_url="http://127.0.0.1:1")
    first = syncer.defaults  # what sync registers when nothing is registered yet
    assert (first.batch_size, first.max_batch_delay_ms, first.response_timeout_s) == (
        BATCH_SIZE,
        MAX_BATCH_DELAY_MS,
        RESPONSE_TIMEOUT_S,
    )
    torchserve = chart_values()["torchserve"]
    assert (torchserve["batchSize"], torchserve["maxBatchDelayMs"]) == (BATCH_SIZE, MAX_BATCH_DELAY_MS)


# ---- the default channel: resnet_serving.store.DEFAULT_CHANNEL ------------------------------------------
def test_the_chart_and_the_channel_example_follow_the_channel_promote_moves() -> None:
    from resnet_serving.settings import ENV_CHANNEL
    from resnet_serving.store import DEFAULT_CHANNEL

    assert chart_values()["model"]["channel"] == DEFAULT_CHANNEL
    (example,) = yaml_docs(REPO / "k8s" / "examples" / "modeldeployment-channel.yaml")
    assert example["spec"]["channel"] == DEFAULT_CHANNEL  # its comment: `promote --version N` rolls it out
    for name, docs in rendered().items():
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        (fetch,) = deployment["spec"]["template"]["spec"]["initContainers"]
        env = {e["name"]: e.get("value") for e in fetch["env"]}
        values = {} if name == "default" else yaml.safe_load((REPO / "k8s" / "values" / f"{name}.yaml").read_text())
        assert env[ENV_CHANNEL] == values.get("model", {}).get("channel", DEFAULT_CHANNEL), name


# ---- the operator's API group: resnet_serving.controller.spec.GROUP --------------------------------------
def test_the_chart_and_k8s_name_the_operators_api_group() -> None:
    from resnet_serving.controller.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION, VERSION_ANNOTATION

    for crds in (CHART / "crds", RENDERED / "crds"):
        (crd,) = yaml_docs(crds / f"{PLURAL}.{GROUP}.yaml")
        assert (crd["metadata"]["name"], crd["spec"]["group"]) == (f"{PLURAL}.{GROUP}", GROUP)
        assert crd["spec"]["names"]["kind"] == KIND and VERSION in [v["name"] for v in crd["spec"]["versions"]]
    rbac = (CHART / "templates" / "operator-rbac.yaml").read_text(encoding="utf-8")
    groups = {g for line in re.findall(r"apiGroups: \[(.*)\]", rbac) for g in re.findall(r'"([^"]*)"', line)}
    assert {g for g in groups if g not in ("", "apps", "kopf.dev")} == {GROUP}
    notes = (CHART / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    assert re.findall(rf"apiVersion: (\S+)\n\s*kind: {KIND}\n", notes) == [API_VERSION]
    examples = [d for p in sorted((REPO / "k8s" / "examples").glob("*.yaml")) for d in yaml_docs(p)]
    assert len(examples) >= 2 and all(d["apiVersion"] == API_VERSION for d in examples if d["kind"] == KIND)
    # the pod-template annotation the operator patches, rendered by the chart
    for name, docs in rendered().items():
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        assert VERSION_ANNOTATION in deployment["spec"]["template"]["metadata"]["annotations"], name
    template = (CHART / "templates" / "deployment.yaml").read_text(encoding="utf-8")
    assert re.findall(r'"?([a-z0-9.-]+)/model-version', template) == [GROUP, GROUP]


# ---- environment-variable names: resnet_serving.settings (and controller/config.py for the operator's) ----
#: Messages that still spell a variable out, in inference/ (left to the change that reads settings once per
#: worker, which owns those files). Remove a file here when its messages use settings.env_name.
SPELLED_OUT_YET: set[str] = set()


def test_messages_name_environment_variables_through_their_owner() -> None:
    """No string in the package spells ``RESNET_SERVING_…`` except where the names are defined; documentation
    strings (docstrings, attribute docstrings) are prose and may."""
    src = REPO / "src" / "resnet_serving"
    owners = {"settings.py", "controller/config.py"}
    spelled = set()
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
                if "RESNET_SERVING_" in node.value:
                    spelled.add(str(path.relative_to(src)))
    assert spelled - owners == SPELLED_OUT_YET


# ---- the store-URI grammar: resnet_serving.store.parse_store_uri -----------------------------------------
def test_no_module_outside_the_store_tells_store_uris_apart_by_their_prefix() -> None:
    src = REPO / "src" / "resnet_serving"
    prefix_checks = re.compile(r"""startswith\(\s*["'](s3|file)://""")
    found = [
        str(p.relative_to(src))
        for p in sorted(src.rglob("*.py"))
        if p.parent.name != "store" and prefix_checks.search(p.read_text(encoding="utf-8"))
    ]
    assert found == []
