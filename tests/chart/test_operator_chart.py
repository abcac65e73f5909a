"""The operator's part of the chart: least-privilege RBAC, the Deployment (peering, probes, token, hardening),
the CRDs (valid for Kubernetes, copied to k8s/rendered/crds/), and the docs that explain drift."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.helpers.chart import (
    CHART,
    K8S,
    KUBE_VERSIONS_VALIDATED,
    NAMESPACE,
    RELEASE,
    Helm,
    container,
    find,
    one,
    run,
)
from tests.helpers.docs_pages import OPERATOR_PAGE

Docs = list[dict[str, Any]]
OPERATOR = f"{RELEASE}-operator"
OPERATOR_SELECTOR = {
    "app.kubernetes.io/name": "resnet50-serving",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "operator",
}
ROOT = CHART.parents[1]


def operator_objects(docs: Docs) -> Docs:
    return [
        d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component", "").startswith("operator")
    ]


def test_nothing_of_the_operator_unless_enabled(rendered: dict[str, Docs]) -> None:
    for variant in ("default", "dev", "prod", "gpu"):
        assert operator_objects(rendered[variant]) == [], variant
    kinds = sorted(d["kind"] for d in operator_objects(rendered["full"]))
    assert kinds == sorted(
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "KopfPeering",
            "Deployment",
            "NetworkPolicy",
            "Service",
            "ServiceMonitor",
        ]
    )


def test_role_is_least_privilege(rendered: dict[str, Docs]) -> None:
    role = one(rendered["full"], "Role", OPERATOR)
    rules = [
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r.get("resourceNames", ())), tuple(r["verbs"]))
        for r in role["rules"]
    ]
    assert rules == [
        (("resnet-serving.io",), ("modeldeployments",), (), ("list", "watch", "patch")),
        (("resnet-serving.io",), ("modeldeployments/status",), (), ("patch",)),
        (("apps",), ("deployments",), (RELEASE, "resnet50-canary"), ("get", "patch")),
        (("",), ("events",), (), ("create",)),
        (("kopf.dev",), ("kopfpeerings",), (), ("list", "watch")),
        (("kopf.dev",), ("kopfpeerings",), (OPERATOR,), ("get", "patch")),
    ]
    flat = [x for r in role["rules"] for key in ("apiGroups", "resources", "verbs") for x in r[key]]
    assert "*" not in flat
    assert not {"secrets", "pods", "configmaps", "deployments/scale"} & set(flat)
    assert not {"create", "delete", "deletecollection", "update", "escalate", "bind", "impersonate"} & {
        v for r in role["rules"] if r["resources"] != ["events"] for v in r["verbs"]
    }
    assert not find(rendered["full"], "ClusterRole") and not find(rendered["full"], "ClusterRoleBinding")


def test_every_rbac_rule_says_why() -> None:
    text = (CHART / "templates" / "operator-rbac.yaml").read_text()
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(rules) == 6
    for i in rules:
        assert lines[i - 1].strip().startswith("#"), f"rule at line {i + 1} has no comment above it"


def test_role_binding_grants_the_role_to_the_operator_only(rendered: dict[str, Docs]) -> None:
    docs = rendered["full"]
    binding = one(docs, "RoleBinding", OPERATOR)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    sa = one(docs, "ServiceAccount", OPERATOR)
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        ":role/resnet-serving-operator-store-reader"
    )
    assert sa["automountServiceAccountToken"] is False
    serving_pods = one(docs, "Deployment", RELEASE)["spec"]["template"]["spec"]
    assert serving_pods["serviceAccountName"] == RELEASE != OPERATOR


def test_the_operators_store_role_is_the_infra_stacks(rendered: dict[str, Docs]) -> None:
    # The infra roles stack owns the store roles (eksctl no longer creates them): same name, same ServiceAccount.
    roles = json.loads((ROOT / "infra" / "templates" / "resnet-serving-roles.json").read_text())["Resources"]
    (role,) = [r for r in roles.values() if r["Properties"].get("RoleName") == "resnet-serving-operator-store-reader"]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Fn::Sub"][0]
    assert f"system:serviceaccount:{NAMESPACE}:{OPERATOR}" in trust
    cluster = yaml.safe_load((K8S / "eksctl" / "cluster.yaml").read_text())
    assert OPERATOR not in {a["metadata"]["name"] for a in cluster["iam"]["serviceAccounts"]}


def test_operator_deployment(rendered: dict[str, Docs]) -> None:
    docs = rendered["full"]
    dep = one(docs, "Deployment", OPERATOR)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == OPERATOR_SELECTOR
    pod = dep["spec"]["template"]["spec"]
    c = container(pod, "operator")
    assert c["image"].endswith("/resnet-serving-operator@sha256:" + "fedcba9876543210" * 4)
    assert (c["command"], c["args"]) == (["resnet-serving"], ["operator"])
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RESNET_SERVING_OPERATOR_NAMESPACES"] == NAMESPACE
    assert env["RESNET_SERVING_OPERATOR_PEERING"] == OPERATOR == one(docs, "KopfPeering", OPERATOR)["metadata"]["name"]
    assert env["RESNET_SERVING_OPERATOR_METRICS_PORT"] == "8080"
    assert env["AWS_REGION"] == "eu-west-1" and env["AWS_ENDPOINT_URL"].startswith("https://")
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http-metrics"]
    assert port == 8080
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"]
    # The API token: mounted explicitly where kopf looks for it, into this container only.
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    token = mounts["/var/run/secrets/kubernetes.io/serviceaccount"]
    assert token["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == token["name"])
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["path"] == "namespace"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"} and pod["tolerations"][0]["key"] == "dedicated"
    assert dep["spec"]["template"]["metadata"]["annotations"] == {"example.com/team": "ml-platform"}


def test_operator_network_policy_and_metrics(rendered: dict[str, Docs], variant_values: dict[str, Any]) -> None:
    docs = rendered["full"]
    np = one(docs, "NetworkPolicy", OPERATOR)
    assert np["spec"]["podSelector"]["matchLabels"] == OPERATOR_SELECTOR
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [8080]
    assert rule["from"] == variant_values["full"]["networkPolicy"]["metricsFrom"]
    svc = one(docs, "Service", f"{OPERATOR}-metrics")
    assert svc["spec"]["selector"] == OPERATOR_SELECTOR
    sm = one(docs, "ServiceMonitor", OPERATOR)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["http-metrics"]
    serving_sm = one(docs, "ServiceMonitor", RELEASE)
    assert not serving_sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


def test_no_metrics_peers_closes_the_operator_to_everyone(helm: Helm) -> None:
    docs = helm.template([], sets=["operator.enabled=true", "networkPolicy.metricsFrom=null"])
    np = one(docs, "NetworkPolicy", OPERATOR)
    assert np["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in np["spec"]


def test_existing_service_account_and_single_replica(helm: Helm) -> None:
    docs = helm.template(
        [],
        sets=[
            "operator.enabled=true",
            "operator.serviceAccount.create=false",
            "operator.serviceAccount.name=platform-operator",
            "operator.replicaCount=1",
        ],
    )
    assert not find(docs, "ServiceAccount", OPERATOR)
    dep = one(docs, "Deployment", OPERATOR)
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"
    assert one(docs, "RoleBinding", OPERATOR)["subjects"][0]["name"] == "platform-operator"
    assert dep["spec"]["replicas"] == 1


def test_crds_are_valid_kubernetes_objects(helm_bin: str) -> None:
    proc = run([helm_bin, "show", "crds", str(CHART)])
    assert proc.returncode == 0, proc.stderr
    crds = {d["metadata"]["name"]: d for d in yaml.safe_load_all(proc.stdout) if d}
    assert set(crds) == {"modeldeployments.resnet-serving.io", "kopfpeerings.kopf.dev"}
    for crd in crds.values():
        for version in KUBE_VERSIONS_VALIDATED:
            kubernetes_validate.validate(crd, version, strict=True)


def test_crds_are_copied_to_k8s(helm_bin: str, tmp_path: Path) -> None:
    proc = run(["bash", str(K8S / "render.sh")], env={**os.environ, "HELM": helm_bin, "RENDER_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    fresh = {p.name: p.read_text() for p in (tmp_path / "crds").glob("*.yaml")}
    committed = {p.name: p.read_text() for p in (K8S / "rendered" / "crds").glob("*.yaml")}
    assert set(fresh) == {p.name for p in (CHART / "crds").glob("*.yaml")}
    assert committed == fresh, "k8s/rendered/crds/ drifted from the chart: run `make k8s`"
    for name, text in fresh.items():
        assert text.startswith("# Generated by k8s/render.sh")
        assert text.split("\n", 1)[1] == (CHART / "crds" / name).read_text()


def test_helm_upgrade_keeps_the_operators_version(helm: Helm) -> None:
    """`helm template` cannot look up the live Deployment, so it renders model.version; the template asks
    Helm for the live pod template's version when the operator is enabled (checked here as text)."""
    text = (CHART / "templates" / "deployment.yaml").read_text()
    assert re.search(r'lookup "apps/v1" "Deployment" \.Release\.Namespace \$fullname', text)
    assert text.count("{{ $modelVersion | quote }}") == 2
    docs = helm.template([], sets=["operator.enabled=true", "model.version=5"])
    tmpl = one(docs, "Deployment", RELEASE)["spec"]["template"]
    assert tmpl["metadata"]["annotations"]["resnet-serving.io/model-version"] == "5"


def test_docs_explain_the_operator_and_drift() -> None:
    chart_readme = (CHART / "README.md").read_text()
    operator_readme = OPERATOR_PAGE.read_text()
    for text in (chart_readme, operator_readme):
        assert "kubectl rollout undo" in text
        assert "drift" in text.lower()
        assert "ModelDeployment" in text
    for words in ("never reverts", "Role", "--skip-crds", "crds/", "peering"):
        assert words in chart_readme or words in operator_readme, words
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "kind: ModelDeployment" in notes
