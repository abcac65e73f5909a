"""cdk-nag, cfn-lint and checkov on the synthesized templates, and the drift check on infra/templates/.

cdk-nag runs inside every synth (an unacknowledged error fails it). A second synth with the acknowledgments
switched off proves that each one still matches a real finding, so none is stale.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import INFRA, TEMPLATES, Synth, synthesize

pytestmark = pytest.mark.cdk

ROOT = INFRA.parent
README = INFRA / "README.md"


def test_cdk_nag_passes_with_no_unacknowledged_finding(synth: Synth) -> None:
    # The synth itself would have raised on an unacknowledged error; the report says the same.
    assert synth.report is not None
    failures = [p for p in synth.report["pluginReports"] if p.get("conclusion") == "failure"]
    assert not failures, json.dumps(failures, indent=1)[:3000]


@pytest.fixture(scope="session")
def findings_without_acks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """rule id -> construct paths, from a synth with every acknowledgment switched off."""
    pytest.importorskip("aws_cdk")
    from resnet_infra import nag

    outdir = tmp_path_factory.mktemp("cdk-out-unacked")
    nag.ENABLED = False
    try:
        with pytest.raises(RuntimeError, match="ValidationFailed"):
            synthesize(outdir)
    finally:
        nag.ENABLED = True
    report = json.loads((outdir / "validation-report.json").read_text())
    out: dict[str, set[str]] = {}
    for plugin in report["pluginReports"]:
        for v in plugin["violations"]:
            out.setdefault(v["ruleName"], set()).update(c["constructPath"] for c in v["violatingConstructs"])
    return out


def test_every_acknowledgment_matches_a_real_finding(synth: Synth, findings_without_acks: dict[str, set[str]]) -> None:
    assert synth.acks
    for path, rule, reason in synth.acks:
        paths = findings_without_acks.get(rule, set())
        assert any(p == path or p.startswith(path + "/") for p in paths), f"stale acknowledgment {rule} on {path}"
        assert len(reason) >= 30


def test_every_finding_is_acknowledged_where_it_occurs(
    synth: Synth, findings_without_acks: dict[str, set[str]]
) -> None:
    acked = {(rule, path) for path, rule, _ in synth.acks}
    for rule, paths in findings_without_acks.items():
        for p in paths:
            assert any(r == rule and (p == a or p.startswith(a + "/")) for r, a in acked), f"{rule} at {p}"


def _written(synth: Synth, tmp_path: Path) -> list[Path]:
    paths = []
    for key, template in synth.templates.items():
        path = tmp_path / f"{synth.stack_names[key]}.json"
        path.write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def test_committed_templates_match_a_fresh_synth(synth: Synth) -> None:
    committed = {p.name: p.read_text() for p in sorted(TEMPLATES.glob("*.json"))}
    fresh = {
        f"{synth.stack_names[key]}.json": json.dumps(t, indent=1, sort_keys=True) + "\n"
        for key, t in synth.templates.items()
    }
    assert set(committed) == set(fresh), "run `make infra`"
    for name, text in fresh.items():
        assert committed[name] == text, f"infra/templates/{name} drifted from infra/: run `make infra`"


def test_templates_are_deterministic_and_need_no_bootstrap(synth: Synth) -> None:
    for key, template in synth.templates.items():
        text = json.dumps(template)
        assert "BootstrapVersion" not in text, key
        assert "CDKMetadata" not in template["Resources"], key
        assert "cdk-hnb659fds" not in text, f"{key} refers to CDK bootstrap assets"


def test_cfn_lint_reports_no_errors(synth: Synth, tmp_path: Path) -> None:
    paths = _written(synth, tmp_path)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 4, 8, 12), f"cfn-lint crashed: {proc.stderr[-2000:]}"  # 4/8: warnings/info only
    problems = json.loads(proc.stdout or "[]")
    errors = [p for p in problems if p["Level"] == "Error"]
    assert not errors, json.dumps(errors, indent=1)[:3000]


@pytest.fixture(scope="session")
def checkov_report(synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.chart.chart_helpers import tool

    checkov = tool("CHECKOV", ".tools/checkov/bin/checkov")
    out = tmp_path_factory.mktemp("checkov-infra")
    _written(synth, out)
    proc = subprocess.run(
        [checkov, "-d", str(out), "--framework", "cloudformation", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), f"checkov crashed:\n{proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    assert not isinstance(report, list), "expected only the cloudformation framework"
    return dict(report)


def test_checkov_reports_zero_failures(checkov_report: dict[str, Any], synth: Synth) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50
    scanned = {Path(c["file_path"]).stem for c in checkov_report["results"]["passed_checks"]}
    assert scanned == set(synth.stack_names.values())
    failures = [(f["check_id"], f["resource"]) for f in checkov_report["results"]["failed_checks"]]
    assert not failures, failures


def test_every_checkov_skip_is_justified(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped
    for s in skipped:
        assert len(s["check_result"].get("suppress_comment") or "") >= 30, f"{s['check_id']} {s['resource']}"


def _readme_rows(heading: str) -> dict[str, str]:
    section = README.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([^`]+)` \|[^|]*\| (.+?) \|$", section, flags=re.M))


def test_readme_lists_every_suppression(synth: Synth, checkov_report: dict[str, Any]) -> None:
    rows = _readme_rows("Suppressions")
    nag_rules = {rule for _, rule, _ in synth.acks}
    checkov_checks = {s["check_id"] for s in checkov_report["results"]["skipped_checks"]}
    assert set(rows) == nag_rules | checkov_checks
    assert all(len(reason) >= 30 for reason in rows.values())


def _install_steps() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- install-aws:begin -->", 1)[1].split("<!-- install-aws:end -->", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("```")]


def test_readme_install_on_aws_deploys_every_template_with_its_parameters(synth: Synth) -> None:
    steps = _install_steps()
    assert steps[1].startswith("eksctl create cluster -f k8s/eksctl/cluster.yaml")
    deploys = [s for s in steps if s.startswith("aws cloudformation deploy")]
    order = [re.search(r"--stack-name (\S+)", s).group(1) for s in deploys]  # type: ignore[union-attr]
    assert order == [synth.stack_names[k] for k in ("store", "roles", "network", "frontdoor", "observability")]
    for step, key in zip(deploys, ("store", "roles", "network", "frontdoor", "observability"), strict=True):
        assert f"--template-file infra/templates/{synth.stack_names[key]}.json" in step
        required = {p for p, spec in synth.templates[key].get("Parameters", {}).items() if "Default" not in spec}
        given = set(re.findall(r" (\w+)=", step.split("--parameter-overrides", 1)[-1])) if required else set()
        assert required <= given, f"{key}: {required - given} not passed"
        needs_iam = any(r["Type"] == "AWS::IAM::Role" for r in synth.templates[key]["Resources"].values())
        assert ("--capabilities" in step) == needs_iam, key
    assert steps.index(deploys[-1]) < next(i for i, s in enumerate(steps) if s.startswith("helm install"))


def test_readme_install_on_aws_reads_outputs_that_exist(synth: Synth) -> None:
    outputs = {synth.stack_names[k]: set(t.get("Outputs", {})) for k, t in synth.templates.items()}
    text = "\n".join(_install_steps())
    used = re.findall(r"\$\(out (\S+) (\w+)\)", text)
    assert ("resnet-serving-roles", "ServingRoleArn") in used
    assert ("resnet-serving-roles", "SageMakerExecutionRoleArn") in used
    for stack, output in used:
        assert output in outputs[stack], f"{stack} has no output {output}"
    helm = next(s for s in _install_steps() if s.startswith("helm install"))
    assert (
        'serviceAccount.annotations."eks\\.amazonaws\\.com/role-arn"=$(out resnet-serving-roles ServingRoleArn)' in helm
    )


def test_readme_install_on_aws_sagemaker_step_parses_and_targets_the_stacks_endpoint() -> None:
    """The deploy line is a real `resnet-serving` command line, and it names the endpoint the front door
    integrates with and the alarms watch (infra/config.json), so guardrails use the stacks' alarms."""
    import shlex

    from resnet_infra.config import load

    from resnet_serving.cli import build_parser

    line = next(s for s in _install_steps() if s.startswith("resnet-serving sagemaker deploy"))
    filled = re.sub(r"\$\(out \S+ (\w+)\)", lambda m: f"s3://bucket/{m.group(1)}", line).replace(
        "<ECR URI of the serving image>", "123456789012.dkr.ecr.us-east-1.amazonaws.com/resnet-serving:0.1.0"
    )
    args = build_parser().parse_args(shlex.split(filled)[1:])
    assert args.endpoint == load().sagemaker.endpoint_name
    assert (args.channel, args.role, args.kms_key) == (
        "stable",
        "s3://bucket/SageMakerExecutionRoleArn",
        "s3://bucket/KeyArn",
    )
