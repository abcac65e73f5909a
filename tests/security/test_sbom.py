"""The release SBOM (tests/security/sbom.py, `make sbom`): written by cyclonedx-py from this environment,
valid CycloneDX, naming what the images ship at the versions installed; a broken SBOM is refused."""

from __future__ import annotations

import copy
import importlib.metadata as metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.security import sbom


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sbom.write(tmp_path_factory.mktemp("dist") / "sbom.cdx.json")


def test_the_sbom_is_valid_cyclonedx_and_names_what_ships(written: Path) -> None:
    summary = sbom.check(written)
    name, version = sbom.project_version()
    assert summary["spec"] == sbom.SPEC_VERSION and summary["components"] > 100
    assert summary[name] == version
    assert summary["torch"] == metadata.version("torch") and summary["torchserve"] == metadata.version("torchserve")
    bom = json.loads(written.read_text())
    assert "serialNumber" not in bom and "timestamp" not in bom.get("metadata", {}), "reproducible"
    purls = {c["name"].lower(): c.get("purl") for c in bom["components"]}
    assert purls["torch"] == f"pkg:pypi/torch@{metadata.version('torch')}"


def _drop(component: str) -> Callable[[dict[str, Any]], None]:
    return lambda bom: bom.update(components=[c for c in bom["components"] if c["name"].lower() != component])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda bom: bom.update(specVersion="1.4"), "not a CycloneDX 1.6 document"),
        (lambda bom: bom["components"][0].update(colour="blue"), "JSON schema"),
        (lambda bom: bom["components"][0].update(type="spaceship"), "JSON schema"),
        (_drop("torchserve"), "no component for ['torchserve']"),
        (lambda bom: bom["metadata"]["component"].update(version="0.0.0"), "root component is resnet-serving 0.0.0"),
    ],
)
def test_a_broken_sbom_is_refused(
    written: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], words: str
) -> None:
    bom = copy.deepcopy(json.loads(written.read_text()))
    change(bom)
    broken = tmp_path / "broken.cdx.json"
    broken.write_text(json.dumps(bom))
    with pytest.raises(sbom.SbomError) as caught:
        sbom.check(broken)
    assert words in str(caught.value)
