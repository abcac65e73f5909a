"""Fixtures for the infra tests: one synthesis of infra/ per session (a synth costs seconds of jsii start-up).

`synth` builds the app from infra/config.json with cdk-nag on, exactly as `make infra` does; a cdk-nag error
fails that synth, and with it every test here.
"""

from __future__ import annotations

import json
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


def synthesize(outdir: Path) -> Synth:
    pytest.importorskip("aws_cdk", reason="needs the 'infra' extra (aws-cdk-lib)")
    from resnet_infra import config, nag
    from resnet_infra.app import build

    built = build(config.load(), outdir)
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


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-out"))


@pytest.fixture(scope="session")
def templates(synth: Synth) -> dict[str, dict[str, Any]]:
    return synth.templates


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]
