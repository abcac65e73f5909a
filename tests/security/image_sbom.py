"""An image's SBOM with its audit: ``python -m tests.security.image_sbom IMAGE --extras serve --out FILE``.

Each image carries the SBOMs its build made (``/opt/sbom/python.cdx.json`` by cyclonedx-py, ``debian.cdx.json``
by docker/sbom_debian.py; docker/README.md). This program reads them out of the image, audits the image's
Python environment (tests/security/audit.py with ``--inspect``, on every distribution installed there), and
writes one CycloneDX document: the image as the root component, both component lists, and a ``vulnerabilities``
entry for each advisory the audit found, with its decision (open, or accepted with the allow-list's reason and
review date). Each Python component says how it was audited; the Debian packages say they were not (no Debian
vulnerability source answers from these machines).

Exit codes: 0 written and nothing open; 1 an open finding, a gap not accepted, no registry, or a bad SBOM
(the file is still written when the audit ran, so the findings can be read); 2 bad arguments or no image.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from tests.helpers import REPO

SPEC_VERSION = "1.6"
SBOMS = {"python": "/opt/sbom/python.cdx.json", "debian": "/opt/sbom/debian.cdx.json"}
#: Prints the image's Python distributions in the shape of `pip inspect` (the images carry no pip).
ENVIRONMENT = (
    "import importlib.metadata as m, json; print(json.dumps({'installed': [{'metadata': {'name': d.metadata['Name'], "
    "'version': d.version, 'requires_dist': d.requires or []}} for d in m.distributions()]}))"
)
NOT_AUDITED_DEBIAN = "not audited: no Debian vulnerability source answers from the machines this runs on"


class ImageSbomError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise ImageSbomError(f"docker {' '.join(args[:4])} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


def read_image(image: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The image's Python SBOM, Debian SBOM and Python environment (``pip inspect`` shape)."""
    boms = []
    for path in SBOMS.values():
        text = docker("run", "--rm", "--network", "none", "--entrypoint", "cat", image, path)
        try:
            boms.append(json.loads(text))
        except ValueError as e:
            raise ImageSbomError(f"{image}:{path} is not JSON: {e}") from e
    python = docker("image", "inspect", "-f", "{{index .Config.Env}}", image)
    entry = "/opt/venv/bin/python" if "/opt/venv/bin" in python else "python3"
    env = json.loads(docker("run", "--rm", "--network", "none", "--entrypoint", entry, image, "-c", ENVIRONMENT))
    return boms[0], boms[1], env


def audit(environment: dict[str, Any], extras: str, registry: str | None) -> tuple[int, dict[str, Any], str]:
    with tempfile.TemporaryDirectory() as tmp:
        inspect, report = Path(tmp) / "inspect.json", Path(tmp) / "audit.json"
        inspect.write_text(json.dumps(environment), encoding="utf-8")
        command = [sys.executable, "-m", "tests.security.audit", "--inspect", str(inspect), "--extras", extras,
                   "--all-installed", "--json", str(report)]  # fmt: skip
        if registry:
            command += ["--registry", registry]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode == 2 or not report.exists():
            raise ImageSbomError(f"the audit could not run ({done.returncode}): {done.stderr.strip()[-800:]}")
        return done.returncode, json.loads(report.read_text(encoding="utf-8")), done.stdout


def merge(image: str, labels: dict[str, str], python: dict[str, Any], debian: dict[str, Any],
          report: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One CycloneDX document for the image: both component lists, the audit on each Python component, and a
    vulnerability entry per advisory with its decision."""
    by_name = {canonicalize_name(c["name"]): c for c in python.get("components", [])}
    status: dict[str, str] = {}
    for row in report["gaps_accepted"]:
        status[row["package"]] = f"not audited ({row['why']}), accepted until {row['review_by']}: {row['reason']}"
    for row in report["held"]:
        status[row["package"]] = f"not audited: {row['why']}"
    for row in report["not_audited"]:
        status[row["package"]] = f"NOT AUDITED: {row['why']}"
    components = []
    for c in python.get("components", []):
        note = status.get(canonicalize_name(c["name"]), "audited at its latest release")
        components.append(
            {**c, "properties": [*c.get("properties", []), {"name": "resnet-serving:audit", "value": note}]}
        )
    for c in debian.get("components", []):
        components.append(
            {
                **c,
                "properties": [*c.get("properties", []), {"name": "resnet-serving:audit", "value": NOT_AUDITED_DEBIAN}],
            }
        )
    vulnerabilities = []
    for finding, accepted in [(v, False) for v in report["vulnerabilities"]] + [(v, True) for v in report["accepted"]]:
        ref = by_name.get(canonicalize_name(finding["package"]), {}).get("bom-ref", finding["package"])
        analysis: dict[str, Any] = (
            {"response": ["will_not_fix"], "detail": f"accepted until {finding['review_by']}: {finding['reason']}"}
            if accepted
            else {"state": "in_triage", "detail": "open: no decision in tests/security/audit-allowlist.toml"}
        )
        vulnerabilities.append(
            {
                "id": finding["id"],
                "source": {"name": "the Python package registry's advisories (PyPA advisory database)"},
                "references": [{"id": a, "source": {"name": "alias"}} for a in finding.get("aliases", [])],
                "description": finding.get("summary", ""),
                "recommendation": "fixed in " + (", ".join(finding.get("fixed_in", [])) or "no release yet"),
                "affects": [{"ref": ref}],
                "analysis": analysis,
            }
        )
    repository, _, tag = image.rpartition(":")
    root = {
        "type": "container",
        "bom-ref": f"image:{image}",
        "name": repository or image,
        "version": tag or "latest",
        "properties": [{"name": k, "value": v} for k, v in sorted(labels.items())],
    }
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": {"component": root, "tools": python.get("metadata", {}).get("tools", {})},
        "components": components,
        "dependencies": python.get("dependencies", []),
        "vulnerabilities": vulnerabilities,
    }


def validate(bom: dict[str, Any]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonValidator

    error = JsonValidator(SchemaVersion.from_version(SPEC_VERSION)).validate_str(json.dumps(bom))
    if error is not None:
        raise ImageSbomError(f"the merged SBOM fails the CycloneDX {SPEC_VERSION} JSON schema: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.image_sbom", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="a built image, e.g. resnet-serving:0.1.0")
    parser.add_argument("--extras", required=True, help="the extras of resnet-serving the image installs (serve)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the SBOM with its audit")
    parser.add_argument("--registry", help="base URL of the registry's JSON API (default: the audit's)")
    args = parser.parse_args(argv)
    try:
        labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", args.image)) or {}
        python, debian, environment = read_image(args.image)
        code, report, text = audit(environment, args.extras, args.registry)
        bom = merge(args.image, labels, python, debian, report)
        validate(bom)
    except ImageSbomError as e:
        print(f"image-sbom: {args.image}: {e}", file=sys.stderr)
        return 2 if "docker" in str(e) and "inspect" in str(e) else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(bom, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    counts = [len(python.get("components", [])), len(debian.get("components", [])), len(bom["vulnerabilities"])]
    print(f"image-sbom: {args.image}: {counts[0]} Python and {counts[1]} Debian components, {counts[2]} advisories "
          f"-> {args.out}")  # fmt: skip
    print(text.rstrip())
    return code


if __name__ == "__main__":
    raise SystemExit(main())
