"""The infra tests' helpers: synthesize infra/ (from infra/config.json or another config), the findings with every
cdk-nag acknowledgment off, cfn-lint, checkov, and resource lookups in a template. Importing this module puts
infra/ on sys.path, so ``resnet_infra`` imports after it. The session's synthesis is a fixture in
tests/infra/conftest.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TEMPLATES = INFRA / "templates"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))


@dataclass
class Synth:
    outdir: Path
    templates: dict[str, dict[str, Any]]  # stack key (store, roles, ...) -> template
    stack_names: dict[str, str]  # stack key -> CloudFormation stack name
    acks: list[tuple[str, str, str]]  # (construct path, rule, reason)
    report: dict[str, Any] | None


def synthesize(outdir: Path, data: dict[str, Any] | None = None) -> Synth:
    """Synthesize from infra/config.json, or from `data` (a decoded config) when given."""
    pytest.importorskip("aws_cdk", reason="needs the 'infra' extra (aws-cdk-lib)")
    from resnet_infra import config, nag
    from resnet_infra.app import build

    built = build(config.load() if data is None else config.parse(data), outdir)
    assembly = built.app.synth()
    by_name = {s.stack_name: s.template for s in assembly.stacks}
    report_path = outdir / "validation-report.json"
    return Synth(
        outdir=outdir,
        templates={key: by_name[stack.stack_name] for key, stack in built.stacks.items()},
        stack_names={key: stack.stack_name for key, stack in built.stacks.items()},
        acks=list(nag.ACKS),
        report=json.loads(report_path.read_text()) if report_path.exists() else None,
    )


def findings_without_acks(outdir: Path, data: dict[str, Any] | None = None) -> dict[str, set[str]]:
    """rule id -> construct paths, from a synth with every acknowledgment switched off."""
    pytest.importorskip("aws_cdk")
    from resnet_infra import nag

    nag.ENABLED = False
    try:
        with pytest.raises(RuntimeError, match="ValidationFailed"):
            synthesize(outdir, data)
    finally:
        nag.ENABLED = True
    report = json.loads((outdir / "validation-report.json").read_text())
    out: dict[str, set[str]] = {}
    for plugin in report["pluginReports"]:
        for v in plugin["violations"]:
            out.setdefault(v["ruleName"], set()).update(c["constructPath"] for c in v["violatingConstructs"])
    return out


def unmatched_acks(synth: Synth, findings: dict[str, set[str]]) -> list[str]:
    """Acknowledgments that match no finding of the unacknowledged synth (stale ones)."""
    return [
        f"{rule} on {path}"
        for path, rule, _ in synth.acks
        if not any(p == path or p.startswith(path + "/") for p in findings.get(rule, set()))
    ]


def unacked_findings(synth: Synth, findings: dict[str, set[str]]) -> list[str]:
    """Findings of the unacknowledged synth that no acknowledgment covers where they occur."""
    acked = {(rule, path) for path, rule, _ in synth.acks}
    return [
        f"{rule} at {p}"
        for rule, paths in findings.items()
        for p in paths
        if not any(r == rule and (p == a or p.startswith(a + "/")) for r, a in acked)
    ]


def write_templates(synth: Synth, directory: Path) -> list[Path]:
    paths = []
    for key, template in synth.templates.items():
        path = directory / f"{synth.stack_names[key]}.json"
        path.write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def cfn_lint_errors(paths: list[Path]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 4, 8, 12), f"cfn-lint crashed: {proc.stderr[-2000:]}"  # 4/8: warnings/info only
    return [p for p in json.loads(proc.stdout or "[]") if p["Level"] == "Error"]


def checkov_scan(directory: Path) -> dict[str, Any]:
    """checkov's JSON report on the templates in directory (cloudformation framework only)."""
    from tests.helpers.chart import tool

    checkov = tool("CHECKOV", ".tools/checkov/bin/checkov")
    proc = subprocess.run(
        [checkov, "-d", str(directory), "--framework", "cloudformation", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), f"checkov crashed:\n{proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    assert not isinstance(report, list), "expected only the cloudformation framework"
    return dict(report)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]
