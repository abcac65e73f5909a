"""The operator image installs `resnet-serving[operator]` only: the CLI must start there without the serve extra.

The CLI imports every command module at start-up, so a module-level import of a serve-only package anywhere on
that path breaks `resnet-serving operator` in its image (it did once: the guard imported prometheus_client). The
image tests catch it where a Docker engine runs; this catches it everywhere, by running the CLI with the serve
extra's packages made unimportable.
"""

from __future__ import annotations

import subprocess
import sys

import tomllib
from packaging.requirements import Requirement

from tests.helpers import REPO

#: The serve extra's distributions that the operator extra does not bring, and the names they are imported by.
SERVE_ONLY = {
    "torch": "torch",
    "torchvision": "torchvision",
    "torchserve": "ts",
    "torch-model-archiver": "model_archiver",
    "psutil": "psutil",
    "prometheus-client": "prometheus_client",
}
#: In the serve extra and in the operator image too (kopf depends on it).
BOTH = {"aiohttp"}

BLOCK = """
import sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the operator image)", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.argv = ["resnet-serving", *{argv!r}]
from resnet_serving.cli import main
raise SystemExit(main())
"""


def test_the_mapping_covers_the_serve_extra() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    serve = {Requirement(r).name.lower().replace("_", "-") for r in extras["serve"]}
    assert serve == set(SERVE_ONLY) | BOTH


def run_without_serve_extra(*argv: str) -> subprocess.CompletedProcess[str]:
    code = BLOCK.format(names=set(SERVE_ONLY.values()), argv=list(argv))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_the_cli_starts_without_the_serve_extra() -> None:
    done = run_without_serve_extra("operator", "--help")
    assert done.returncode == 0 and "usage: resnet-serving operator" in done.stdout, done.stderr[-3000:]


def test_the_block_works() -> None:
    """A control: with the block, importing a serve-only package fails as it would in the image."""
    done = run_without_serve_extra("serve", "--help")
    assert done.returncode == 0, done.stderr[-3000:]  # serve's parser too imports nothing serve-only
    code = BLOCK.format(names=set(SERVE_ONLY.values()), argv=[]).replace(
        "from resnet_serving.cli import main", "import prometheus_client"
    )
    blocked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0 and "not in the operator image" in blocked.stderr
