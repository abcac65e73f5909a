"""The ModelDeployment the chart renders with `operator.enabled` (values `operator.modelDeployment`).

Its store, model and init container must be the ones the Deployment's fetch init container reads (the operator
refuses a target that reads another store), it must pass the CRD's schema and CEL rules as the API server would
apply them (tests/helpers/chart.py crd_admission_errors, the check the examples get), and the values that would
break those rules must fail the render naming the value.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from resnet_serving import MODEL_NAME
from resnet_serving.controller.spec import parse_spec
from resnet_serving.settings import ENV_STORE, ENV_VERSION
from resnet_serving.store import DEFAULT_CHANNEL
from tests.helpers.chart import (
    CHART,
    FRESH_CLUSTER_APIS,
    MODELDEPLOYMENT_API,
    MODELDEPLOYMENT_CRD,
    MODELDEPLOYMENT_SCHEMA,
    NAMESPACE,
    RELEASE,
    VARIANTS,
    Helm,
    account_args,
    container,
    crd_admission_errors,
    deployment,
    find,
    modeldeployment_schema,
    one,
    run,
)

KIND = "ModelDeployment"
ON = ["operator.enabled=true"]
PIN = [*ON, "operator.modelDeployment.version=3", "operator.modelDeployment.channel="]


@pytest.fixture(scope="module")
def crd_schema() -> dict[str, Any]:
    (version,) = yaml.safe_load(MODELDEPLOYMENT_CRD.read_text())["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def _env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def _fetch(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return container(deployment(docs)["spec"]["template"]["spec"], name, init=True)


def _fails(helm: Helm, sets: list[str], *words: str) -> None:
    proc = run(helm.template_cmd([], sets=sets))
    assert proc.returncode != 0, f"rendered with {sets}"
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


# ---- rendered, and what it names is what the Deployment reads ------------------------------------------------
def test_the_operator_gets_a_modeldeployment_for_the_releases_deployment(helm: Helm) -> None:
    docs = helm.template([], sets=ON)
    md = one(docs, KIND)
    dep = deployment(docs)
    spec = md["spec"]
    assert md["metadata"] == {**md["metadata"], "name": RELEASE, "namespace": NAMESPACE}
    assert spec["deployment"] == dep["metadata"]["name"]
    fetch = _fetch(docs, spec["container"])
    env = _env(fetch)
    assert ENV_VERSION in env  # the container the operator patches
    assert spec["store"] == env[ENV_STORE] != ""
    assert spec["model"] == MODEL_NAME
    assert spec["channel"] == DEFAULT_CHANNEL and "version" not in spec
    assert "endpointUrl" not in spec and "sagemakerEndpoint" not in spec


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_store_follows_model_store_in_every_variant(helm: Helm, variant: str) -> None:
    """Another store, another endpoint: both still agree with the fetch init container's."""
    store, endpoint = "s3://other-models.example/team/store", "http://minio.models.svc:9000"
    docs = helm.template(VARIANTS[variant], sets=[*ON, f"model.store={store}", f"model.endpointUrl={endpoint}"])
    spec = one(docs, KIND)["spec"]
    env = _env(_fetch(docs, spec["container"]))
    assert spec["store"] == env[ENV_STORE] == store
    assert spec["endpointUrl"] == env["AWS_ENDPOINT_URL"] == endpoint


def test_every_value_reaches_the_spec(helm: Helm) -> None:
    docs = helm.template(
        [],
        sets=[
            *PIN,
            "operator.modelDeployment.name=resnet50-pinned",
            "operator.modelDeployment.pollInterval=1h30m",
            "operator.modelDeployment.rolloutTimeout=45m",
            "operator.modelDeployment.sagemakerEndpoint=resnet50",
        ],
    )
    md = one(docs, KIND)
    assert md["metadata"]["name"] == "resnet50-pinned"
    assert {k: md["spec"][k] for k in ("version", "pollInterval", "rolloutTimeout", "sagemakerEndpoint")} == {
        "version": "3",
        "pollInterval": "1h30m",
        "rolloutTimeout": "45m",
        "sagemakerEndpoint": "resnet50",
    }
    assert "channel" not in md["spec"]
    assert md["spec"]["deployment"] == RELEASE  # the name value renames the ModelDeployment only


def test_the_defaults_are_the_examples_and_the_stores_default_channel() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]["modelDeployment"]
    example = yaml.safe_load((CHART.parents[1] / "k8s" / "examples" / "modeldeployment-channel.yaml").read_text())
    assert values["create"] is True and values["version"] == "" and values["channel"] == DEFAULT_CHANNEL
    assert (values["pollInterval"], values["rolloutTimeout"]) == (
        example["spec"]["pollInterval"],
        example["spec"]["rolloutTimeout"],
    )


# ---- what is not rendered ------------------------------------------------------------------------------------
def test_operator_disabled_renders_no_modeldeployment(helm: Helm) -> None:
    assert not find(helm.template([]), KIND)
    assert not find(helm.template([], sets=["operator.modelDeployment.create=true"]), KIND)


def test_create_false_renders_none(helm: Helm) -> None:
    docs = helm.template([], sets=[*ON, "operator.modelDeployment.create=false"])
    assert not find(docs, KIND)
    assert find(docs, "Deployment", f"{RELEASE}-operator")  # the operator itself stays


def test_a_cluster_without_the_crd_gets_none_and_the_notes_say_so(helm: Helm) -> None:
    assert not find(helm.template([], sets=ON, api_versions=FRESH_CLUSTER_APIS), KIND)
    # `helm install --dry-run=client` installs no CRD: the release notes name the skipped kind and the fix
    cmd = [helm.binary, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", *account_args()]
    proc = run([*cmd, "--set", "operator.enabled=true"])
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    skipped = "SKIPPED: the ModelDeployment (operator.modelDeployment.create): the cluster has no"
    assert f"{skipped} {MODELDEPLOYMENT_API}" in notes
    assert "kubectl apply --server-side -f charts/resnet50-serving/crds/" in notes


# ---- exactly one of channel and version ----------------------------------------------------------------------
def test_pinning_without_clearing_the_channel_fails_naming_both(helm: Helm) -> None:
    _fails(
        helm,
        [*ON, "operator.modelDeployment.version=3"],
        'operator.modelDeployment: set exactly one of channel (now "stable") and version (now "3")',
        'pin a version with channel=""',
    )


def test_neither_channel_nor_version_fails(helm: Helm) -> None:
    _fails(helm, [*ON, "operator.modelDeployment.channel="], 'channel (now "") and version (now "")')


def test_a_pin_renders_the_version_alone(helm: Helm) -> None:
    spec = one(helm.template([], sets=PIN), KIND)["spec"]
    assert spec["version"] == "3" and "channel" not in spec


# ---- the CRD's rules, before the API server applies them -----------------------------------------------------
@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["operator.modelDeployment.pollInterval=5s"], 'operator.modelDeployment.pollInterval ("5s") must be between'),
        (["operator.modelDeployment.pollInterval=25h"], 'modelDeployment.pollInterval ("25h") must be between'),
        (["operator.modelDeployment.rolloutTimeout=59s"], 'operator.modelDeployment.rolloutTimeout ("59s") must be'),
        (["model.store=file://models"], 'model.store ("file://models") is not a store the ModelDeployment accepts'),
        (["model.store=s3://Models/store"], 'model.store ("s3://Models/store") is not a store the ModelDeployment'),
        (["operator.modelDeployment.pollInterval=1d"], "operator/modelDeployment/pollInterval"),
        (["operator.modelDeployment.channel=Stable"], "operator/modelDeployment/channel"),
        (["operator.modelDeployment.version=latest", "operator.modelDeployment.channel="], "modelDeployment/version"),
        (["operator.modelDeployment.sagemakerEndpoint=-bad"], "operator/modelDeployment/sagemakerEndpoint"),
        (["operator.modelDeployment.suspend=true"], "modelDeployment"),
    ],
)
def test_values_the_crd_would_reject_fail_the_render(helm: Helm, sets: list[str], words: str) -> None:
    _fails(helm, [*ON, *sets], words)


@pytest.mark.parametrize(
    "sets",
    [
        ON,
        PIN,
        [*ON, "operator.modelDeployment.pollInterval=24h", "operator.modelDeployment.rolloutTimeout=1m"],
        [*ON, "operator.modelDeployment.pollInterval=10s", "model.endpointUrl=http://minio:9000"],
        [*ON, "operator.modelDeployment.sagemakerEndpoint=resnet50", "model.store=s3://models.example-1/a/b"],
    ],
    ids=["channel", "pinned", "bounds-high", "bounds-low-minio", "sagemaker-dotted-bucket"],
)
def test_the_rendered_object_passes_the_crds_schema_and_cel_rules(
    helm: Helm, crd_schema: dict[str, Any], sets: list[str]
) -> None:
    md = one(helm.template([], sets=sets), KIND)
    assert crd_admission_errors(crd_schema, md) == []
    assert crd_admission_errors(crd_schema, md, old=md) == []  # a `helm upgrade` with the same values
    parse_spec(md["spec"])  # and the operator's own parser agrees


def test_the_admission_check_rejects_a_broken_render(helm: Helm, crd_schema: dict[str, Any]) -> None:
    """A control: the same check fails on what a broken template would render, so the test above means something."""
    md = one(helm.template([], sets=ON), KIND)
    both = copy.deepcopy(md)
    both["spec"]["version"] = "3"
    assert "set exactly one of spec.channel (follow a channel) and spec.version (pin a version)" in (
        crd_admission_errors(crd_schema, both)
    )
    fast = copy.deepcopy(md)
    fast["spec"]["pollInterval"] = "5s"
    assert "pollInterval must be between 10s and 24h" in crd_admission_errors(crd_schema, fast)
    moved = copy.deepcopy(md)
    moved["spec"]["deployment"] = "other"
    assert any("immutable" in e for e in crd_admission_errors(crd_schema, moved, old=md))


def test_the_validation_schema_is_generated_from_the_crd() -> None:
    """tests/chart/test_chart_validate.py checks every variant against MODELDEPLOYMENT_SCHEMA: it must be the CRD's."""
    assert json.loads(MODELDEPLOYMENT_SCHEMA.read_text()) == modeldeployment_schema(), (
        f"{MODELDEPLOYMENT_SCHEMA.name} drifted from the CRD: run "
        "`.venv/bin/python -c 'from tests.helpers.chart import write_modeldeployment_schema as w; w()'`"
    )


# ---- the operator may read and patch it ---------------------------------------------------------------------
def test_the_operators_role_covers_the_modeldeployment_and_its_deployment(helm: Helm) -> None:
    docs = helm.template([], sets=[*ON, "operator.modelDeployment.name=resnet50-main"])
    md = one(docs, KIND)
    role = one(docs, "Role", f"{RELEASE}-operator")
    assert role["metadata"]["namespace"] == md["metadata"]["namespace"]

    def allowed(group: str, resource: str, verb: str, name: str) -> bool:
        return any(
            group in r["apiGroups"]
            and resource in r["resources"]
            and verb in r["verbs"]
            and (not r.get("resourceNames") or name in r["resourceNames"])
            for r in role["rules"]
        )

    for verb in ("list", "watch", "patch"):
        assert allowed("resnet-serving.io", "modeldeployments", verb, md["metadata"]["name"]), verb
    assert allowed("resnet-serving.io", "modeldeployments/status", "patch", md["metadata"]["name"])
    for verb in ("get", "patch"):
        assert allowed("apps", "deployments", verb, md["spec"]["deployment"]), verb
