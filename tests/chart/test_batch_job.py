"""The batch Indexed Job (templates/batch-job.yaml, issue #30): what `batch.enabled` renders, validated against the
Kubernetes schemas (kubernetes-validate, strict) and checkov, and its pod command run for real.

Nothing is mocked, but there is no API server: the Job is rendered by the real helm and validated, never applied,
so Kubernetes' own part (one pod per index with ``JOB_COMPLETION_INDEX``, the podFailurePolicy, the retries) is not
exercised here. The pod command is the rendered container's command, args and env, run as processes of
.venv/bin with ``JOB_COMPLETION_INDEX`` set as Kubernetes sets it, with ``file://`` folders in place of the S3
input, output and model store (the store holds a real archive, random weights). The "full" variant turns the Job
on, so tests/chart/test_chart_validate.py, test_chart_checkov.py and test_chart_render.py's security checks cover
it too; tests/chart/test_chart_lint.py holds the values it refuses.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from resnet_serving.batch.shard import ENV_INDEX, shard_of
from tests.fixtures.archives import file_store
from tests.fixtures.images import jpeg, png
from tests.helpers.chart import (
    ACCOUNT_VALUES,
    CHART,
    EXAMPLE_VALUES,
    KUBE_VERSIONS_VALIDATED,
    NAMESPACE,
    RELEASE,
    TIMEOUT_S,
    VARIANTS,
    Helm,
    container,
    deployment,
    find,
    one,
    run,
)
from tests.helpers.docs_pages import DOCS, block

Docs = list[dict[str, Any]]
JOB = f"{RELEASE}-batch"
INPUT = "s3://batch-images/2026-12/"
OUTPUT = "s3://batch-results/2026-12/"
#: The values a run needs (batch.store defaults to model.store, which the account values give).
REQUIRED = (f"batch.input={INPUT}", f"batch.output={OUTPUT}", "batch.version=1")
ENABLED = ("batch.enabled=true", *REQUIRED)
#: What `batch run` exits with for a mistake in what it was given (resnet_serving.cli.main: a 4xx error).
CALLERS_MISTAKE = 2
BATCH_PAGE = DOCS / "how-to" / "batch.md"


def batch_objects(docs: Docs) -> Docs:
    return [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "batch"]


def pod_container(job: dict[str, Any]) -> dict[str, Any]:
    return container(job["spec"]["template"]["spec"], "batch")


def serving(docs: Docs) -> dict[str, Any]:
    return container(deployment(docs)["spec"]["template"]["spec"], "torchserve")


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def validate(doc: dict[str, Any]) -> None:
    for version in KUBE_VERSIONS_VALIDATED:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.fixture(scope="module")
def enabled(helm: Helm) -> Docs:
    """The chart defaults with the Job on and only what it requires."""
    return helm.template([], sets=ENABLED)


# ---- rendered only when asked for -------------------------------------------------------------------------------
def test_nothing_of_the_batch_job_unless_enabled(rendered: dict[str, Docs]) -> None:
    for variant in sorted(VARIANTS):
        if variant != "full":
            assert batch_objects(rendered[variant]) == [], variant
            assert find(rendered[variant], "Job") == [], variant
    # The "full" variant renders it, so the schema, checkov and security tests over every variant see it.
    assert sorted(d["kind"] for d in batch_objects(rendered["full"])) == ["Job", "NetworkPolicy"]


# ---- the Job ----------------------------------------------------------------------------------------------------
def test_an_indexed_job_of_batch_run_with_the_serving_image_and_identity(enabled: Docs) -> None:
    job = one(enabled, "Job", JOB)
    spec = job["spec"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["batch"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == defaults["completions"] and spec["parallelism"] == defaults["parallelism"]
    assert spec["backoffLimitPerIndex"] == defaults["backoffLimitPerIndex"]
    assert spec["maxFailedIndexes"] == defaults["maxFailedIndexes"]
    assert spec["activeDeadlineSeconds"] == defaults["activeDeadlineSeconds"]
    assert spec["ttlSecondsAfterFinished"] == defaults["ttlSecondsAfterFinished"]
    assert spec["podReplacementPolicy"] == "Failed", "a replacement must not write a shard its predecessor still writes"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never", "podFailurePolicy requires it"
    assert pod["serviceAccountName"] == deployment(enabled)["spec"]["template"]["spec"]["serviceAccountName"]
    assert pod["automountServiceAccountToken"] is False
    assert "nodeSelector" not in pod and "tolerations" not in pod
    c = pod_container(job)
    assert c["image"] == serving(enabled)["image"]
    assert c["command"] == ["resnet-serving"]
    assert c["args"] == [
        *("batch", "run", "--input", INPUT, "--output", OUTPUT),
        *("--store", ACCOUNT_VALUES["model.store"], "--version", "1", "--shards", str(defaults["completions"])),
    ]
    # An image is judged and classified as the serving pods judge it: the same limits, top-k and precision.
    served = env_of(serving(enabled))
    env = env_of(c)
    shared = [name for name in served if name.startswith("RESNET_SERVING_") and name != "RESNET_SERVING_JAVA_OPTS"]
    assert len(shared) >= 6
    assert {n: env[n] for n in shared} == {n: served[n] for n in shared}
    assert c["resources"] == defaults["resources"]
    assert c["securityContext"] == serving(enabled)["securityContext"]
    assert pod["securityContext"] == deployment(enabled)["spec"]["template"]["spec"]["securityContext"]
    # The pods serve nothing: their NetworkPolicy selects them and admits no connection.
    np = one(enabled, "NetworkPolicy", JOB)
    assert np["spec"]["podSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert np["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in np["spec"]
    for doc in (job, np):
        validate(doc)


def test_the_pod_failure_policy_fails_on_the_callers_mistake_and_ignores_disruptions(enabled: Docs) -> None:
    rules = one(enabled, "Job", JOB)["spec"]["podFailurePolicy"]["rules"]
    assert rules == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "batch", "operator": "In", "values": [CALLERS_MISTAKE]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]


def test_identity_nodes_channel_and_store_follow_the_values(helm: Helm) -> None:
    docs = helm.template(
        [],
        sets=[
            *("batch.enabled=true", f"batch.input={INPUT}", f"batch.output={OUTPUT}", "batch.channel=stable"),
            *("batch.store=s3://other-models/store", "batch.serviceAccountName=resnet-serving-batch"),
            *("batch.completions=16", "batch.parallelism=2", "batch.maxFailedIndexes=3"),
            "batch.nodeSelector.eks\\.amazonaws\\.com/capacityType=SPOT",
            *("batch.tolerations[0].key=spot", "batch.tolerations[0].operator=Exists"),
            *("batch.tolerations[0].effect=NoSchedule", "batch.extraArgs={--readers=16}"),
            "networkPolicy.enabled=false",
        ],
    )
    job = one(docs, "Job", JOB)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "resnet-serving-batch"
    assert pod["nodeSelector"] == {"eks.amazonaws.com/capacityType": "SPOT"}
    assert pod["tolerations"] == [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["maxFailedIndexes"]) == (16, 2, 3)
    args = pod_container(job)["args"]
    assert args[args.index("--store") + 1] == "s3://other-models/store"
    assert args[args.index("--channel") + 1] == "stable" and "--version" not in args
    assert args[args.index("--shards") + 1] == "16"
    assert args[-1] == "--readers=16"
    assert find(docs, "NetworkPolicy", JOB) == []
    validate(job)


def test_the_schema_check_is_strict_for_the_job(enabled: Docs) -> None:
    """A control: kubernetes-validate knows the Job's Indexed fields, so the passing validations above mean
    something (a misspelt one, or a wrong type, is refused)."""
    job = one(enabled, "Job", JOB)
    typo = {**job, "spec": {**job["spec"], "backoffLimitPerIndx": 3}}
    wrong = {**job, "spec": {**job["spec"], "completionMode": 7}}
    for bad in (typo, wrong):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, KUBE_VERSIONS_VALIDATED[-1], strict=True)


def test_checkov_passes_the_job_without_a_single_skip(
    helm: Helm, enabled: Docs, checkov_bin: str, tmp_path: Path
) -> None:
    """The full variant's Job (image pinned by digest) passes every checkov check with no skip at all; the defaults'
    (pinned by tag) with the chart's .checkov.yaml, as users run it. A Job needs no probes (checkov's CKV_K8S_8
    and _9 do not apply to Jobs), so no object-level skip either."""
    full = batch_objects(helm.template(VARIANTS["full"]))
    cases = {"full": (full, []), "default": (batch_objects(enabled), ["--config-file", str(CHART / ".checkov.yaml")])}
    for name, (docs, config) in cases.items():
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump_all(docs))
        proc = run(
            [checkov_bin, "-f", str(manifest), "--framework", "kubernetes", "-o", "json", "--skip-download", *config]
        )
        assert proc.returncode in (0, 1), proc.stderr
        report = json.loads(proc.stdout)
        report = report[0] if isinstance(report, list) else report
        results = report["results"]
        assert results["failed_checks"] == [], [f["check_id"] for f in results["failed_checks"]]
        assert f"Job.{NAMESPACE}.{JOB}" in {c["resource"] for c in results["passed_checks"]}, name
        assert report["summary"]["passed"] >= 50, name
        if name == "full":
            assert results.get("skipped_checks", []) == []


# ---- the pod command, run for real ------------------------------------------------------------------------------
#: A handful of inputs: good JPEGs and PNGs, and one bad image, which must be an error line and not fail its shard.
INPUTS = {
    **{f"good/{n:02d}.jpg": jpeg(96, 64) for n in range(5)},
    "good/05.png": png(80, 60),
    "bad/truncated.jpg": jpeg(96, 64)[:200],
}


@pytest.fixture(scope="module")
def file_run(tmp_path_factory: pytest.TempPathFactory, archive_dir: Path) -> tuple[str, str, str, Path]:
    """(input, output, store) as ``file://`` URIs, and the output folder: the images above, nothing written yet, and
    the session's archive as resnet50 v1."""
    root = tmp_path_factory.mktemp("batch-job")
    images = root / "in"
    for key, data in INPUTS.items():
        (images / key).parent.mkdir(parents=True, exist_ok=True)
        (images / key).write_bytes(data)
    out = root / "out"
    return images.as_uri() + "/", out.as_uri() + "/", file_store(root / "store", archive_dir, "1"), out


def pod_process(job: dict[str, Any], swap: dict[str, str], home: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of the Job's pod as a process here: the container's command resolved in .venv/bin, its args with
    the S3 URIs swapped for ``file://`` ones, and its env, with HOME (the pod's /tmp emptyDir) a folder here. Only
    PATH and a PYTHONPATH this test runs under (the source tree under test) come from this process's environment."""
    c = pod_container(job)
    command = [str(Path(sys.executable).with_name(c["command"][0])), *c["command"][1:]]
    args = [swap.get(a, a) for a in c["args"]]
    assert set(swap) <= set(c["args"]), "every URI swapped is one the pod gets"
    env = env_of(c)
    assert env["HOME"] == "/tmp"
    here = {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    return [*command, *args], {**env, "HOME": str(home), **here}


def test_the_pod_command_runs_each_index_into_one_line_per_image(
    helm: Helm, file_run: tuple[str, str, str, Path], tmp_path: Path
) -> None:
    """completions=2: the rendered pod, run twice at once with JOB_COMPLETION_INDEX=0 and =1 as the Job runs it,
    classifies every input exactly once over the two shards, each key in the shard sha256 assigns it, the bad image
    as an error line."""
    source, output, store, out = file_run
    # fp32, as the suite pins it (tests/conftest.py): `auto` would follow this machine's bf16 support.
    sets = [*ENABLED, "batch.completions=2", "batch.parallelism=2", "torchserve.amp=off"]
    job = one(helm.template([], sets=sets), "Job", JOB)
    argv, env = pod_process(job, {INPUT: source, OUTPUT: output, ACCOUNT_VALUES["model.store"]: store}, tmp_path)
    procs = [
        subprocess.Popen(
            argv, env={**env, ENV_INDEX: str(i)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    summaries = []
    for i, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, f"index {i}:\n{stderr}"
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [s["shard"] for s in summaries] == ["0/2", "1/2"]
    lines: dict[int, list[dict[str, Any]]] = {}
    for i in range(2):
        folder = out / f"shard-{i:05d}-of-00002"
        parts = json.loads((folder / "summary.json").read_text())["parts"]
        lines[i] = [json.loads(x) for p in parts for x in (folder / p).read_text().splitlines()]
        assert all(shard_of(line["key"], 2) == i for line in lines[i]), f"shard {i} holds another shard's key"
        assert summaries[i]["images"] == len(lines[i])
    keys = [line["key"] for shard in lines.values() for line in shard]
    assert sorted(keys) == sorted(INPUTS), "one result line per input, no more, no less"
    by_key = {line["key"]: line for shard in lines.values() for line in shard}
    assert by_key["bad/truncated.jpg"]["error"] == "bad_request"
    for key in INPUTS:
        if key.startswith("good/"):
            assert len(by_key[key]["predictions"]) == int(env["RESNET_SERVING_DEFAULT_TOPK"]), key
            assert by_key[key]["model_version"] == "1"
    assert sum(s["errors"] for s in summaries) == 1 and sum(s["ok"] for s in summaries) == len(INPUTS) - 1


@pytest.mark.parametrize("mistake", ["no-such-version", "empty-input"])
def test_the_pod_exits_with_the_code_the_failure_policy_fails_the_job_on(
    helm: Helm, file_run: tuple[str, str, str, Path], tmp_path: Path, mistake: str
) -> None:
    """The FailJob rule's exit code is the one the pod's own command gives a mistake in what it was given (here a
    version the store lacks, or an input with nothing in it), before any work: retrying would only fail again."""
    source, _, store, _ = file_run
    version = "9" if mistake == "no-such-version" else "1"
    empty = tmp_path / "empty"
    empty.mkdir()
    if mistake == "empty-input":
        source = empty.as_uri() + "/"
    job = one(helm.template([], sets=[*ENABLED, f"batch.version={version}"]), "Job", JOB)
    out = tmp_path / "out"
    argv, env = pod_process(
        job, {INPUT: source, OUTPUT: out.as_uri() + "/", ACCOUNT_VALUES["model.store"]: store}, tmp_path
    )
    proc = subprocess.run(
        argv, env={**env, ENV_INDEX: "0"}, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    (rule,) = [r for r in job["spec"]["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert proc.returncode in rule["onExitCodes"]["values"], proc.stderr
    assert ("--version 9" if mistake == "no-such-version" else "--input") in proc.stderr
    assert not out.exists() or not any(out.rglob("*.jsonl")), "nothing is written before the check"


# ---- the docs page's commands -----------------------------------------------------------------------------------
def test_the_docs_upgrade_renders_the_job_it_waits_for(helm: Helm) -> None:
    """docs/how-to/batch.md's batch-job block: its `helm upgrade --reset-then-reuse-values` rendered with
    `helm template` over the values the release holds (Install on AWS, step 7: the prod overlay and the account
    values), then the block's flags; its `kubectl wait` names that Job in that namespace."""
    helm_line, kubectl_line = block("batch-job")
    argv = shlex.split(helm_line)
    assert argv[:4] == ["helm", "upgrade", RELEASE, "charts/resnet50-serving"]
    assert argv[argv.index("-n") + 1] == NAMESPACE
    assert "--reset-then-reuse-values" in argv, "--reuse-values would leave out the chart's batch defaults"
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert len(argv) == 4 + 2 + 1 + 2 * len(sets), f"a flag the test does not reproduce: {argv}"
    docs = helm.template([EXAMPLE_VALUES["prod"]], sets=sets)
    job = one(docs, "Job", JOB)
    validate(job)
    given = dict(s.split("=", 1) for s in sets)
    args = pod_container(job)["args"]
    assert args[args.index("--input") + 1] == given["batch.input"]
    assert args[args.index("--output") + 1] == given["batch.output"]
    assert args[args.index("--version") + 1] == given["batch.version"]
    assert job["spec"]["completions"] == int(given["batch.completions"]) == int(args[args.index("--shards") + 1])
    assert job["spec"]["parallelism"] == int(given["batch.parallelism"])
    wait = shlex.split(kubectl_line)
    assert wait[:4] == ["kubectl", "-n", NAMESPACE, "wait"]
    assert "--for=condition=Complete" in wait and f"job/{JOB}" in wait
    # The page's other references to the Job (its pods' logs) name it too.
    assert f"batch.kubernetes.io/job-name={JOB}" in " ".join(BATCH_PAGE.read_text().split())
