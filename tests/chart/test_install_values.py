"""What `helm install -f k8s/values/<overlay>.yaml` needs from the cluster and from the user (issue #28).

* The chart never renders a kind the cluster lacks: a CRD-defined object (ServiceMonitor, PrometheusRule, KEDA
  ScaledObject, KopfPeering) renders only where the cluster serves it, and the release notes say what was skipped.
* No placeholder account remains in an overlay: what only the user's account can give is left empty, listed in
  requiredValues, and a missing one fails the render naming it and where it comes from.
* The Deployment's progressDeadlineSeconds outlasts the startup probe's budget, so a slow but healthy rollout is
  never reported failed (the operator rolls ProgressDeadlineExceeded back).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_serving.plan import limits as capacity
from tests.helpers.chart import (
    ACCOUNT_VALUES,
    ADD_ON_APIS,
    CHART,
    CLUSTER_APIS,
    EXAMPLE_ACCOUNT,
    EXAMPLE_VALUES,
    FRESH_CLUSTER_APIS,
    K8S,
    NAMESPACE,
    RELEASE,
    VARIANTS,
    Helm,
    account_args,
    deployment,
    find,
    one,
    required_paths,
    run,
)

Docs = list[dict[str, Any]]
PROD = [EXAMPLE_VALUES["prod"]]
# The API groups a cluster serves without any CRD (the groups the chart's core objects use).
CORE_GROUPS = {"", "apps", "autoscaling", "policy", "batch"}


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _is_core(api_version: str) -> bool:
    group = _group(api_version)
    return group in CORE_GROUPS or group.endswith(".k8s.io")


def _notes(helm: Helm, values: list[Path], *sets: str) -> str:
    """The release notes `helm install --dry-run=client` prints: its capabilities are a fresh cluster's (no CRD;
    `helm install` has no --api-versions, and `helm template` prints no notes)."""
    cmd = [helm.binary, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
    for v in values:
        cmd += ["-f", str(v)]
    proc = run([*cmd, *account_args(values), *(a for s in sets for a in ("--set", s))])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


# ---- 3. a fresh cluster: no CRD-defined kind, and the notes say what was skipped --------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_fresh_eks_cluster_gets_no_kind_it_lacks(helm: Helm, variant: str) -> None:
    docs = helm.template(VARIANTS[variant], api_versions=FRESH_CLUSTER_APIS)
    lacking = sorted({f"{d['apiVersion']} {d['kind']}" for d in docs if not _is_core(d["apiVersion"])})
    assert not lacking, f"{variant}: renders kinds a fresh cluster lacks: {lacking}"


def test_every_crd_kind_the_chart_renders_is_gated(rendered: dict[str, Docs]) -> None:
    """The variants (a cluster with every add-on) render each CRD-defined kind the chart knows; each one is
    in resnet50-serving.crdAPIs and in CLUSTER_APIS, so the gate above is what removed it."""
    crd_kinds = {f"{d['apiVersion']}/{d['kind']}" for docs in rendered.values() for d in docs}
    crd_kinds = {k for k in crd_kinds if not _is_core(k.rsplit("/", 1)[0])}
    assert crd_kinds == set(CLUSTER_APIS), crd_kinds
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert all(f'"{api}"' in helpers for api in CLUSTER_APIS)


def test_prod_on_a_fresh_cluster_installs_without_monitoring_and_says_so(helm: Helm) -> None:
    docs = helm.template(PROD, api_versions=FRESH_CLUSTER_APIS)
    assert not find(docs, "ServiceMonitor") and not find(docs, "PrometheusRule")
    assert deployment(docs) and find(docs, "HorizontalPodAutoscaler") and find(docs, "Ingress")
    notes = _notes(helm, PROD)
    assert "SKIPPED: the ServiceMonitor:" in notes and "SKIPPED: the PrometheusRule" in notes
    assert "monitoring.coreos.com/v1/ServiceMonitor" in notes and "monitoring.coreos.com/v1/PrometheusRule" in notes
    assert notes.count("kube-prometheus-stack") == 2 and "helm upgrade" in notes
    # prod's HPA scales on a Pods metric too, which has no series without the scrape
    assert "never scales down" in notes


def test_prod_with_the_monitoring_stack_renders_it(helm: Helm) -> None:
    docs = helm.template(PROD, api_versions=CLUSTER_APIS)
    assert len(find(docs, "ServiceMonitor")) == 1 and len(find(docs, "PrometheusRule")) == 1


def test_notes_skip_nothing_the_values_do_not_ask_for(helm: Helm) -> None:
    """A control for the SKIPPED lines: only what the values turn on is named (saturation needs the scrape)."""
    saturation = "autoscaling.saturation.enabled=false"
    off = ["metrics.serviceMonitor.enabled=false", "metrics.prometheusRule.enabled=false", saturation]
    assert "SKIPPED" not in _notes(helm, PROD, *off)
    notes = _notes(helm, PROD, off[0], saturation)
    assert "SKIPPED: the PrometheusRule" in notes and "SKIPPED: the ServiceMonitor" not in notes
    assert "SKIPPED: the HPA's Pods metrics" not in notes


# ---- the HPA's Pods metrics need the custom metrics API (the Prometheus adapter) ---------------------------------
def _hpa_metrics(docs: Docs) -> list[str]:
    metrics = one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    return [m["resource"]["name"] if m["type"] == "Resource" else m["pods"]["metric"]["name"] for m in metrics]


@pytest.mark.parametrize("variant", ["prod", "full"])
def test_pods_metrics_render_only_where_the_adapter_serves_them(helm: Helm, variant: str) -> None:
    """An HPA that cannot read one of its metrics never scales down: without custom.metrics.k8s.io the HPA scales on
    CPU alone, with the same bounds; the adapter rule still renders, since installing the adapter needs it."""
    values = VARIANTS[variant]
    with_adapter = helm.template(values, api_versions=ADD_ON_APIS)
    without = helm.template(values, api_versions=CLUSTER_APIS)
    assert "resnet_serving_saturation" in _hpa_metrics(with_adapter)
    assert _hpa_metrics(without) == ["cpu"]
    hpa, cpu_only = (
        one(with_adapter, "HorizontalPodAutoscaler")["spec"],
        one(without, "HorizontalPodAutoscaler")["spec"],
    )
    assert {k: v for k, v in hpa.items() if k != "metrics"} == {k: v for k, v in cpu_only.items() if k != "metrics"}
    assert hpa["metrics"][0] == cpu_only["metrics"][0]
    assert (
        find(without, "ConfigMap", f"{RELEASE}-adapter-rule")
        == find(with_adapter, "ConfigMap", f"{RELEASE}-adapter-rule")
        != []
    )
    assert _hpa_metrics(helm.template(values, api_versions=FRESH_CLUSTER_APIS)) == ["cpu"]


def test_prod_notes_say_the_hpa_runs_on_cpu_until_the_adapter_is_installed(helm: Helm) -> None:
    notes = _notes(helm, PROD)
    assert "SKIPPED: the HPA's Pods metrics (resnet_serving_saturation)" in notes
    assert "custom.metrics.k8s.io/v1beta1" in notes and "prometheus-adapter" in notes
    assert f"ConfigMap {RELEASE}-adapter-rule, key values.yaml" in notes
    eks = capacity.load().eks  # prod.yaml's replicas are the capacity file's (tests/unit/test_capacity_agrees.py)
    assert f"Scaling: HPA {eks.min_replicas}–{eks.max_replicas} pods on CPU (needs metrics-server)" in notes


# ---- the ALB: internal unless a value says otherwise ---------------------------------------------------------------
INTERNET = ["ingress.scheme=internet-facing"]


def test_an_internet_facing_alb_without_authentication_is_refused(helm: Helm) -> None:
    proc = run(helm.template_cmd(PROD, sets=INTERNET))
    assert proc.returncode != 0
    assert "ingress.scheme internet-facing with ingress.auth.type none" in proc.stderr, proc.stderr
    assert "ingress.allowUnauthenticatedInternet=true" in proc.stderr and "Private route to the EKS path" in proc.stderr


def test_an_internet_facing_alb_without_authentication_is_said_and_warned(helm: Helm) -> None:
    sets = [*INTERNET, "ingress.allowUnauthenticatedInternet=true"]
    ing = one(helm.template(PROD, sets=sets), "Ingress")
    assert ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    notes = _notes(helm, PROD, *sets)
    assert "WARNING: the ALB is internet-facing with no authentication" in notes
    assert "Private route to the EKS path" in notes


def test_an_internet_facing_alb_with_alb_authentication_needs_no_waiver(helm: Helm) -> None:
    """A control: the refusal and the warning are about auth.type none only."""
    cognito = [
        "ingress.auth.type=cognito",
        "ingress.auth.cognito.userPoolArn=arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_abc",
        "ingress.auth.cognito.userPoolClientId=client",
        "ingress.auth.cognito.userPoolDomain=auth.example.com",
    ]
    ing = one(helm.template(PROD, sets=[*INTERNET, *cognito]), "Ingress")
    assert ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert "WARNING: the ALB is internet-facing" not in _notes(helm, PROD, *INTERNET, *cognito)


def test_prod_notes_send_clients_through_the_private_route(helm: Helm) -> None:
    notes = _notes(helm, PROD)
    assert "The ALB is internal" in notes and "api.eks_integration in infra/config.json" in notes
    assert "WARNING: the ALB is internet-facing" not in notes


def test_keda_without_keda_runs_min_replicas_and_says_so(helm: Helm, variant_values: dict[str, Any]) -> None:
    docs = helm.template(VARIANTS["keda"], api_versions=FRESH_CLUSTER_APIS)
    assert not find(docs, "ScaledObject") and not find(docs, "HorizontalPodAutoscaler")
    assert deployment(docs)["spec"]["replicas"] == variant_values["keda"]["autoscaling"]["minReplicas"]
    assert "SKIPPED: the KEDA ScaledObject" in _notes(helm, VARIANTS["keda"])
    # with KEDA, the ScaledObject owns the replica count
    with_keda = helm.template(VARIANTS["keda"])
    assert find(with_keda, "ScaledObject") and "replicas" not in deployment(with_keda)["spec"]


def test_operator_without_its_crds_skips_the_peering_and_says_so(helm: Helm) -> None:
    sets = ["operator.enabled=true"]
    assert not find(helm.template([], sets=sets, api_versions=FRESH_CLUSTER_APIS), "KopfPeering")
    assert find(helm.template([], sets=sets), "KopfPeering")
    notes = _notes(helm, [], *sets)
    assert "SKIPPED: the operator's KopfPeering" in notes and "charts/resnet50-serving/crds/" in notes


# ---- 4. no placeholder account; a missing required value fails, naming it ----------------------------------------
@pytest.mark.parametrize("name", sorted(EXAMPLE_VALUES))
def test_overlays_carry_no_placeholder_account_values(name: str) -> None:
    text = EXAMPLE_VALUES[name].read_text()
    assert not re.search(r"\b\d{12}\b", text), f"{name}.yaml names an AWS account id"
    assert "example.com" not in text and "00000000-0000" not in text, name
    values = yaml.safe_load(text)
    for path in values["requiredValues"]:
        node: Any = values
        for key in (k.replace("\0", ".") for k in path.replace("\\.", "\0").split(".")):
            node = node.get(key, "") if isinstance(node, dict) else ""
        assert node in ("", []), f"{name}.yaml: {path} is required, so the overlay leaves it empty"


def test_overlays_require_what_only_an_account_gives() -> None:
    role = "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn"
    for name, path in EXAMPLE_VALUES.items():
        assert {"image.repository", "model.store", role} <= set(required_paths([path])), name
    alb = {"ingress.hosts", "ingress.https.certificateArn", "ingress.wafv2AclArn"}
    assert alb <= set(required_paths(PROD))
    assert set(required_paths(PROD)) == set(ACCOUNT_VALUES)


@pytest.mark.parametrize("variant", ["default", *sorted(EXAMPLE_VALUES)])
def test_each_missing_required_value_fails_naming_it_and_its_source(helm: Helm, variant: str) -> None:
    values = VARIANTS[variant]
    sources: dict[str, str] = {}
    for f in (CHART / "values.yaml", *values):
        sources.update(yaml.safe_load(f.read_text()).get("requiredValues") or {})
    given = account_args(values)
    assert given, variant
    for i in range(0, len(given), 2):
        path = given[i + 1].split("=", 1)[0]
        proc = run(helm.template_cmd(values, account=False) + given[:i] + given[i + 2 :])
        assert proc.returncode != 0, f"{variant}: renders without {path}"
        assert f"--set {path}=...  ({sources[path]})" in proc.stderr, proc.stderr
        others = [p for p in sources if p != path]
        assert not any(f"--set {p}=" in proc.stderr for p in others), proc.stderr
    # with none of them, every one is named at once
    proc = run(helm.template_cmd(values, account=False))
    assert proc.returncode != 0 and all(f"--set {p}=" in proc.stderr for p in sources), proc.stderr


def test_helm_install_of_prod_without_the_account_values_fails_naming_them(helm: Helm) -> None:
    cmd = [helm.binary, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", "-f", str(PROD[0])]
    proc = run(cmd)
    assert proc.returncode != 0
    for path in ACCOUNT_VALUES:
        assert f"--set {path}=" in proc.stderr, (path, proc.stderr)
    assert "the StoreUri output of the resnet-serving-store stack" in proc.stderr
    assert "the ServingRoleArn output of the resnet-serving-roles stack" in proc.stderr


def test_a_required_path_that_is_no_value_fails(helm: Helm) -> None:
    proc = run(helm.template_cmd([], sets=["requiredValues.ingress\\.hots=the host"]))
    assert proc.returncode != 0 and "requiredValues lists ingress.hots, which is not a value" in proc.stderr


def test_render_sh_and_the_test_helper_give_the_same_example_values() -> None:
    script = (K8S / "render.sh").read_text().replace("$ACCOUNT", EXAMPLE_ACCOUNT).replace("\\\\", "\\")
    assert f"ACCOUNT={EXAMPLE_ACCOUNT}" in (K8S / "render.sh").read_text()
    for path, value in ACCOUNT_VALUES.items():
        assert f'--set "{path}={value}"' in script, path


def test_the_example_store_is_the_infra_stores_bucket_and_prefix() -> None:
    """The example store follows infra/config.json's bucket name (for the example account) and prefix, as the
    StoreUri output the install passes does."""
    infra = json.loads((K8S.parent / "infra" / "config.json").read_text())["store"]
    bucket, _, prefix = ACCOUNT_VALUES["model.store"].removeprefix("s3://").partition("/")
    assert bucket == infra["bucket_name"].replace("${AWS::AccountId}", EXAMPLE_ACCOUNT)
    assert prefix == infra["prefix"]


# ---- 5. a slow but healthy rollout is not reported failed ---------------------------------------------------------
def _startup_budget(docs: Docs) -> int:
    (probe,) = [c["startupProbe"] for c in deployment(docs)["spec"]["template"]["spec"]["containers"]]
    return probe.get("initialDelaySeconds", 0) + probe["failureThreshold"] * probe["periodSeconds"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_progress_deadline_outlasts_the_startup_budget(rendered: dict[str, Docs], variant: str) -> None:
    docs = rendered[variant]
    deadline = deployment(docs)["spec"]["progressDeadlineSeconds"]
    assert deadline > _startup_budget(docs), variant


def test_progress_deadline_follows_the_startup_probe_and_its_override(helm: Helm) -> None:
    gpu = helm.template([EXAMPLE_VALUES["gpu"]])
    assert _startup_budget(gpu) > 600  # the budget that the default deadline cut short
    sets = ["probes.startup.initialDelaySeconds=30", "probes.startup.failureThreshold=100"]
    longer = helm.template([EXAMPLE_VALUES["gpu"]], sets=sets)
    assert deployment(longer)["spec"]["progressDeadlineSeconds"] > _startup_budget(longer)
    grew = deployment(longer)["spec"]["progressDeadlineSeconds"] - deployment(gpu)["spec"]["progressDeadlineSeconds"]
    assert grew == _startup_budget(longer) - _startup_budget(gpu)
    fixed = helm.template([], sets=["rollingUpdate.progressDeadlineSeconds=1800"])
    assert deployment(fixed)["spec"]["progressDeadlineSeconds"] == 1800
    proc = run(helm.template_cmd([EXAMPLE_VALUES["gpu"]], sets=["rollingUpdate.progressDeadlineSeconds=600"]))
    assert proc.returncode != 0
    assert "rollingUpdate.progressDeadlineSeconds (600) must exceed the startup probe's budget (900 s" in proc.stderr
