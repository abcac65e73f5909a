"""Write and check the CycloneDX SBOM of a release build: ``make sbom`` (``python -m tests.security.sbom``).

The SBOM lists every distribution installed in the environment the build ran in (``make venv``: the package,
its serve and operator extras, and the dev and infra tools), written by cyclonedx-py from that environment,
with this project as the root component (from pyproject.toml). It is reproducible: no timestamp or serial
number unless ``SOURCE_DATE_EPOCH`` is set. :func:`check` validates it against the CycloneDX JSON schema and
checks that it names what the images ship (torch, TorchServe, kopf, this package at its version).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.helpers import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev environment is Python 3.11+
    import tomli as tomllib

SPEC_VERSION = "1.6"
DEFAULT_OUT = REPO / "dist" / "sbom.cdx.json"
#: Distributions the SBOM must name: what the serving and operator images run.
SHIPPED = ("torch", "torchvision", "torchserve", "torch-model-archiver", "kopf", "boto3", "pillow")


class SbomError(AssertionError):
    """The SBOM is missing, invalid, or does not name what the build ships."""


def project_version(pyproject: Path = REPO / "pyproject.toml") -> tuple[str, str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return str(project["name"]), str(project["version"])


def write(out: Path, python: str = sys.executable) -> Path:
    """Run cyclonedx-py on the environment of ``python``; the file appears whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    command = [
        python, "-m", "cyclonedx_py", "environment", "--pyproject", str(REPO / "pyproject.toml"),
        "--sv", SPEC_VERSION, "--output-reproducible", "--no-validate", "--of", "JSON", "-o", str(tmp), python,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SbomError(f"cyclonedx-py failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    tmp.replace(out)
    return out


def _is_iri_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        return False
    try:
        urllib.parse.urlsplit(value)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def _quick_iri_format() -> Iterator[None]:
    """jsonschema checks ``iri-reference`` with an Earley parser, about 0.1 s a URL (a minute per SBOM here):
    check the shape with urlsplit instead, for the duration of one validation."""
    from jsonschema.validators import Draft7Validator

    checkers = Draft7Validator.FORMAT_CHECKER.checkers
    saved = checkers.get("iri-reference")
    checkers["iri-reference"] = (_is_iri_reference, ())
    try:
        yield
    finally:
        if saved is None:
            checkers.pop("iri-reference", None)
        else:
            checkers["iri-reference"] = saved


def check(path: Path) -> dict[str, Any]:
    """Validate ``path`` (schema, spec version, root component, shipped components); return a summary."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = path.read_text(encoding="utf-8")
    bom = json.loads(text)
    if bom.get("bomFormat") != "CycloneDX" or bom.get("specVersion") != SPEC_VERSION:
        raise SbomError(
            f"{path}: not a CycloneDX {SPEC_VERSION} document: {bom.get('bomFormat')} {bom.get('specVersion')}"
        )
    with _quick_iri_format():
        error = JsonStrictValidator(SchemaVersion.from_version(SPEC_VERSION)).validate_str(text)
    if error is not None:
        raise SbomError(f"{path}: fails the CycloneDX {SPEC_VERSION} JSON schema: {error}")
    name, version = project_version()
    root = bom.get("metadata", {}).get("component", {})
    if (root.get("name"), root.get("version")) != (name, version):
        raise SbomError(f"{path}: root component is {root.get('name')} {root.get('version')}, not {name} {version}")
    components = {c["name"].lower(): c for c in bom.get("components", [])}
    missing = [n for n in (*SHIPPED, name) if n not in components]
    if missing:
        raise SbomError(f"{path}: no component for {missing}")
    if components[name].get("version") != version:
        raise SbomError(f"{path}: {name} is listed at {components[name].get('version')}, pyproject says {version}")
    unpinned = [n for n in SHIPPED if not components[n].get("version") or "purl" not in components[n]]
    if unpinned:
        raise SbomError(f"{path}: no version or package URL for {unpinned}")
    return {
        "components": len(components),
        "spec": bom["specVersion"],
        **{n: components[n]["version"] for n in ("torch", "torchserve", name)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.sbom", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write it (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        summary = check(write(args.out))
    except SbomError as e:
        print(f"sbom: {e}", file=sys.stderr)
        return 1
    print(f"sbom: {args.out}: CycloneDX {summary.pop('spec')}, {summary.pop('components')} components, " +
          ", ".join(f"{k} {v}" for k, v in summary.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
