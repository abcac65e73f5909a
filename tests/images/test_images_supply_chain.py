"""What the images carry about themselves: the SBOM their build made, and the audit of their environments.

Each image has ``/opt/sbom/python.cdx.json`` (cyclonedx-py over its Python environment) and
``/opt/sbom/debian.cdx.json`` (docker/sbom_debian.py over dpkg's database), made at build time. The tests read
them out of the built images and compare them with what is really installed there. Then
``python -m tests.security.image_sbom`` audits each image's whole Python environment against the package
registry's advisories and writes ``dist/images/NAME.cdx.json``: the SBOM with a decision for every finding
(what docs/how-to/security.md lists). Without a Docker engine these tests are skipped, saying why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.helpers import REPO
from tests.helpers.images import OPERATOR, SERVING, docker, report
from tests.security.image_sbom import ENVIRONMENT, NOT_AUDITED_DEBIAN, SBOMS

IMAGES = {SERVING: "serve", OPERATOR: "operator"}
OUT = REPO / "dist" / "images"


def read_json(image: str, path: str) -> dict:
    return json.loads(docker("run", "--rm", "--network", "none", "--entrypoint", "cat", image, path).stdout)


def installed_python(image: str) -> dict[str, str]:
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python", image, "-c", ENVIRONMENT)
    return {
        canonicalize_name(d["metadata"]["name"]): d["metadata"]["version"] for d in json.loads(out.stdout)["installed"]
    }


def installed_debian(image: str) -> dict[str, str]:
    query = ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\\n"]
    out = docker("run", "--rm", "--network", "none", "--entrypoint", query[0], image, *query[1:]).stdout
    return {
        name: version for status, name, version in (line.split() for line in out.splitlines()) if status == "installed"
    }


@pytest.mark.parametrize("image", list(IMAGES))
def test_each_image_carries_the_sbom_of_what_it_installed(built: None, image: str) -> None:
    """The SBOMs list exactly the Python distributions and Debian packages installed in the image, with versions
    and package URLs: they were made from this image's filesystem, not from the build host."""
    python, debian = read_json(image, SBOMS["python"]), read_json(image, SBOMS["debian"])
    for bom in (python, debian):
        assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
        assert all(c.get("purl") and c.get("version") for c in bom["components"]), bom["components"][:3]
    listed = {canonicalize_name(c["name"]): c["version"] for c in python["components"]}
    root = python["metadata"]["component"]  # this project: the root component, not in the list
    assert listed | {root["name"]: root["version"]} == installed_python(image)
    assert "pip" not in listed, "the image carries no pip (nothing installs at run time)"
    assert {c["name"]: c["version"] for c in debian["components"]} == installed_debian(image)
    assert root["name"] == "resnet-serving"
    debs = {c["name"] for c in debian["components"]}
    if IMAGES[image] == "serve":
        assert {"torch", "torchserve"} <= set(listed) and "openjdk-17-jre-headless" in debs
    else:
        assert "kopf" in listed and "torch" not in listed and not any(d.startswith("openjdk") for d in debs)


@pytest.mark.parametrize("image", list(IMAGES))
def test_the_audit_of_each_image_is_written_with_a_decision_for_every_finding(
    built: None, image: str, vulnerability_source: str
) -> None:
    """`pip-audit`'s job on the image's whole Python environment, by the project's audit (tests/security/audit.py
    says why pip-audit itself audits nothing from these machines), written into dist/images/NAME.cdx.json."""
    name = image.split(":")[0]
    out = OUT / f"{name}.cdx.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.security.image_sbom", image, "--extras", IMAGES[image], "--out", str(out),
         "--registry", vulnerability_source],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    for line in done.stdout.splitlines()[:4]:
        report(line)
    assert out.is_file(), done.stdout + done.stderr
    bom = json.loads(out.read_text())
    assert bom["metadata"]["component"]["type"] == "container"
    labels = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
    assert labels["org.opencontainers.image.title"] == name
    python = read_json(image, SBOMS["python"])["components"]
    assert len(bom["components"]) == len(python) + len(read_json(image, SBOMS["debian"])["components"])
    audits = [
        next(p["value"] for p in c["properties"] if p["name"] == "resnet-serving:audit") for c in bom["components"]
    ]
    assert audits.count(NOT_AUDITED_DEBIAN) == len(bom["components"]) - len(python)
    for v in bom["vulnerabilities"]:
        assert v["analysis"].get("detail"), v
    open_ = [v["id"] for v in bom["vulnerabilities"] if v["analysis"].get("state") == "in_triage"]
    assert done.returncode == 0 and not open_, f"open findings {open_}:\n{done.stdout}{done.stderr}"


def test_the_merged_sbom_is_valid_cyclonedx(built: None, tmp_path: Path) -> None:
    """A control on the merge without the registry: made-up audit findings (one open, one accepted) land in the
    document as vulnerabilities with their decision, and the whole validates against the CycloneDX schema."""
    from tests.security import image_sbom

    python, debian = read_json(OPERATOR, SBOMS["python"]), read_json(OPERATOR, SBOMS["debian"])
    report = {
        "vulnerabilities": [{"package": "kopf", "id": "PYSEC-0-1", "aliases": ["CVE-0-1"], "fixed_in": ["9"]}],
        "accepted": [{"package": "boto3", "id": "PYSEC-0-2", "reason": "unused path", "review_by": "2027-03-01"}],
        "gaps_accepted": [],
        "held": [],
        "not_audited": [{"package": "kopf", "why": "behind 9"}],
    }
    bom = image_sbom.merge(OPERATOR, {"a": "b"}, python, debian, report)
    image_sbom.validate(bom)
    found = {v["id"]: v["analysis"] for v in bom["vulnerabilities"]}
    assert found["PYSEC-0-1"]["state"] == "in_triage"
    assert found["PYSEC-0-2"] == {"response": ["will_not_fix"], "detail": "accepted until 2027-03-01: unused path"}
    kopf = next(c for c in bom["components"] if c["name"] == "kopf")
    assert {"name": "resnet-serving:audit", "value": "NOT AUDITED: behind 9"} in kopf["properties"]
    bom["vulnerabilities"][0]["analysis"]["state"] = "maybe"
    with pytest.raises(image_sbom.ImageSbomError, match="schema"):
        image_sbom.validate(bom)
