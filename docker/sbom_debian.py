"""Write the CycloneDX SBOM of the Debian packages installed in this image (run at build time, by the Dockerfiles).

No CycloneDX tool for dpkg is on the Python registry, so this reads dpkg's own database with the standard
library: every package whose status is "install ok installed", with its version, architecture and source
package, as a Package URL (pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-VERSION_ID). The document
has no timestamp or serial number, so a rebuild of the same packages writes the same file.

    python3 sbom_debian.py OUT.json [--status /var/lib/dpkg/status] [--os-release /etc/os-release]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import quote

SPEC_VERSION = "1.6"


def stanzas(text: str) -> list[dict[str, str]]:
    """dpkg's status file: blank-line separated stanzas of "Field: value" lines (continuations start with a space)."""
    out, fields, last = [], {}, ""
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields:
                out.append(fields)
            fields, last = {}, ""
        elif line[0] in " \t":
            if last:
                fields[last] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            last = key.strip()
            fields[last] = value.strip()
    return out


def os_release(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip().strip('"') for k, v in pairs}


def purl(name: str, version: str, arch: str, distro: str) -> str:
    return f"pkg:deb/debian/{quote(name, safe='')}@{quote(version, safe='')}?arch={arch}&distro={distro}"


def document(status: str, release: str) -> dict[str, object]:
    osr = os_release(release)
    distro = f"{osr.get('ID', 'debian')}-{osr.get('VERSION_ID', 'unknown')}"
    components = []
    for s in stanzas(status):
        if s.get("Status", "").split()[-1:] != ["installed"] or "Package" not in s or "Version" not in s:
            continue
        name, version, arch = s["Package"], s["Version"], s.get("Architecture", "all")
        ref = purl(name, version, arch, distro)
        component: dict[str, object] = {
            "type": "library",
            "bom-ref": ref,
            "name": name,
            "version": version,
            "purl": ref,
        }
        source = s.get("Source", "").split(" ")[0]
        if source and source != name:
            component["properties"] = [{"name": "debian:source", "value": source}]
        components.append(component)
    components.sort(key=lambda c: str(c["name"]))
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": {
            "component": {
                "type": "operating-system",
                "bom-ref": f"os:{distro}",
                "name": osr.get("ID", "debian"),
                "version": osr.get("VERSION_ID", "unknown"),
                "description": osr.get("PRETTY_NAME", ""),
            },
            "tools": {"components": [{"type": "application", "name": "resnet-serving docker/sbom_debian.py"}]},
        },
        "components": components,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--status", default="/var/lib/dpkg/status")
    parser.add_argument("--os-release", default="/etc/os-release")
    args = parser.parse_args(argv)
    try:
        with open(args.status, encoding="utf-8") as f:
            status = f.read()
        with open(args.os_release, encoding="utf-8") as f:
            release = f.read()
    except OSError as e:
        print(f"sbom_debian: cannot read dpkg's database: {e}", file=sys.stderr)
        return 1
    doc = document(status, release)
    if not doc["components"]:
        print(f"sbom_debian: {args.status} lists no installed package", file=sys.stderr)
        return 1
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
