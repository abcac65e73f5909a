"""Rewrite a TorchServe wheel with a smaller front-end jar, for hosts the whole wheel does not fit.

``python dev/gpu-bench/slim_torchserve.py WHEEL OUTDIR`` writes OUTDIR/<same name>.whl. TorchServe's
``model-server.jar`` bundles what its own build and tests used (Groovy, JUnit, TestNG, Ant, JavaParser…) and
native libraries for every platform; the server loads none of them on x86-64 Linux. This drops those, keeps
every ``META-INF/services`` line whose class is still in the jar, and updates the wheel's RECORD, so pip installs
it as usual. Nothing else in the wheel changes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import zipfile
from pathlib import Path

JAR = "ts/frontend/model-server.jar"

#: Packages the server never loads: build and test tooling that the fat jar carries along.
DROPPED = (
    "org/junit/", "junit/", "org/testng/", "testng", "com/beust/", "org/hamcrest/", "org/opentest4j/",
    "org/apiguardian/", "groovy/", "groovyjarjar", "org/codehaus/groovy/", "org/apache/groovy/",
    "META-INF/groovy/", "com/github/javaparser/", "org/apache/tools/", "jline/", "picocli/",
    "org/fusesource/", "com/thoughtworks/", "META-INF/resources/webjars/",
)  # fmt: skip
NATIVE = "META-INF/native/"
#: Of the native libraries, only x86-64 Linux ones (netty's epoll transport, gRPC's shaded copies) are kept.
KEPT_NATIVE_SUFFIX = "_x86_64.so"


def _kept(name: str) -> bool:
    if name.startswith(DROPPED):
        return False
    if name.startswith(NATIVE) and not name.endswith("/"):
        return "/" not in name[len(NATIVE) :] and name.endswith(KEPT_NATIVE_SUFFIX)
    return True


def slim_jar(jar: bytes) -> bytes:
    """The jar without :data:`DROPPED` and foreign native libraries, its service files pruned to match."""
    with zipfile.ZipFile(io.BytesIO(jar)) as src:
        names = [n for n in src.namelist() if _kept(n)]
        classes = {n for n in names if n.endswith(".class")}
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
            for name in names:
                data = src.read(name)
                if name.startswith("META-INF/services/") and not name.endswith("/"):
                    lines = data.decode("utf-8").splitlines()
                    providers = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
                    kept = [ln for ln in providers if ln.strip().replace(".", "/") + ".class" in classes]
                    if not kept:
                        continue
                    data = ("\n".join(kept) + "\n").encode("utf-8")
                dst.writestr(src.getinfo(name), data, compresslevel=9)
    return out.getvalue()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def slim_wheel(wheel: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel.name
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as src:
        if JAR not in src.namelist():
            raise SystemExit(f"{wheel}: no {JAR} in it; is this a TorchServe wheel?")
        jar = slim_jar(src.read(JAR))
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = jar if info.filename == JAR else src.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    rows = data.decode("utf-8").splitlines()
                    data = (
                        "\n".join(
                            f"{JAR},{_record_hash(jar)},{len(jar)}" if r.startswith(JAR + ",") else r for r in rows
                        )
                        + "\n"
                    ).encode("utf-8")
                dst.writestr(info, data)
    partial.replace(target)  # never a half-written wheel under the real name
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: slim_torchserve.py WHEEL OUTDIR", file=sys.stderr)
        return 2
    wheel, out_dir = Path(argv[0]), Path(argv[1])
    if not wheel.is_file():
        print(f"{wheel}: no such wheel", file=sys.stderr)
        return 2
    target = slim_wheel(wheel, out_dir)
    print(f"{target}: {wheel.stat().st_size / 2**20:.1f} MiB -> {target.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
