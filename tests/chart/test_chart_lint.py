"""`helm lint` on the defaults and each example values file; bad values fail with a readable message."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.chart import EXAMPLE_VALUES, VARIANTS, Helm, run


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_passes(helm: Helm, variant: str) -> None:
    proc = helm.lint(VARIANTS[variant])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout + proc.stderr


def test_every_example_values_file_is_linted() -> None:
    assert set(EXAMPLE_VALUES) == {"dev", "prod", "gpu"}
    assert all(name in VARIANTS for name in EXAMPLE_VALUES)


# (id, values file content, substrings the error must contain). Schema errors (values.schema.json) fail
# `helm lint` and `helm template` alike and name the value's path and what is wrong with it.
SCHEMA_ERRORS = [
    ("wrong-type", "replicaCount: three\n", ["at '/replicaCount'", "got string, want integer"]),
    ("negative-replicas", "replicaCount: -2\n", ["at '/replicaCount'", "minimum: got -2, want 1"]),
    ("unknown-top-level-key", "replicas: 3\n", ["additional properties 'replicas' not allowed"]),
    (
        "unknown-nested-key",
        "ingress:\n  shceme: internet-facing\n",
        ["at '/ingress'", "additional properties 'shceme' not allowed"],
    ),
    ("bool-as-string", "ingress:\n  enabled: 'yes'\n", ["at '/ingress/enabled'", "got string, want boolean"]),
    (
        "negative-retry-after",
        "torchserve:\n  retryAfterSeconds: -1\n",
        ["at '/torchserve/retryAfterSeconds'", "minimum: got -1, want 0"],
    ),
    (
        "negative-admission-wait",
        "torchserve:\n  admissionWaitSeconds: -1\n",
        ["at '/torchserve/admissionWaitSeconds'", "minimum: got -1, want 0"],
    ),
    (
        "zero-batch-delay",  # TorchServe 0.12 would read 0 as 100 ms
        "torchserve:\n  maxBatchDelayMs: 0\n",
        ["at '/torchserve/maxBatchDelayMs'", "minimum: got 0, want 1"],
    ),
    (
        "bad-enum",
        "ingress:\n  scheme: public\n",
        ["at '/ingress/scheme'", "value must be one of 'internal', 'internet-facing'"],
    ),
    (
        "unknown-precision",
        "torchserve:\n  amp: int8\n",
        ["at '/torchserve/amp'", "value must be one of 'auto', 'off', 'fp16', 'bf16'"],
    ),
    ("store-not-a-url", "model:\n  store: my-bucket\n", ["at '/model/store'", "'my-bucket' does not match"]),
    (
        "root-user",
        "securityContext:\n  runAsNonRoot: false\n",
        ["at '/securityContext/runAsNonRoot'", "value must be true"],
    ),
    (
        "writable-root-fs",
        "securityContext:\n  readOnlyRootFilesystem: false\n",
        ["at '/securityContext/readOnlyRootFilesystem'"],
    ),
    (
        "added-capability",
        "securityContext:\n  capabilities:\n    add: [NET_ADMIN]\n",
        ["at '/securityContext/capabilities'", "additional properties 'add' not allowed"],
    ),
    (
        "no-cpu-limit",
        "resources:\n  limits:\n    cpu: null\n",
        ["at '/resources/limits'", "missing property 'cpu'"],
    ),
    (
        "negative-hpa-max",
        "autoscaling:\n  maxReplicas: -1\n",
        ["at '/autoscaling/maxReplicas'", "minimum: got -1, want 1"],
    ),
    (
        "operator-bad-extra-deployment",
        "operator:\n  extraDeployments: [Not_A_Name]\n",
        ["at '/operator/extraDeployments/0'", "'Not_A_Name' does not match"],
    ),
    (
        "operator-unknown-key",
        "operator:\n  replicas: 2\n",
        ["at '/operator'", "additional properties 'replicas' not allowed"],
    ),
    (
        "out-of-range-topk",
        "requestLimits:\n  maxTopk: 5000\n",
        ["at '/requestLimits/maxTopk'", "maximum: got 5,000, want 1,000"],
    ),
    ("batch-no-parallelism", "batch:\n  parallelism: 0\n", ["at '/batch/parallelism'", "minimum: got 0, want 1"]),
    ("batch-shards-not-a-number", "batch:\n  completions: two\n", ["at '/batch/completions'", "want integer"]),
    ("batch-shards-fraction", "batch:\n  completions: 2.5\n", ["at '/batch/completions'", "want integer"]),
    (
        "batch-more-shards-than-batch-run-takes",
        "batch:\n  completions: 100000\n",
        ["at '/batch/completions'", "maximum: got 100,000, want 99,999"],
    ),
    ("batch-input-not-s3", "batch:\n  input: my-bucket/images\n", ["at '/batch/input'", "does not match"]),
    ("batch-unknown-key", "batch:\n  shards: 4\n", ["at '/batch'", "additional properties 'shards' not allowed"]),
]

# The chart's cross-field checks (`fail` in templates/_helpers.tpl) stop `helm template` / `helm install`
# and say which values to change. (`helm lint` reports template `fail`s only as INFO, so it is not asserted.)
TEMPLATE_ERRORS = [
    ("latest-tag", "image:\n  tag: latest\n", ['image.tag must not be "latest"']),
    (
        "hpa-min-above-max",
        "autoscaling:\n  minReplicas: 5\n  maxReplicas: 3\n",
        ["autoscaling.minReplicas (5) must not exceed autoscaling.maxReplicas (3)"],
    ),
    (
        "pdb-blocks-drains",
        "podDisruptionBudget:\n  maxUnavailable: ''\n  minAvailable: 3\n",
        ["podDisruptionBudget.minAvailable (3) must be below the minimum replica count (3)"],
    ),
    (
        "pdb-single-replica",
        "autoscaling:\n  enabled: false\nreplicaCount: 1\n",
        ["podDisruptionBudget.maxUnavailable (1) must be below the minimum replica count (1)"],
    ),
    (
        "pdb-both-set",
        "podDisruptionBudget:\n  minAvailable: 1\n",
        ["set exactly one of maxUnavailable and minAvailable"],
    ),
    (
        "grace-period-too-short",
        "terminationGracePeriodSeconds: 30\n",
        ["terminationGracePeriodSeconds (30) must be longer than", "(75)"],
    ),
    (
        "probe-timeout-too-short",
        "probes:\n  readiness:\n    timeoutSeconds: 2\n",
        ["probes.readiness.timeoutSeconds (2) must be longer than probes.predictTimeoutSeconds (3)"],
    ),
    (
        "internet-facing-http",
        "ingress:\n  scheme: internet-facing\n",
        ["ingress.scheme internet-facing needs ingress.https.enabled=true"],
    ),
    (
        "https-without-certificate",
        "ingress:\n  https:\n    enabled: true\n",
        ["ingress.https.enabled needs ingress.https.certificateArn, or ingress.hosts"],
    ),
    (
        "auth-without-https",
        "ingress:\n  auth:\n    type: cognito\n",
        ["ingress.auth.type cognito needs ingress.https.enabled=true"],
    ),
    (
        "operator-latest-tag",
        "operator:\n  enabled: true\n  image:\n    tag: latest\n",
        ['operator.image.tag must not be "latest"'],
    ),
    (
        "batch-without-its-values",
        "batch:\n  enabled: true\n",
        ["required batch values are empty", "--set batch.input=", "--set batch.output=", "--set batch.version="],
    ),
    (
        "batch-without-a-model",
        "batch:\n  enabled: true\n  input: s3://in/x/\n  output: s3://out/y/\n",
        ["required batch values are empty", "--set batch.version=N", "or --set batch.channel=NAME"],
    ),
    (
        "batch-version-and-channel",
        "batch:\n  enabled: true\n  input: s3://in/x/\n  output: s3://out/y/\n  version: 3\n  channel: stable\n",
        ["batch.version (3) and batch.channel (stable) are both set"],
    ),
    (
        "batch-more-failed-indexes-than-indexes",
        "batch:\n  enabled: true\n  input: s3://in/x/\n  output: s3://out/y/\n  version: 3\n"
        "  completions: 2\n  maxFailedIndexes: 3\n",
        ["batch.maxFailedIndexes (3) must not exceed batch.completions (2)"],
    ),
]


def _write(tmp_path: Path, case: str, content: str) -> Path:
    bad = tmp_path / f"{case}.yaml"
    bad.write_text(content)
    return bad


def _assert_fails(proc: subprocess.CompletedProcess[str], what: str, case: str, expected: list[str]) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{what} accepted {case}:\n{output}"
    for text in expected:
        assert text in output, f"{what} on {case}: {text!r} not in:\n{output}"


@pytest.mark.parametrize(("case", "content", "expected"), SCHEMA_ERRORS, ids=[c[0] for c in SCHEMA_ERRORS])
def test_schema_rejects_bad_values(helm: Helm, tmp_path: Path, case: str, content: str, expected: list[str]) -> None:
    bad = _write(tmp_path, case, content)
    _assert_fails(helm.lint([bad]), "helm lint", case, expected)
    _assert_fails(run(helm.template_cmd([bad])), "helm template", case, expected)


@pytest.mark.parametrize(("case", "content", "expected"), TEMPLATE_ERRORS, ids=[c[0] for c in TEMPLATE_ERRORS])
def test_cross_field_checks_reject_bad_values(
    helm: Helm, tmp_path: Path, case: str, content: str, expected: list[str]
) -> None:
    bad = _write(tmp_path, case, content)
    _assert_fails(run(helm.template_cmd([bad])), "helm template", case, expected)
