"""`archive --runtime openvino` as docs/how-to/openvino.md shows it, and a real `serve` (TorchServe, Java) of what it
builds: the IR in the archive and its record in the manifest, the archive's sha256 over a tampered IR, a
prediction answered by OpenVINO, and serve's refusal where OpenVINO is not installed. Random weights: the
predictions mean nothing; the mechanics are what is checked."""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import requests

from resnet_serving.artifact.layout import ARCHIVE_NAME, IR_BIN_FILE, IR_XML_FILE, MANIFEST_NAME, MODEL_INFO_FILE
from resnet_serving.artifact.manifest import Manifest, open_model_dir
from resnet_serving.artifact.runtime import OPENVINO_EXTRA
from resnet_serving.cli import main
from resnet_serving.errors import IntegrityError
from resnet_serving.inference.cpuinfo import asked_precision
from tests.fixtures import images as fx
from tests.helpers import REPO, running_serve, serve_command
from tests.helpers.docs_pages import block

pytest.importorskip("openvino", reason=f"the {OPENVINO_EXTRA} extra is not installed (make venv installs it)")


@pytest.fixture(scope="module")
def openvino_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's `archive-openvino` command, with this test's store and random weights: the version's directory."""
    (line,) = block("archive-openvino")
    words = shlex.split(line)
    assert words[:2] == ["resnet-serving", "archive"] and words[words.index("--runtime") + 1] == "openvino"
    store = tmp_path_factory.mktemp("openvino") / "store"
    argv = [str(store) if words[i - 1] == "--store" else w for i, w in enumerate(words)][1:]
    assert main([*argv, "--weights", "random"]) == 0
    return store / "resnet50" / words[words.index("--version") + 1]


def test_the_archive_carries_the_ir_and_the_manifest_records_it(openvino_archive: Path) -> None:
    manifest = open_model_dir(openvino_archive)  # the archive matches its manifest's size and sha256
    runtime = manifest.runtime
    assert runtime["name"] == "openvino" and runtime["precision"] == "auto"  # the page's command takes the default
    assert runtime["version"] == metadata.version("openvino")
    with zipfile.ZipFile(openvino_archive / ARCHIVE_NAME) as mar:
        assert {name: hashlib.sha256(mar.read(name)).hexdigest() for name in runtime["files"]} == runtime["files"]
        assert json.loads(mar.read(MODEL_INFO_FILE))["runtime"] == runtime  # what the worker checks the IR by
    assert sorted(runtime["files"]) == sorted([IR_XML_FILE, IR_BIN_FILE])


def test_a_tampered_model_bin_fails_the_archives_sha256(openvino_archive: Path, tmp_path: Path) -> None:
    """One byte of model.bin changed inside a re-packed model.mar, beside the original manifest: refused."""
    out = io.BytesIO()
    with zipfile.ZipFile(openvino_archive / ARCHIVE_NAME) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = bytearray(src.read(item))
            if item.filename == IR_BIN_FILE:
                data[len(data) // 2] ^= 0xFF
            dst.writestr(item, bytes(data))
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / ARCHIVE_NAME).write_bytes(out.getvalue())
    (bad / MANIFEST_NAME).write_bytes((openvino_archive / MANIFEST_NAME).read_bytes())
    with pytest.raises(IntegrityError, match="so refusing resnet50 v"):
        open_model_dir(bad)


@pytest.mark.torchserve
def test_serve_answers_from_openvino(openvino_archive: Path, tmp_path: Path) -> None:
    cmd = serve_command(openvino_archive, "--workers", "1")
    log = tmp_path / "serve.log"
    with running_serve(cmd.argv, log):
        r = requests.post(
            f"http://127.0.0.1:{cmd.port}/predictions/resnet50",
            data=fx.PHOTO.read_bytes(),  # examples/grace_hopper.jpg
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        said = log.read_text(errors="replace")
    assert r.status_code == 200, r.text
    body = r.json()
    chosen, _ = asked_precision("auto")  # the archive's auto: bf16 on a CPU with bf16 instructions, else fp32
    assert body["graph"] == f"openvino-{chosen}"
    assert body["version"] == Manifest.load(openvino_archive / MANIFEST_NAME).version
    assert len(body["predictions"]) == 5 and "random weights" in body["warning"]
    assert (
        f"runtime: OpenVINO {metadata.version('openvino')}, auto as archived, asking for {chosen} on this CPU"
        in " ".join(said.split())
    )


#: serve, with OpenVINO unimportable as where the extra is not installed (the way
#: tests/unit/test_operator_image_imports.py hides the serve extra).
WITHOUT_OPENVINO = """
import sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "openvino":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.argv = ["resnet-serving", *sys.argv[1:]]
from resnet_serving.cli import main
raise SystemExit(main())
"""


def test_serve_refuses_an_openvino_archive_without_openvino_before_torchserve_starts(openvino_archive: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENVINO, "serve", "--model-dir", str(openvino_archive)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, said[-2000:]
    assert f"install the openvino extra (pip install 'resnet-serving[{OPENVINO_EXTRA}]')" in said
    version = Manifest.load(openvino_archive / MANIFEST_NAME).version
    assert f"resnet50 v{version} (built with --runtime openvino) needs OpenVINO" in said
    assert "starting TorchServe" not in done.stdout + done.stderr
