"""cdk-nag, cfn-lint and checkov on the synthesized templates, and the drift check on infra/templates/.

cdk-nag runs inside every synth (an unacknowledged error fails it). A second synth with the acknowledgments
switched off proves that each one still matches a real finding, so none is stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.infra import (
    INFRA,
    TEMPLATES,
    Synth,
    cfn_lint_errors,
    checkov_scan,
    findings_without_acks,
    unacked_findings,
    unmatched_acks,
    write_templates,
)
from tests.helpers.install_page import block, commands

pytestmark = pytest.mark.cdk

README = INFRA / "README.md"


def test_cdk_nag_passes_with_no_unacknowledged_finding(synth: Synth) -> None:
    # The synth itself would have raised on an unacknowledged error; the report says the same.
    assert synth.report is not None
    failures = [p for p in synth.report["pluginReports"] if p.get("conclusion") == "failure"]
    assert not failures, json.dumps(failures, indent=1)[:3000]


@pytest.fixture(scope="session")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    return findings_without_acks(tmp_path_factory.mktemp("cdk-out-unacked"))


def test_every_acknowledgment_matches_a_real_finding(synth: Synth, findings: dict[str, set[str]]) -> None:
    assert synth.acks
    assert not unmatched_acks(synth, findings), "stale acknowledgments"
    assert all(len(reason) >= 30 for _, _, reason in synth.acks)


def test_every_finding_is_acknowledged_where_it_occurs(synth: Synth, findings: dict[str, set[str]]) -> None:
    assert findings
    assert not unacked_findings(synth, findings)


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
    errors = cfn_lint_errors(write_templates(synth, tmp_path))
    assert not errors, json.dumps(errors, indent=1)[:3000]


@pytest.fixture(scope="session")
def checkov_report(synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("checkov-infra")
    write_templates(synth, out)
    return checkov_scan(out)


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


OUT = re.compile(r"\$\(out (\S+) (\w+)\)")
APP_RELEASE = "helm install resnet50-serving"


#: The page's marked block these checks read (tests/unit/test_docs_commands.py); tests/install/test_install_page.py
#: runs it.
INSTALL_BLOCK = "install-aws"


def _install_steps() -> list[str]:
    return commands(block())


def _assigned(steps: list[str]) -> dict[str, str]:
    """NAME → the command substitution the block assigns it (`NAME=$(out STACK OUTPUT)`)."""
    return {m.group(1): m.group(2) for s in steps if (m := re.fullmatch(r"([A-Z_]+)=(\$\(.*\))", s))}


def test_readme_install_on_aws_deploys_every_template_with_its_parameters(synth: Synth) -> None:
    steps = _install_steps()
    cluster = next(i for i, s in enumerate(steps) if s.startswith("eksctl create cluster -f k8s/eksctl/cluster.yaml"))
    deploys = [s for s in steps if s.startswith("aws cloudformation deploy")]
    assert cluster < steps.index(deploys[0])
    order = [re.search(r"--stack-name (\S+)", s).group(1) for s in deploys]  # type: ignore[union-attr]
    assert order == [synth.stack_names[k] for k in ("store", "roles", "network", "frontdoor", "observability")]
    for step, key in zip(deploys, ("store", "roles", "network", "frontdoor", "observability"), strict=True):
        assert f"--template-file infra/templates/{synth.stack_names[key]}.json" in step
        required = {p for p, spec in synth.templates[key].get("Parameters", {}).items() if "Default" not in spec}
        given = set(re.findall(r" (\w+)=", step.split("--parameter-overrides", 1)[-1])) if required else set()
        assert required <= given, f"{key}: {required - given} not passed"
        needs_iam = any(r["Type"] == "AWS::IAM::Role" for r in synth.templates[key]["Resources"].values())
        assert ("--capabilities" in step) == needs_iam, key
    assert steps.index(deploys[-1]) < next(i for i, s in enumerate(steps) if s.startswith("helm install resnet50"))


def test_readme_install_on_aws_reads_outputs_that_exist(synth: Synth) -> None:
    outputs = {synth.stack_names[k]: set(t.get("Outputs", {})) for k, t in synth.templates.items()}
    text = "\n".join(_install_steps())
    used = re.findall(r"\$\(out (\S+) (\w+)\)", text)
    assert ("resnet-serving-roles", "ServingRoleArn") in used
    assert ("resnet-serving-roles", "SageMakerExecutionRoleArn") in used
    for stack, output in used:
        if stack.startswith("eksctl-"):  # eksctl's own stack, not one of ours
            continue
        assert output in outputs[stack], f"{stack} has no output {output}"
    helm = next(s for s in _install_steps() if s.startswith("helm install resnet50"))
    assert (
        'serviceAccount.annotations."eks\\.amazonaws\\.com/role-arn"=$(out resnet-serving-roles ServingRoleArn)' in helm
    )


def test_readme_install_on_aws_sagemaker_step_parses_and_targets_the_stacks_endpoint() -> None:
    """The deploy line is a real `resnet-serving` command line, and it names the endpoint the front door
    integrates with and the alarms watch (infra/config.json), so guardrails use the stacks' alarms."""
    import shlex

    from resnet_infra.config import load

    from resnet_serving.cli import build_parser

    steps = _install_steps()
    assigned = _assigned(steps)
    line = next(s for s in steps if s.startswith("resnet-serving sagemaker deploy"))
    filled = re.sub(r'"\$(\w+)"', lambda m: f"${m.group(1)}", line)
    filled = re.sub(r"\$(\w+)", lambda m: m.group(1), filled)
    args = build_parser().parse_args(shlex.split(filled)[1:])
    assert args.endpoint == load().sagemaker.endpoint_name
    assert args.channel == "stable"
    assert assigned[args.role] == "$(out resnet-serving-roles SageMakerExecutionRoleArn)"
    assert assigned[args.kms_key] == "$(out resnet-serving-store KeyArn)"
    # sized by the capacity file (src/resnet_serving/plan/capacity.json), as the stacks' throttle and alarms are
    sizing = (
        "--instance-type",
        "--instance-count",
        "--autoscale-min",
        "--autoscale-max",
        "--autoscale-target",
        "--bench",
    )
    assert not [flag for flag in sizing if flag in line], line
