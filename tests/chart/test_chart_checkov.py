"""checkov on every rendered variant (helm test hooks included): zero failures, every skip justified.

checkov runs twice per session, concurrently, over the same files: once with the chart's .checkov.yaml (the
configuration users run: it must report zero failures) and once with no skips at all, to check that each
chart-wide skip still matches a real finding and that the digest-pinned "full" variant needs no image skip.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.chart import CHART, TIMEOUT_S

CONFIG = CHART / ".checkov.yaml"
# Chart-wide skips that exist only because example images are pinned by tag rather than digest.
IMAGE_PIN_CHECKS = {"CKV_K8S_43", "CKV_K8S_15"}


def config_skips() -> dict[str, str]:
    """check id → reason, from the `- CKV_...  # reason` lines of .checkov.yaml."""
    text = CONFIG.read_text()
    listed = yaml.safe_load(text)["skip-check"]
    reasons = dict(re.findall(r"^\s*-\s*(CKV2?_[A-Z0-9_]+)\s*#\s*(.+)$", text, flags=re.M))
    return {check: reasons.get(check, "") for check in listed}


def _results(stdout: str) -> list[dict[str, Any]]:
    report = json.loads(stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["kubernetes"]
    return reports


@pytest.fixture(scope="session")
def checkov_reports(
    checkov_bin: str, rendered_raw: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("checkov")
    for name, raw in rendered_raw.items():
        (out / f"{name}.yaml").write_text(raw)
    base = [checkov_bin, "-d", str(out), "--framework", "kubernetes", "-o", "json", "--skip-download"]
    commands = {
        "configured": [*base, "--config-file", str(CONFIG)],
        "unskipped": base,
    }
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, cmd in commands.items()
    }
    reports = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        # checkov exits 1 when a check fails: that is for the tests to judge, not a crash.
        assert proc.returncode in (0, 1), f"checkov {name} crashed:\n{stderr}"
        reports[name] = _results(stdout)[0]
    return reports


def _failures(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((f["check_id"], Path(f["file_path"]).stem, f["resource"]) for f in report["results"]["failed_checks"])


def test_checkov_scanned_every_variant(
    checkov_reports: dict[str, dict[str, Any]], rendered_raw: dict[str, str]
) -> None:
    report = checkov_reports["configured"]
    assert report["summary"]["parsing_errors"] == 0
    scanned = {Path(c["file_path"]).stem for c in report["results"]["passed_checks"]}
    assert scanned == set(rendered_raw)
    assert report["summary"]["passed"] > 100


def test_checkov_reports_zero_failures_with_the_chart_config(checkov_reports: dict[str, dict[str, Any]]) -> None:
    failures = _failures(checkov_reports["configured"])
    assert not failures, "\n".join(" ".join(f) for f in failures)


def test_every_chart_wide_skip_has_a_reason() -> None:
    skips = config_skips()
    assert skips, "expected the image-pinning skips"
    for check, reason in skips.items():
        assert len(reason) >= 40, f"{check} in .checkov.yaml needs a written reason on its line"


def test_every_chart_wide_skip_matches_a_real_finding(checkov_reports: dict[str, dict[str, Any]]) -> None:
    failing = {check for check, _, _ in _failures(checkov_reports["unskipped"])}
    stale = set(config_skips()) - failing
    assert not stale, f"skips that no longer match any finding, remove them: {sorted(stale)}"


def test_without_skips_only_the_skipped_checks_fail(checkov_reports: dict[str, dict[str, Any]]) -> None:
    unexpected = [f for f in _failures(checkov_reports["unskipped"]) if f[0] not in config_skips()]
    assert not unexpected, "\n".join(" ".join(f) for f in unexpected)


def test_a_digest_pinned_image_needs_no_image_skip(checkov_reports: dict[str, dict[str, Any]]) -> None:
    assert set(config_skips()) == IMAGE_PIN_CHECKS, "update this test when the skips change"
    full = [f for f in _failures(checkov_reports["unskipped"]) if f[1] == "full"]
    assert not full, f"the digest-pinned variant fails: {full}"
    passed = {
        (c["check_id"], Path(c["file_path"]).stem) for c in checkov_reports["unskipped"]["results"]["passed_checks"]
    }
    for check in IMAGE_PIN_CHECKS:
        assert (check, "full") in passed


def annotation_skips(report: dict[str, Any]) -> dict[str, set[str]]:
    """check id → resources skipped through a checkov.io/skipN annotation on the object itself."""
    out: dict[str, set[str]] = {}
    for s in report["results"].get("skipped_checks", []):
        if s["check_id"] in config_skips():
            continue
        out.setdefault(s["check_id"], set()).add(s["resource"].split(".")[0] + "/" + s["resource"].split(".")[-1])
    return out


def test_object_level_skips_are_confined_to_the_helm_test_pod(checkov_reports: dict[str, dict[str, Any]]) -> None:
    skips = annotation_skips(checkov_reports["unskipped"])
    assert set(skips) == {"CKV_K8S_8", "CKV_K8S_9"}
    for check, resources in skips.items():
        assert resources == {"Pod/resnet50-serving-test-classify"}, check
    for s in checkov_reports["unskipped"]["results"]["skipped_checks"]:
        assert len(s["check_result"].get("suppress_comment") or "") >= 20, f"{s['check_id']} skipped without a reason"


def test_readme_lists_every_skip_with_its_reason(checkov_reports: dict[str, dict[str, Any]]) -> None:
    readme = (CHART / "README.md").read_text()
    section = readme.split("## Policy checks (checkov)", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(CKV2?_[A-Z0-9_]+)`[^|]*\|[^|]*\| (.+) \|$", section, flags=re.M))
    expected = set(config_skips()) | set(annotation_skips(checkov_reports["unskipped"]))
    assert set(rows) == expected
    assert all(len(reason) >= 30 for reason in rows.values())
