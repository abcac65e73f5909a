"""Build the CDK app from a validated config: one function, used by infra/app.py and by the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, DefaultStackSynthesizer, Stack, Validations
from cdk_nag import AwsSolutionsChecks

from . import nag as nag_module
from .config import InfraConfig
from .frontdoor import FrontDoorStack
from .naming import PROJECT
from .network import NetworkStack
from .observability import ObservabilityStack
from .roles import RolesStack
from .store import StoreStack

# Feature flags pinned here (no cdk.json), so a CDK upgrade cannot silently change the templates.
CONTEXT = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:stackRelativeExports": True,
    "aws:cdk:disable-version-reporting": True,
    "aws:cdk:enable-path-metadata": False,
    "aws:cdk:enable-asset-metadata": False,
}


@dataclass
class Built:
    app: App
    stacks: dict[str, Stack]


def build(cfg: InfraConfig, outdir: Path, *, nag: bool = True) -> Built:
    nag_module.ACKS.clear()
    app = App(outdir=str(outdir), context=CONTEXT, analytics_reporting=False)

    def synthesizer() -> DefaultStackSynthesizer:
        # Deployed with plain `aws cloudformation deploy`: no CDK bootstrap stack, so no version rule.
        return DefaultStackSynthesizer(generate_bootstrap_version_rule=False)

    store = StoreStack(app, cfg, synthesizer=synthesizer())
    roles = RolesStack(app, cfg, store, synthesizer=synthesizer())
    stacks: dict[str, Stack] = {
        "store": store,
        "roles": roles,
        "network": NetworkStack(app, cfg, synthesizer=synthesizer()),
        "frontdoor": FrontDoorStack(app, cfg, synthesizer=synthesizer()),
        "observability": ObservabilityStack(app, cfg, synthesizer=synthesizer()),
    }
    for stack in stacks.values():
        stack.tags.set_tag("project", PROJECT)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return Built(app, stacks)
