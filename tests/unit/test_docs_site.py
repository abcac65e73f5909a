"""The docs site builds with `mkdocs build --strict` (what `make docs` runs), its reference pages are generated from
the code, a broken link or an orphan page fails the build, and the README stays a landing page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from tests.helpers.docs_pages import DOCS, README, REPO, text

MKDOCS = Path(sys.executable).with_name("mkdocs")
#: The generated pages (docs/hooks/reference.py): none of them may be committed.
GENERATED = ("cli", "environment", "http-api", "metrics", "chart-values")


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(root / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=root, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = build(REPO, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def page(site: Path, name: str) -> str:
    return re.sub(r"<[^>]+>", "", (site / name / "index.html").read_text(encoding="utf-8"))


def test_the_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file() and (site / "openapi.yaml").is_file()
    assert not (site / "hooks").exists(), "the hook is build code, not a page"


def test_generated_pages_are_not_committed() -> None:
    assert [p for p in GENERATED if (DOCS / "reference" / f"{p}.md").exists()] == []


def test_the_cli_page_has_every_command(site: Path) -> None:
    import argparse

    from resnet_serving.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli = page(site, "reference/cli")
    for name, parser in sub.choices.items():
        assert f"usage: resnet-serving {name}" in cli, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in cli, f"{name} {flag}"


def test_the_environment_page_has_every_setting(site: Path) -> None:
    from resnet_serving.settings import Settings, env_name

    env = page(site, "reference/environment")
    assert [env_name(f.name) for f in fields(Settings) if env_name(f.name) not in env] == []


def test_the_metrics_page_has_every_series(site: Path) -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from resnet_serving.inference import metrics

    listed = page(site, "reference/metrics")
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            assert collector._name in listed, collector._name
    assert "resnet_serving_queued_requests" in listed and "resnet_serving_operator_drift" in listed


def test_the_http_api_page_has_every_operation(site: Path) -> None:
    import yaml

    spec = yaml.safe_load((DOCS / "openapi.yaml").read_text(encoding="utf-8"))
    api = page(site, "reference/http-api")
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f"{method.upper()} {path}" in api
    for name in spec["components"]["schemas"]:
        assert name in api


def test_a_broken_link_or_an_orphan_page_fails_the_build(tmp_path: Path) -> None:
    """What --strict must catch, on a copy of the sources: mkdocs.yml's `validation:` makes each a warning."""
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "charts" / "resnet50-serving").mkdir(parents=True)
    shutil.copy(REPO / "charts" / "resnet50-serving" / "README.md", tmp_path / "charts" / "resnet50-serving")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n", encoding="utf-8")
    with open(tmp_path / "docs" / "index.md", "a", encoding="utf-8") as f:
        f.write("\n[gone](nowhere.md) and [no such anchor](get-started.md#no-such-heading)\n")
    proc = build(tmp_path, tmp_path / "site")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "orphan.md" in out and "nowhere.md" in out and "#no-such-heading" in out, out


def test_the_readme_is_a_landing_page() -> None:
    """At most 150 lines, and a link to every page of the Get started and How-to sections."""
    readme = text(README)
    assert len(readme.splitlines()) <= 150
    tasks = [DOCS / "get-started.md", *sorted((DOCS / "how-to").glob("*.md"))]
    missing = [str(p.relative_to(REPO)) for p in tasks if f"]({p.relative_to(REPO)})" not in readme]
    assert missing == []
