"""Fixtures for the chart tests: the real helm / kubectl / checkov binaries and the rendered chart variants.

Binaries come from $HELM, $KUBECTL and $CHECKOV (absolute paths, set by `make test`), falling back to the
copies `make tools checkov` installs under .tools/. A missing binary skips the tests that need it.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import yaml

from tests.helpers.chart import CHART, VARIANTS, Helm, account_overrides, tool


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return tool("HELM", ".tools/bin/helm")


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    return tool("KUBECTL", ".tools/bin/kubectl")


@pytest.fixture(scope="session")
def checkov_bin() -> str:
    return tool("CHECKOV", ".tools/checkov/bin/checkov")


@pytest.fixture(scope="session")
def promql_parser() -> str:
    """The lezer-promql package.json `make promql` installs; its node_modules is where node finds the parser."""
    package = tool("PROMQL", ".tools/promql/node_modules/@prometheus-io/lezer-promql/package.json", executable=False)
    if shutil.which("node") is None:
        pytest.skip("node not found: the PromQL parser runs on node")
    return package


@pytest.fixture(scope="session")
def helm(helm_bin: str) -> Helm:
    return Helm(helm_bin)


@pytest.fixture(scope="session")
def rendered_raw(helm: Helm) -> dict[str, str]:
    """`helm template` output (helm test hooks included) of every variant, rendered once per session."""
    return {name: helm.template_raw(values) for name, values in VARIANTS.items()}


@pytest.fixture(scope="session")
def rendered(rendered_raw: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {name: [d for d in yaml.safe_load_all(raw) if d] for name, raw in rendered_raw.items()}


@pytest.fixture(scope="session")
def variant_values() -> dict[str, dict[str, Any]]:
    """The values each variant was rendered with (defaults merged with its files, then the example account values
    the helper passes with --set; maps merged deeply)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for k, v in over.items():
                out[k] = merge(base.get(k), v) if k in base else v
            return out
        return over

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    out = {}
    for name, files in VARIANTS.items():
        merged = defaults
        for f in files:
            merged = merge(merged, yaml.safe_load(f.read_text()) or {})
        out[name] = merge(merged, account_overrides(files))
    return out
