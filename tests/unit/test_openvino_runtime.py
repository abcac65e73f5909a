"""The OpenVINO runtime behind the same service (``archive --runtime openvino``): its record in the manifest, the
IR's agreement with the torch network it was converted from, what the service and the bench's raw step run, and
the refusals (a tampered IR, a GPU worker, OpenVINO not installed).

Random weights throughout: agreement is checked on logits and top-1 of a few inputs, which says the conversion is
the same function, not what either does to accuracy.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from resnet_serving.artifact.layout import IR_BIN_FILE, IR_XML_FILE, MODEL_INFO_FILE, STATE_DICT_FILE
from resnet_serving.artifact.manifest import Manifest
from resnet_serving.artifact.runtime import OPENVINO_EXTRA, runtime_unavailable
from resnet_serving.errors import ArchiveError, InputError, IntegrityError
from resnet_serving.inference import imaging
from resnet_serving.inference.model import Classifier
from resnet_serving.inference.openvino_model import OpenVinoClassifier, export_ir
from resnet_serving.inference.service import InferenceService, batch_logits, load_model
from resnet_serving.settings import Settings
from tests.fixtures import images as fx
from tests.helpers.cpuinfo import ICE_LAKE, SAPPHIRE_RAPIDS, cpuinfo_file

pytest.importorskip("openvino", reason=f"the {OPENVINO_EXTRA} extra is not installed (make venv installs it)")


@pytest.fixture(scope="module")
def openvino_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What TorchServe unpacks an ``archive --runtime openvino`` into: the random-weight model directory, plus the
    IR converted from its weights and the runtime record in model_info.json."""
    d = tmp_path_factory.mktemp("openvino_dir")
    for f in model_dir.iterdir():
        shutil.copy(f, d / f.name)
    record = export_ir(torch.load(d / STATE_DICT_FILE, weights_only=True), d, "fp32")
    info = json.loads((d / MODEL_INFO_FILE).read_text())
    (d / MODEL_INFO_FILE).write_text(json.dumps({**info, "runtime": record}))
    return d


def _manifest(runtime: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "resnet50", "version": "1", "sha256": "0" * 64, "size": 1, "created": "2026-12-07T00:00:00Z",
        "torch": "2.14.1", "torchvision": "0.29.1", "weights": {}, "labels": {},
    }  # fmt: skip
    if runtime is not None:
        data["runtime"] = runtime
    return data


OPENVINO_RECORD = {
    "name": "openvino",
    "version": "2026.4.1",
    "precision": "fp32",
    "files": {IR_XML_FILE: "a" * 64, IR_BIN_FILE: "b" * 64},
}


def test_a_manifest_without_a_runtime_is_torch_and_an_openvino_record_round_trips() -> None:
    assert Manifest.from_dict(_manifest()).runtime == {"name": "torch"}  # archives built before runtimes
    m = Manifest.from_dict(_manifest(OPENVINO_RECORD))
    assert m.runtime == OPENVINO_RECORD and Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("runtime", "says"),
    [
        ("openvino", "runtime must be an object"),
        ({"name": "onnx"}, "runtime name 'onnx' is not one of torch, openvino"),
        ({**OPENVINO_RECORD, "precision": "int8"}, "runtime precision 'int8' is not one of auto, fp32, bf16"),
        ({**OPENVINO_RECORD, "files": {IR_XML_FILE: "a" * 64}}, "runtime files must be model.xml and model.bin"),
        (
            {**OPENVINO_RECORD, "files": {IR_XML_FILE: "a" * 64, IR_BIN_FILE: "B" * 64}},
            "runtime files: model.bin's sha256 must be",
        ),
    ],
)
def test_a_bad_runtime_record_is_refused(runtime: Any, says: str) -> None:
    with pytest.raises(IntegrityError, match="manifest: " + re.escape(says)):
        Manifest.from_dict(_manifest(runtime))


def test_the_ir_computes_what_the_torch_fp32_network_does(model_dir: Path, openvino_dir: Path) -> None:
    """The same batches (the example photo and generated images, as the service builds them) through the torch
    fp32 network and its IR: logits within float rounding, the same top-1 (random weights: the function, not
    accuracy)."""
    state = torch.load(model_dir / STATE_DICT_FILE, weights_only=True)
    reference = Classifier(state, amp="off")
    converted = OpenVinoClassifier(openvino_dir / IR_XML_FILE, threads=1)
    assert (converted.graph, converted.precision) == ("openvino-fp32", "fp32")
    crops = [imaging.decode_crop(data, Settings()) for data in (fx.PHOTO.read_bytes(), fx.jpeg(320, 240), fx.png())]
    want = batch_logits(reference, crops, crops=True)
    got = batch_logits(converted, crops, crops=True)
    assert got.shape == want.shape == (3, 1000) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert list(got.argmax(1)) == list(want.argmax(1))
    # an NCHW batch too (channels_last=False): the IR's own layout, no transpose
    nchw = OpenVinoClassifier(openvino_dir / IR_XML_FILE, threads=1, channels_last=False)
    assert np.abs(batch_logits(nchw, crops, crops=True) - want).max() <= 1e-4 * np.abs(want).max()


def test_bf16_is_compiled_in_fp32_where_the_cpu_has_no_bf16(openvino_dir: Path) -> None:
    """OpenVINO compiles a bf16 request in f32 on a CPU without bf16 instructions; the classifier reports what it
    compiled, so responses and the bench never claim bf16 that did not run."""
    from resnet_serving.inference.cpuinfo import bf16_native, read_cpuinfo

    clf = OpenVinoClassifier(openvino_dir / IR_XML_FILE, precision="bf16", threads=1)
    expected = "bf16" if bf16_native(read_cpuinfo()[1]) else "fp32"
    assert (clf.precision, clf.graph) == (expected, f"openvino-{expected}")


def test_the_service_serves_an_openvino_archive_and_says_so(openvino_dir: Path) -> None:
    service = InferenceService.from_model_dir(openvino_dir, settings=Settings(torch_threads=1), batch_size=2)
    assert isinstance(service.classifier, OpenVinoClassifier)
    (out,) = service.handle([{"body": fx.PHOTO.read_bytes()}], ["image/jpeg"])
    assert out.status == 200 and out.body["graph"] == "openvino-fp32" and "precision" not in out.body
    assert len(out.body["predictions"]) == 5


def test_a_tampered_ir_is_refused_before_it_is_compiled(openvino_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model"
    shutil.copytree(openvino_dir, bad)
    data = bytearray((bad / IR_BIN_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / IR_BIN_FILE).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.bin has sha256 .* but the archive records"):
        InferenceService.from_model_dir(bad, settings=Settings(torch_threads=1))


def test_a_gpu_worker_refuses_an_openvino_archive(openvino_dir: Path) -> None:
    with pytest.raises(ArchiveError, match=r"serves on a CPU.*cuda:0.*--runtime torch"):
        load_model(openvino_dir, torch.device("cuda:0"), 8, Settings(), 1)


@pytest.fixture
def without_openvino(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """OpenVINO unimportable, as where the extra is not installed: a finder that refuses it (as
    tests/unit/test_operator_image_imports.py does for the serve extra), with the loaded modules hidden."""

    class Absent:
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            if name.split(".")[0] == "openvino":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    for name in [n for n in sys.modules if n.split(".")[0] == "openvino"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Absent(), *sys.meta_path])
    yield


@pytest.mark.usefixtures("without_openvino")
def test_without_openvino_the_worker_and_archive_name_the_extra(openvino_dir: Path, tmp_path: Path) -> None:
    from resnet_serving.archiver import build_archive

    extra = f"install the openvino extra (pip install 'resnet-serving[{OPENVINO_EXTRA}]')"
    with pytest.raises(ArchiveError) as worker:
        InferenceService.from_model_dir(openvino_dir, settings=Settings(torch_threads=1))
    assert extra in worker.value.message and "an archive built with --runtime openvino" in worker.value.message
    assert extra in str(runtime_unavailable({"name": "openvino"}, "serve"))
    assert runtime_unavailable({"name": "torch"}, "serve") is None
    with pytest.raises(ArchiveError, match=r"archive --runtime openvino needs OpenVINO"):
        build_archive(weights="random", version="1", out_dir=tmp_path, runtime="openvino")
    assert list(tmp_path.iterdir()) == []  # refused before anything was built


def test_auto_asks_openvino_for_what_the_cpu_does_natively(
    openvino_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive's ``auto`` asks OpenVINO for bf16 where the CPU has bf16 instructions and fp32 elsewhere, as
    RESNET_SERVING_AMP=auto does for torch; fp32 stays fp32. (This CPU may lack bf16: OpenVINO then computes fp32
    whatever it is asked, so the request is checked here, and what ran is what the classifier reports.)"""
    from resnet_serving.inference import cpuinfo

    native = cpuinfo_file(tmp_path, SAPPHIRE_RAPIDS, "native")
    plain = cpuinfo_file(tmp_path, ICE_LAKE, "plain")
    for path, expected in ((native, "bf16"), (plain, "fp32")):
        monkeypatch.setattr(cpuinfo, "CPUINFO", path)
        clf = OpenVinoClassifier(openvino_dir / IR_XML_FILE, precision="auto", threads=1)
        assert clf.asked == expected and clf.graph == f"openvino-{clf.precision}"
        assert cpuinfo.asked_precision("auto") == (expected, cpuinfo.auto_cpu_precision()[1])
    assert OpenVinoClassifier(openvino_dir / IR_XML_FILE, precision="fp32", threads=1).asked == "fp32"
    assert cpuinfo.asked_precision("bf16") == ("bf16", "as archived")


def test_precision_is_an_openvino_flag(tmp_path: Path) -> None:
    from resnet_serving.archiver import checked_runtime

    assert checked_runtime("openvino", None) == "auto" and checked_runtime("torch", None) is None
    with pytest.raises(InputError, match=r"--precision bf16 is for --runtime openvino.*RESNET_SERVING_AMP"):
        checked_runtime("torch", "bf16")


def test_the_bench_raw_processes_run_the_served_runtime(openvino_dir: Path) -> None:
    """The bench's raw figure is the denominator of every served ÷ raw ratio: a raw process loads the served
    archive as a worker does (here OpenVINO), and its raw step runs that compiled model."""
    from resnet_serving.bench.runner import _pool_main, _raw_step

    commands: queue.Queue[Any] = queue.Queue()
    results: queue.Queue[Any] = queue.Queue()
    for command in (("raw", 1, 0.01), None):
        commands.put(command)
    _pool_main(1, "cpu", 2, fx.PHOTO.read_bytes(), openvino_dir, threading.Barrier(1), commands, results)
    assert results.get_nowait() == "openvino-fp32" and results.get_nowait() > 0

    clf, _ = load_model(openvino_dir, torch.device("cpu"), 1, Settings(), 1)
    inner, seen = clf._request, []  # type: ignore[union-attr]

    class Spy:
        def infer(self, inputs: Any, **kw: Any) -> Any:
            seen.append(inputs[0].shape)
            return inner.infer(inputs, **kw)

    clf._request = Spy()  # type: ignore[union-attr]
    _raw_step(clf, 3)()
    assert seen == [(3, 224, 224, 3)]  # the service's channels_last batch, read as NHWC in place
