"""Assertions on the objects the chart renders, for every variant (defaults, dev, prod, gpu, full)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.chart import (
    ACCOUNT_VALUES,
    CHART,
    K8S,
    NAMESPACE,
    RELEASE,
    ROOT,
    VARIANTS,
    Helm,
    account_args,
    container,
    deployment,
    find,
    is_hook,
    one,
    pod_specs,
    run,
)

Docs = list[dict[str, Any]]
ALL = sorted(VARIANTS)
SERVER_SELECTOR = {
    "app.kubernetes.io/name": "resnet50-serving",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "server",
}


def serving(docs: Docs) -> dict[str, Any]:
    return container(deployment(docs)["spec"]["template"]["spec"], "torchserve")


def fetcher(docs: Docs) -> dict[str, Any]:
    return container(deployment(docs)["spec"]["template"]["spec"], "fetch-model", init=True)


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def flag(args: list[str], name: str) -> str:
    assert args.count(name) >= 1, f"{name} missing from {args}"
    return args[len(args) - 1 - args[::-1].index(name) + 1]  # the last occurrence wins, as with argparse


# ---- labels and namespaces ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ALL)
def test_every_object_has_the_standard_labels_and_the_release_namespace(
    rendered: dict[str, Docs], variant: str
) -> None:
    for d in rendered[variant]:
        labels = d["metadata"].get("labels", {})
        where = f"{d['kind']}/{d['metadata']['name']}"
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels, f"{where} lacks label {key}"
        assert d["metadata"].get("namespace") == NAMESPACE, f"{where} is not in the release namespace"


@pytest.mark.parametrize("variant", ALL)
def test_selectors_match_the_serving_pods_only(rendered: dict[str, Docs], variant: str) -> None:
    docs = rendered[variant]
    dep = deployment(docs)
    assert dep["spec"]["selector"]["matchLabels"] == SERVER_SELECTOR
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert SERVER_SELECTOR.items() <= pod_labels.items()
    assert one(docs, "Service", RELEASE)["spec"]["selector"] == SERVER_SELECTOR
    for kind in ("PodDisruptionBudget",):
        for obj in find(docs, kind):
            assert obj["spec"]["selector"]["matchLabels"] == SERVER_SELECTOR
    # The helm test pod must not be selected by the Service / PDB / spread constraints.
    for pod in find(docs, "Pod"):
        assert not SERVER_SELECTOR.items() <= pod["metadata"]["labels"].items()


# ---- availability: zone spread, rollout, HPA, PDB -------------------------------------------------------
@pytest.mark.parametrize("variant", ALL)
def test_pods_spread_over_zones_and_nodes(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    spec = deployment(rendered[variant])["spec"]["template"]["spec"]
    constraints = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
    assert set(constraints) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    wanted = variant_values[variant]["topologySpread"]
    for key, name in (("topology.kubernetes.io/zone", "zone"), ("kubernetes.io/hostname", "hostname")):
        c = constraints[key]
        assert c["maxSkew"] == wanted[name]["maxSkew"] >= 1
        assert c["whenUnsatisfiable"] == wanted[name]["whenUnsatisfiable"]
        assert c["labelSelector"]["matchLabels"] == SERVER_SELECTOR
        assert c["matchLabelKeys"] == ["pod-template-hash"]
    if wanted["zone"]["minDomains"]:
        assert constraints["topology.kubernetes.io/zone"]["minDomains"] == wanted["zone"]["minDomains"]


def test_zone_spread_is_strict_by_default_and_in_prod(rendered: dict[str, Docs]) -> None:
    for variant in ("default", "prod"):
        spec = deployment(rendered[variant])["spec"]["template"]["spec"]
        zone = next(c for c in spec["topologySpreadConstraints"] if c["topologyKey"].endswith("/zone"))
        assert zone["whenUnsatisfiable"] == "DoNotSchedule", variant
    prod = deployment(rendered["prod"])["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert next(c for c in prod if c["topologyKey"].endswith("/zone"))["minDomains"] == 3


def test_zone_spread_can_be_turned_off(helm: Helm) -> None:
    docs = helm.template([], sets=["topologySpread.zone.enabled=false"])
    keys = [c["topologyKey"] for c in deployment(docs)["spec"]["template"]["spec"]["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname"]


@pytest.mark.parametrize("variant", ALL)
def test_rollout_never_reduces_capacity(rendered: dict[str, Docs], variant: str) -> None:
    strategy = deployment(rendered[variant])["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] not in (0, "0", "0%")


@pytest.mark.parametrize("variant", ALL)
def test_hpa_and_pdb_are_consistent_with_replicas(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    docs = rendered[variant]
    values = variant_values[variant]
    dep = deployment(docs)
    hpas = find(docs, "HorizontalPodAutoscaler")
    scaled = find(docs, "ScaledObject")
    if values["autoscaling"]["enabled"] and values["autoscaling"]["engine"] == "keda":
        # KEDA owns the HPA: the chart renders the ScaledObject and no HPA of its own.
        assert hpas == []
        so = one(docs, "ScaledObject")["spec"]
        assert "replicas" not in dep["spec"]
        assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
        assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"]
        min_replicas = so["minReplicaCount"]
        cpu = next(t for t in so["triggers"] if t["type"] == "cpu")
        assert cpu["metricType"] == "Utilization"
        behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] > behavior["scaleUp"]["stabilizationWindowSeconds"]
    elif values["autoscaling"]["enabled"]:
        assert scaled == []
        hpa = one(docs, "HorizontalPodAutoscaler")
        # The HPA owns the replica count: a rendered `replicas` would reset it on every helm upgrade.
        assert "replicas" not in dep["spec"]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        min_replicas = hpa["spec"]["minReplicas"]
        cpu = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Resource")
        assert cpu["resource"]["name"] == "cpu"
        assert cpu["resource"]["target"]["type"] == "Utilization"
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] > behavior["scaleUp"]["stabilizationWindowSeconds"]
    else:
        assert hpas == [] and scaled == []
        min_replicas = dep["spec"]["replicas"]
        assert min_replicas == values["replicaCount"]
    pdbs = find(docs, "PodDisruptionBudget")
    if values["podDisruptionBudget"]["enabled"]:
        spec = one(docs, "PodDisruptionBudget")["spec"]
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec)
        # A budget that keeps at least one pod up and still lets one be evicted.
        if "maxUnavailable" in spec:
            assert 1 <= spec["maxUnavailable"] < min_replicas
        else:
            assert 1 <= spec["minAvailable"] < min_replicas
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    else:
        assert pdbs == []


def test_highly_available_variants_run_at_least_one_pod_per_zone(rendered: dict[str, Docs]) -> None:
    for variant in ("default", "prod"):
        assert one(rendered[variant], "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 3, variant
        assert find(rendered[variant], "PodDisruptionBudget"), variant


def test_custom_metric_is_added_to_the_hpa_when_enabled(helm: Helm, rendered: dict[str, Docs]) -> None:
    docs = helm.template([], sets=["autoscaling.customMetric.enabled=true"])
    pods = [m for m in one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"] if m["type"] == "Pods"]
    assert len(pods) == 1
    assert pods[0]["pods"]["metric"]["name"] == "ts_inference_requests_per_second"
    assert pods[0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    default = one(rendered["default"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in default] == ["Resource"]


def test_prod_scales_on_the_metric_whose_adapter_rule_the_chart_ships(rendered: dict[str, Docs]) -> None:
    """prod.yaml's Pods metric is the saturation metric: the chart renders its adapter rule (the install feeds it to
    prometheus-adapter), where a customMetric's rule would be the user's own."""
    prod = rendered["prod"]
    pods = [m for m in one(prod, "HorizontalPodAutoscaler")["spec"]["metrics"] if m["type"] == "Pods"]
    assert [m["pods"]["metric"]["name"] for m in pods] == ["resnet_serving_saturation"]
    rule = yaml.safe_load(one(prod, "ConfigMap", f"{RELEASE}-adapter-rule")["data"]["values.yaml"])
    assert [r["name"]["as"] for r in rule["rules"]["custom"]] == ["resnet_serving_saturation"]


# ---- the serving contract ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ALL)
def test_serve_command_follows_the_serving_core_contract(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    c = serving(rendered[variant])
    values = variant_values[variant]
    assert c["command"] == ["resnet-serving"]
    args = c["args"]
    assert args[0] == "serve"
    expected = {
        "--model-dir": "/models/current",
        "--host": "0.0.0.0",
        "--port": "8080",
        "--management-host": "127.0.0.1",
        "--management-port": "8081",
        "--metrics-host": "0.0.0.0",
        "--metrics-port": "8082",
        "--model-metrics-port": "8083",
        "--threads": "auto",
        "--run-dir": "/tmp/torchserve",
        "--workers": str(values["torchserve"]["workers"]),
        "--batch-size": str(values["torchserve"]["batchSize"]),
        "--max-batch-delay-ms": str(values["torchserve"]["maxBatchDelayMs"]),
        # the start-up budget is the startup probe's: serve, and TorchServe's load timeout, wait as long as it
        "--ready-timeout": str(
            values["probes"]["startup"]["periodSeconds"] * values["probes"]["startup"]["failureThreshold"]
        ),
    }
    for name, value in expected.items():
        assert flag(args, name) == value, name
    env = env_of(c)
    limits = values["requestLimits"]
    assert env["RESNET_SERVING_MAX_IMAGE_BYTES"] == str(limits["maxImageBytes"])
    assert env["RESNET_SERVING_MAX_IMAGE_PIXELS"] == str(limits["maxImagePixels"])
    assert env["RESNET_SERVING_MAX_IMAGES_PER_REQUEST"] == str(limits["maxImagesPerRequest"])
    assert env["RESNET_SERVING_DEFAULT_TOPK"] == str(limits["defaultTopk"])
    assert env["RESNET_SERVING_MAX_TOPK"] == str(limits["maxTopk"])
    assert env["RESNET_SERVING_JAVA_OPTS"] == values["torchserve"]["javaOpts"]
    assert env["RESNET_SERVING_AMP"] == values["torchserve"]["amp"]
    # The management port is never declared: it listens on loopback only.
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "metrics": 8082, "model-metrics": 8083}


def test_extra_args_come_after_the_chart_flags(rendered: dict[str, Docs]) -> None:
    args = serving(rendered["full"])["args"]
    assert args[-2:] == ["--log-level", "INFO"]
    assert env_of(serving(rendered["full"]))["EXTRA_SETTING"] == "1"


@pytest.mark.parametrize("variant", ALL)
def test_init_container_fetches_the_verified_archive(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    docs = rendered[variant]
    model = variant_values[variant]["model"]
    c = fetcher(docs)
    assert c["command"] == ["resnet-serving"]
    assert c["args"] == ["fetch", "--dest", "/models/current"]
    env = env_of(c)
    assert env["RESNET_SERVING_STORE"] == model["store"]
    assert env["RESNET_SERVING_MODEL_CHANNEL"] == model["channel"]
    assert env["RESNET_SERVING_MODEL_VERSION"] == str(model["version"])
    assert env.get("AWS_ENDPOINT_URL") == (model["endpointUrl"] or None)
    assert env.get("AWS_REGION") == (model["awsRegion"] or None)
    annotations = deployment(docs)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["resnet-serving.io/model-version"] == str(model["version"])
    assert c["resources"]["limits"] and c["resources"]["requests"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "/models" in mounts and not mounts["/models"].get("readOnly")


def test_a_pinned_version_is_rendered_as_a_string(rendered: dict[str, Docs]) -> None:
    assert env_of(fetcher(rendered["full"]))["RESNET_SERVING_MODEL_VERSION"] == "7"
    assert env_of(fetcher(rendered["default"]))["RESNET_SERVING_MODEL_VERSION"] == ""


@pytest.mark.parametrize("variant", ALL)
def test_probes_mean_the_model_answers_and_liveness_spares_busy_pods(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    c = serving(rendered[variant])
    predict_timeout = variant_values[variant]["probes"]["predictTimeoutSeconds"]
    model_answers = [
        "resnet-serving",
        "probe",
        "--url",
        "http://127.0.0.1:8080",
        "--timeout",
        str(predict_timeout),
    ]
    for probe in ("startupProbe", "readinessProbe"):
        assert c[probe]["exec"]["command"] == model_answers, probe
        assert c[probe]["timeoutSeconds"] > predict_timeout, probe
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "the JVM and model need minutes"
    liveness = c["livenessProbe"]
    assert liveness["httpGet"] == {"path": "/ping", "port": "http"}
    assert "exec" not in liveness, "liveness must not depend on a prediction (busy workers)"
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    assert next(p for p in c["ports"] if p["name"] == "http")["containerPort"] == 8080


@pytest.mark.parametrize("variant", ALL)
def test_graceful_shutdown_outlasts_the_longest_request(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    dep = deployment(rendered[variant])
    c = serving(rendered[variant])
    sleep_cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep_cmd[0] == "sleep"
    pre_stop = int(sleep_cmd[1])
    assert pre_stop >= 5, "the ALB needs a few seconds to deregister the target"
    longest = variant_values[variant]["lifecycle"]["longestRequestSeconds"]
    assert longest >= 60, "TorchServe's default_response_timeout is 60 s"
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + longest


@pytest.mark.parametrize("variant", ALL)
def test_resources_are_set_and_the_thread_budget_follows_the_cpu_limit(rendered: dict[str, Docs], variant: str) -> None:
    for where, spec in pod_specs(rendered[variant]):
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res[kind]), f"{where}/{c['name']} {kind}"
    c = serving(rendered[variant])
    assert flag(c["args"], "--threads") == "auto"
    assert c["resources"]["limits"]["cpu"]


# ---- GPU ----------------------------------------------------------------------------------------------
def test_gpu_variant_requests_a_gpu_and_lands_on_gpu_nodes(rendered: dict[str, Docs]) -> None:
    nodegroup = yaml.safe_load((K8S / "eksctl" / "gpu-nodegroup.yaml").read_text())["managedNodeGroups"][0]
    spec = deployment(rendered["gpu"])["spec"]["template"]["spec"]
    assert serving(rendered["gpu"])["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The selector and toleration match the eksctl GPU node group's label and taint.
    assert spec["nodeSelector"].items() <= nodegroup["labels"].items()
    taint = nodegroup["taints"][0]
    assert any(
        t["key"] == taint["key"] and t["effect"] == taint["effect"] and t["operator"] == "Exists"
        for t in spec["tolerations"]
    )
    for variant in ("default", "prod", "dev"):
        cpu_spec = deployment(rendered[variant])["spec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in serving(rendered[variant])["resources"]["limits"]
        assert "tolerations" not in cpu_spec and "nodeSelector" not in cpu_spec


# ---- networking -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ALL)
def test_service_and_ingress_reach_only_the_inference_port(rendered: dict[str, Docs], variant: str) -> None:
    docs = rendered[variant]
    svc = one(docs, "Service", RELEASE)
    assert svc["spec"]["type"] == "ClusterIP"
    assert len(svc["spec"]["ports"]) == 1
    port = svc["spec"]["ports"][0]
    assert port["targetPort"] == "http"
    http = next(p for p in serving(docs)["ports"] if p["name"] == "http")
    assert http["containerPort"] == 8080
    metrics_services = [s for s in find(docs, "Service") if s["metadata"]["name"] != RELEASE]
    for ing in find(docs, "Ingress"):
        assert ing["spec"]["ingressClassName"] == "alb"
        assert "defaultBackend" not in ing["spec"]
        every = [p["backend"]["service"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
        # ALB actions (port use-annotation) answer at the load balancer; everything else reaches the service.
        backends = [b for b in every if b["port"] != {"name": "use-annotation"}]
        assert backends, "an Ingress without paths"
        for b in backends:
            assert b == {"name": RELEASE, "port": {"name": port["name"]}}
        assert not {s["metadata"]["name"] for s in metrics_services} & {b["name"] for b in backends}
        paths = {p["path"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
        assert paths == {"/predictions/resnet50", "/invocations", "/ping"}
    # The pod's other listeners stay off that path: TorchServe's metrics (8082) and ours (8083) are container
    # ports the Service does not name, and the management API (8081) listens on the pod's loopback only.
    container = serving(docs)
    listening = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert listening == {"http": 8080, "metrics": 8082, "model-metrics": 8083}
    assert listening[port["targetPort"]] == 8080
    assert flag(container["args"], "--management-host") == "127.0.0.1"
    for s in metrics_services:
        if s["spec"].get("selector") == SERVER_SELECTOR:
            assert {p["targetPort"] for p in s["spec"]["ports"]} == {"metrics", "model-metrics"}, s["metadata"]
    # And at the pod: the NetworkPolicy admits the ALB's peers to 8080 alone; 8082 and 8083 only from the
    # monitoring peers (never an empty list, which would mean everyone); no rule names 8081.
    if find(docs, "NetworkPolicy", RELEASE):
        for rule in one(docs, "NetworkPolicy", RELEASE)["spec"]["ingress"]:
            opened = {p["port"] for p in rule["ports"]}
            assert opened == {8080} or (opened == {8082, 8083} and rule.get("from")), rule


@pytest.mark.parametrize("variant", ALL)
def test_alb_annotations(rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str) -> None:
    values = variant_values[variant]["ingress"]
    a = one(rendered[variant], "Ingress")["metadata"]["annotations"]
    p = "alb.ingress.kubernetes.io/"
    assert a[p + "scheme"] == values["scheme"]
    assert a[p + "target-type"] == "ip"
    assert a[p + "healthcheck-path"] == "/ping"
    assert a[p + "load-balancer-attributes"] == ",".join(values["loadBalancerAttributes"])
    assert a[p + "target-group-attributes"] == ",".join(values["targetGroupAttributes"])
    listen = json.loads(a[p + "listen-ports"])
    if values["https"]["enabled"]:
        assert {"HTTPS": 443} in listen
        assert a[p + "ssl-redirect"] == "443"
        assert a[p + "ssl-policy"].startswith("ELBSecurityPolicy-TLS13")
    else:
        assert listen == [{"HTTP": 80}]
        assert a[p + "scheme"] == "internal", "plain HTTP only on an internal ALB"


FORM_ACTION = "reject-form-urlencoded"


@pytest.mark.parametrize("variant", ALL)
def test_alb_rejects_form_urlencoded_bodies_before_the_service(rendered: dict[str, Docs], variant: str) -> None:
    """`curl -d @cat.jpg` sends application/x-www-form-urlencoded, which TorchServe's front end answers with a 500.
    The ALB answers it first: a rule with a Content-Type condition and a fixed 415 JSON response, placed before
    each path's service backend (the AWS Load Balancer Controller keeps the order of the paths)."""
    ing = one(rendered[variant], "Ingress")
    a = ing["metadata"]["annotations"]
    action = json.loads(a[f"alb.ingress.kubernetes.io/actions.{FORM_ACTION}"])
    assert action["type"] == "fixed-response"
    fixed = action["fixedResponseConfig"]
    assert fixed["statusCode"] == "415"
    assert fixed["contentType"] == "application/json"
    assert json.loads(fixed["messageBody"]) == {
        "error": "unsupported_media_type",
        "message": "send Content-Type: image/jpeg (or the image's type)",
        "status": 415,
    }
    assert len(fixed["messageBody"]) <= 1024, "the ALB's fixed-response body limit"
    conditions = json.loads(a[f"alb.ingress.kubernetes.io/conditions.{FORM_ACTION}"])
    assert conditions == [
        {
            "field": "http-header",
            "httpHeaderConfig": {"httpHeaderName": "Content-Type", "values": ["application/x-www-form-urlencoded*"]},
        }
    ]
    for rule in ing["spec"]["rules"]:
        paths = rule["http"]["paths"]
        assert len(paths) % 2 == 0
        for reject, serve in zip(paths[::2], paths[1::2], strict=True):
            assert (reject["path"], reject["pathType"]) == (serve["path"], serve["pathType"])
            assert reject["backend"]["service"] == {"name": FORM_ACTION, "port": {"name": "use-annotation"}}
            assert serve["backend"]["service"]["name"] == RELEASE


def test_form_urlencoded_rule_can_be_switched_off(helm: Helm) -> None:
    ing = one(helm.template([], sets=["ingress.rejectFormUrlencoded=false"]), "Ingress")
    assert not [k for k in ing["metadata"]["annotations"] if FORM_ACTION in k]
    services = {p["backend"]["service"]["name"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
    assert services == {RELEASE}


@pytest.mark.parametrize("variant", ALL)
def test_alb_forwards_only_the_allowed_methods(rendered: dict[str, Docs], variant: str) -> None:
    """TorchServe 0.12 routes by path alone: `FOO /predictions/resnet50` runs a prediction, `BREW /ping` answers
    200 (tests/faults/test_overload.py). The ALB's rules to the service carry a method condition, so any other
    method falls through to the ALB's default 404 and never reaches a pod."""
    a = one(rendered[variant], "Ingress")["metadata"]["annotations"]
    conditions = json.loads(a[f"alb.ingress.kubernetes.io/conditions.{RELEASE}"])
    assert conditions == [{"field": "http-request-method", "httpRequestMethodConfig": {"values": ["GET", "POST"]}}]


def test_retry_after_guard_is_on_by_default_and_zero_turns_it_off(rendered: dict[str, Docs], helm: Helm) -> None:
    """`torchserve.retryAfterSeconds` is `serve --retry-after N`, always passed: the guard that adds Retry-After
    to the 503 of a full queue runs by default with 1 s, and 0 must reach `serve` (whose own default is on)."""
    args = serving(rendered["default"])["args"]
    assert args[args.index("--retry-after") + 1] == "1"
    for value in ("5", "0"):
        args = serving(helm.template([], sets=[f"torchserve.retryAfterSeconds={value}"]))["args"]
        assert args[args.index("--retry-after") + 1] == value, value


def test_admission_wait_is_serves_default_and_reaches_serve(
    rendered: dict[str, Docs], helm: Helm, tmp_path: Path
) -> None:
    """`torchserve.admissionWaitSeconds` is `serve --admission-wait S`, always passed, with serve's own default;
    a fraction of a second comes from a values file (`--set` reads 0.5 as a string, which the schema refuses)."""
    from resnet_serving.torchserve.guard import DEFAULT_ADMISSION_WAIT_S

    args = serving(rendered["default"])["args"]
    assert float(args[args.index("--admission-wait") + 1]) == DEFAULT_ADMISSION_WAIT_S
    args = serving(helm.template([], sets=["torchserve.admissionWaitSeconds=0"]))["args"]
    assert args[args.index("--admission-wait") + 1] == "0"
    values = tmp_path / "wait.yaml"
    values.write_text("torchserve:\n  admissionWaitSeconds: 0.5\n")
    args = serving(helm.template([values]))["args"]
    assert args[args.index("--admission-wait") + 1] == "0.5"


def test_method_condition_can_be_switched_off(helm: Helm) -> None:
    ing = one(helm.template([], sets=["ingress.allowedMethods=null"]), "Ingress")
    assert f"alb.ingress.kubernetes.io/conditions.{RELEASE}" not in ing["metadata"]["annotations"]


def test_prod_ingress_is_internal_with_tls_certificate_and_waf(rendered: dict[str, Docs]) -> None:
    """The ALB has no authentication of its own: production reaches it through the front door's private route."""
    ing = one(rendered["prod"], "Ingress")
    a = ing["metadata"]["annotations"]
    p = "alb.ingress.kubernetes.io/"
    assert a[p + "scheme"] == "internal"
    assert a[p + "certificate-arn"].startswith("arn:aws:acm:")
    assert a[p + "wafv2-acl-arn"].startswith("arn:aws:wafv2:")
    assert ing["spec"]["tls"] == [{"hosts": ["resnet50.example.com"]}]
    assert [r["host"] for r in ing["spec"]["rules"]] == ["resnet50.example.com"]


def test_full_ingress_has_oidc_group_cidrs_and_user_annotations(rendered: dict[str, Docs]) -> None:
    a = one(rendered["full"], "Ingress")["metadata"]["annotations"]
    p = "alb.ingress.kubernetes.io/"
    assert a[p + "auth-type"] == "oidc"
    assert a[p + "auth-on-unauthenticated-request"] == "deny"
    idp = json.loads(a[p + "auth-idp-oidc"])
    assert idp["issuer"] == "https://login.example.com"
    assert idp["secretName"] == "resnet-serving-oidc"
    assert a[p + "group.name"] == "ml-serving"
    assert a[p + "inbound-cidrs"] == "203.0.113.0/24"
    assert a[p + "healthcheck-interval-seconds"] == "10"


def test_cognito_auth_annotation(helm: Helm) -> None:
    docs = helm.template(
        [],
        sets=[
            "ingress.https.enabled=true",
            "ingress.hosts[0]=resnet50.example.com",
            "ingress.auth.type=cognito",
            "ingress.auth.cognito.userPoolArn=arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_abc",
            "ingress.auth.cognito.userPoolClientId=client",
            "ingress.auth.cognito.userPoolDomain=auth.example.com",
        ],
    )
    a = one(docs, "Ingress")["metadata"]["annotations"]
    assert json.loads(a["alb.ingress.kubernetes.io/auth-idp-cognito"]) == {
        "userPoolARN": "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_abc",
        "userPoolClientID": "client",
        "userPoolDomain": "auth.example.com",
    }


@pytest.mark.parametrize("variant", ALL)
def test_network_policy_opens_inference_and_metrics_only(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    values = variant_values[variant]["networkPolicy"]
    np = one(rendered[variant], "NetworkPolicy", RELEASE)
    assert np["spec"]["podSelector"]["matchLabels"] == SERVER_SELECTOR
    assert np["spec"]["policyTypes"] == ["Ingress"]
    rules = {tuple(p["port"] for p in r["ports"]): r for r in np["spec"]["ingress"]}
    assert set(rules) == {(8080,), (8082, 8083)}, "only the inference and the two metrics ports, never 8081"
    assert rules[(8080,)].get("from", []) == values["inferenceFrom"]
    assert rules[(8082, 8083)]["from"] == values["metricsFrom"]
    assert rules[(8082, 8083)]["from"], "an empty peer list would open the metrics ports to everyone"


def test_no_metrics_peers_keeps_the_metrics_port_closed(helm: Helm) -> None:
    docs = helm.template([], sets=["networkPolicy.metricsFrom=null"])
    np = one(docs, "NetworkPolicy", RELEASE)
    assert [[p["port"] for p in r["ports"]] for r in np["spec"]["ingress"]] == [[8080]]


# ---- security ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ALL)
def test_every_container_is_non_root_read_only_and_unprivileged(rendered: dict[str, Docs], variant: str) -> None:
    for where, spec in pod_specs(rendered[variant]):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, where
        assert pod_sc["runAsUser"] > 0, where
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for name in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(name), where
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            who = f"{where}/{c['name']}"
            assert sc["runAsNonRoot"] is True, who
            assert sc["runAsUser"] > 0, who
            assert sc["readOnlyRootFilesystem"] is True, who
            assert sc["allowPrivilegeEscalation"] is False, who
            assert sc["capabilities"]["drop"] == ["ALL"], who
            assert "add" not in sc["capabilities"], who
            assert not sc.get("privileged"), who
            # Whatever the container writes goes to an emptyDir: /tmp always, /models for the fetcher.
            volumes = {v["name"]: v for v in spec["volumes"]}
            writable = [m for m in c.get("volumeMounts", []) if not m.get("readOnly")]
            assert "/tmp" in {m["mountPath"] for m in writable}, who
            for m in writable:
                assert "emptyDir" in volumes[m["name"]], who
                assert volumes[m["name"]]["emptyDir"].get("sizeLimit"), who


@pytest.mark.parametrize("variant", ALL)
def test_irsa_annotation_and_service_account(
    rendered: dict[str, Docs], variant_values: dict[str, Any], variant: str
) -> None:
    docs = rendered[variant]
    sa = one(docs, "ServiceAccount", RELEASE)  # the operator, when enabled, has its own
    assert sa["automountServiceAccountToken"] is False
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"] == RELEASE
    wanted = variant_values[variant]["serviceAccount"]["annotations"]
    assert (sa["metadata"].get("annotations") or {}) == wanted


def test_example_irsa_roles_are_the_infra_stacks_serving_role(rendered: dict[str, Docs]) -> None:
    # The infra roles stack owns the serving role (eksctl no longer creates it) and trusts this ServiceAccount.
    roles = json.loads((ROOT / "infra" / "templates" / "resnet-serving-roles.json").read_text())["Resources"]
    (role,) = [r for r in roles.values() if r["Properties"].get("RoleName") == "resnet-serving-model-reader"]
    assert (
        f"system:serviceaccount:{NAMESPACE}:{RELEASE}" in role["Properties"]["AssumeRolePolicyDocument"]["Fn::Sub"][0]
    )
    for variant in ("dev", "prod", "gpu"):
        sa = one(rendered[variant], "ServiceAccount")
        arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert arn.startswith("arn:aws:iam::") and arn.endswith(":role/resnet-serving-model-reader"), variant


# ---- observability and helm test ------------------------------------------------------------------------
def test_service_monitor_scrapes_both_metrics_ports_through_their_own_service(rendered: dict[str, Docs]) -> None:
    docs = rendered["prod"]
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    metrics_svc = one(docs, "Service", f"{RELEASE}-metrics")
    assert metrics_svc["spec"]["clusterIP"] == "None"
    assert sm["spec"]["selector"]["matchLabels"].items() <= metrics_svc["metadata"]["labels"].items()
    # ...and not the inference Service.
    assert (
        not sm["spec"]["selector"]["matchLabels"].items() <= one(docs, "Service", RELEASE)["metadata"]["labels"].items()
    )
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics", "model-metrics"]
    assert metrics_svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8082, "targetPort": "metrics", "protocol": "TCP"},
        {"name": "model-metrics", "port": 8083, "targetPort": "model-metrics", "protocol": "TCP"},
    ]
    assert find(rendered["default"], "ServiceMonitor") == []


def test_dashboard_is_valid_grafana_json_for_this_release(rendered: dict[str, Docs]) -> None:
    cm = one(rendered["prod"], "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["resnet50-serving.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("ts_inference_requests_total" in e for e in exprs)
    assert any("ts_queue_latency_microseconds" in e for e in exprs)
    assert all("__SERVICE__" not in e for e in exprs)
    assert any(f'service="{RELEASE}-metrics"' in e for e in exprs)


@pytest.mark.parametrize("variant", ALL)
def test_helm_test_classifies_an_image_through_the_service(rendered: dict[str, Docs], variant: str) -> None:
    docs = rendered[variant]
    hooks = [d for d in docs if is_hook(d)]
    assert {d["metadata"]["annotations"]["helm.sh/hook"] for d in hooks} == {"test"}
    pod = one(docs, "Pod")
    assert pod in hooks
    assert pod["spec"]["restartPolicy"] == "Never"
    svc = one(docs, "Service", RELEASE)
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["resnet-serving"]
    assert c["args"][:3] == ["probe", "--url", f"http://{RELEASE}.{NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}"]
    assert c["image"] == serving(docs)["image"]
    # Its NetworkPolicy (also a test hook) admits nothing into the test pod.
    np = one(docs, "NetworkPolicy", f"{RELEASE}-test-classify")
    assert np in hooks
    assert np["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert np["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in np["spec"]


def test_images_are_pinned(rendered: dict[str, Docs]) -> None:
    for variant, docs in rendered.items():
        for where, spec in pod_specs(docs):
            for c in spec.get("initContainers", []) + spec["containers"]:
                image = c["image"]
                name = image.rsplit("/", 1)[-1]
                pinned = "@sha256:" in image or (":" in name and not name.endswith(":latest"))
                assert pinned, f"{variant} {where}: {image}"
    assert serving(rendered["full"])["image"].endswith(
        "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert serving(rendered["default"])["image"] == f"{ACCOUNT_VALUES['image.repository']}:0.1.0"


def test_notes_explain_alb_hostname_and_curl(helm: Helm) -> None:
    proc = run(
        [
            *(helm.binary, "install", RELEASE, str(CHART), "--namespace", NAMESPACE),
            *("--dry-run=client", "-f", str(K8S / "values" / "prod.yaml")),
            *account_args([K8S / "values" / "prod.yaml"]),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} get ingress {RELEASE}" in notes
    assert "curl -sS https://resnet50.example.com/predictions/resnet50 -H 'Content-Type: image/jpeg'" in notes
    assert f"helm test {RELEASE}" in notes
    assert "WARNING" not in notes  # prod sets the IRSA annotation
