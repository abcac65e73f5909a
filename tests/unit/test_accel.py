"""GPU-ready paths, exercised on the CPU: autocast, torch.compile wiring, batched JPEG decode, the service's
deferred-decode path. CI has no GPU; the same code runs with device="cuda" when one is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from resnet_serving.errors import ConfigError
from resnet_serving.inference import imaging, model
from resnet_serving.inference.service import InferenceService, batch_logits
from resnet_serving.settings import Settings
from tests.fixtures import images as fx


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return model.resolve_weights("random")[0]


def torchvision_resnet50(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    net = torchvision.models.resnet50(weights=None)
    net.load_state_dict(state)
    return net.eval()


def accel_options(env: dict[str, str]) -> dict[str, object]:
    """The model's switches, as the worker reads them once (Settings) and hands them to Classifier.configured."""
    s = Settings.from_env(env)
    return {"amp": s.amp, "compile": s.compile, "gpu_decode": s.gpu_decode, "freeze": s.freeze}


def test_accel_options_from_env() -> None:
    assert accel_options({}) == {"amp": "auto", "compile": False, "gpu_decode": True, "freeze": True}
    opts = accel_options({"RESNET_SERVING_AMP": "BF16", "RESNET_SERVING_COMPILE": "1",
                          "RESNET_SERVING_GPU_DECODE": "0", "RESNET_SERVING_FREEZE": "0"})  # fmt: skip
    assert opts == {"amp": "bf16", "compile": True, "gpu_decode": False, "freeze": False}
    with pytest.raises(ConfigError, match="RESNET_SERVING_AMP"):
        accel_options({"RESNET_SERVING_AMP": "int4"})


def test_off_is_fp32_and_a_gpu_id_without_a_gpu_selects_the_cpu(state: dict) -> None:
    """(auto's choice on a CPU: tests/unit/test_cpuinfo.py)"""
    assert model.Classifier(state, amp="off").amp_dtype is None
    # device selection: no GPU here, so a gpu_id from TorchServe still selects the CPU
    assert model.select_device(0 if not torch.cuda.is_available() else None).type == "cpu"


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen-bf16-graph", "eager-autocast"])
def test_bf16_matches_fp32_top1(state: dict, freeze: bool) -> None:
    images = [imaging.decode_image(fx.PHOTO.read_bytes()), imaging.decode_image(fx.jpeg(300, 200))]
    fp32 = batch_logits(model.Classifier(state, amp="off"), images)
    clf = model.Classifier(state, amp="bf16", freeze=freeze)
    assert clf.graph == ("torchscript-frozen-bf16" if freeze else "eager")
    bf16 = batch_logits(clf, images)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape == (2, 1000)
    assert (fp32.argmax(1) == bf16.argmax(1)).all()
    assert np.abs(fp32 - bf16).max() < 0.25 * np.abs(fp32).max()
    top5 = lambda x: np.argsort(-x, axis=1)[:, :5]  # noqa: E731
    assert (top5(fp32) == top5(bf16)).mean() >= 0.8


def test_responses_name_a_reduced_precision(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def answer() -> dict:
        svc = InferenceService.from_model_dir(model_dir)
        return svc.handle([{"body": fx.PHOTO.read_bytes()}], ["image/jpeg"])[0].body

    fp32 = answer()
    assert "precision" not in fp32
    monkeypatch.setenv("RESNET_SERVING_AMP", "bf16")
    bf16 = answer()
    assert bf16["precision"] == "bf16"
    assert [p["index"] for p in bf16["predictions"]][:1] == [p["index"] for p in fp32["predictions"]][:1]
    assert {k: v for k, v in bf16.items() if k not in ("precision", "predictions")} == {
        k: v for k, v in fp32.items() if k != "predictions"
    }


def test_responses_name_the_scaled_jpeg_decode(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RESNET_SERVING_JPEG_SCALED_DECODE reaches the worker's service from its environment, and its answers say so."""
    from PIL import Image

    photo = Image.open(fx.PHOTO).convert("RGB")
    big = fx.encode(photo.resize((photo.width * 4, photo.height * 4)), "JPEG", quality=90)
    exact = InferenceService.from_model_dir(model_dir)
    assert "jpeg_decode" not in exact.handle([{"body": big}], ["image/jpeg"])[0].body
    monkeypatch.setenv("RESNET_SERVING_JPEG_SCALED_DECODE", "1")
    scaled = InferenceService.from_model_dir(model_dir)
    assert scaled.settings.jpeg_scaled_decode is True
    body = scaled.handle([{"body": big}], ["image/jpeg"])[0].body
    assert body["jpeg_decode"] == "scaled" and len(body["predictions"]) == 5
    monkeypatch.setenv("RESNET_SERVING_JPEG_SCALED_DECODE", "maybe")
    with pytest.raises(ConfigError, match="RESNET_SERVING_JPEG_SCALED_DECODE"):
        InferenceService.from_model_dir(model_dir)


def test_batch_norm_folding_is_exact_in_fp32(state: dict) -> None:
    """The bf16 graph folds batch norm before casting; the fold itself must not change the fp32 network."""
    net = torchvision_resnet50(state)
    folded = model.fold_batch_norm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 53  # the original is untouched
    x = imaging.normalize_crops([imaging.decode_crop(fx.PHOTO.read_bytes())], channels_last=False)
    with torch.inference_mode():
        a, b = folded(x), net(x)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "eager"])
def test_the_model_takes_pixels_and_computes_the_reference_network(state: dict, freeze: bool) -> None:
    """The weights' normalisation is folded into conv1 (model.fold_input_normalization): the Classifier on
    uint8 crops gives torchvision's own network on transforms()'s normalised input, up to float rounding.
    Noise crops put every value at the borders, where conv1's zero padding must still mean "the mean pixel"."""
    rng = np.random.default_rng(7)
    crops = [torch.from_numpy(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(2)]
    crops.append(imaging.decode_crop(fx.PHOTO.read_bytes()))
    with torch.inference_mode():
        ref = torchvision_resnet50(state)(imaging.normalize_crops(crops, channels_last=False)).numpy()
    before = state["conv1.weight"].clone()
    clf = model.Classifier(state, amp="off", freeze=freeze)
    assert torch.equal(state["conv1.weight"], before)  # the fold changes the Classifier's copy, not the caller's
    ours = batch_logits(clf, crops, crops=True)
    assert ours.shape == ref.shape == (3, 1000)
    assert (ours.argmax(1) == ref.argmax(1)).all()
    assert np.abs(ours - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
    # the accelerator path (full images, resized by torch) takes pixels too
    full = [imaging.decode_image(fx.PHOTO.read_bytes())]
    with torch.inference_mode():
        ref_full = torchvision_resnet50(state)(imaging.preprocess(full, channels_last=False)).numpy()
    assert np.abs(batch_logits(clf, full) - ref_full).max() < 1e-4 * max(1.0, float(np.abs(ref_full).max()))


def test_compile_is_applied_and_warmed_up(state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling ResNet50 with inductor takes minutes on 2 cores, so torch.compile is replaced by a wrapper that
    records the batches it sees: this checks the wiring (compiled once, warm-up passes run at start-up)."""

    class Recorder(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.batches: list[int] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.batches.append(int(x.shape[0]))
            return self.inner(x)

    monkeypatch.setattr(torch, "compile", Recorder)
    clf = model.Classifier(state, compile=True, warmup_batches=(1, 4))
    assert clf.compiled and isinstance(clf.model, Recorder)
    assert clf.model.batches == [1, 4]  # compiled during start-up, not on a request
    batch_logits(clf, [imaging.decode_image(fx.jpeg())] * 2)
    assert clf.model.batches == [1, 4, 2]
    assert not model.Classifier(state, amp="off").compiled


@pytest.mark.parametrize("amp, freeze, expected", [
    ("bf16", False, torch.bfloat16),  # eager autocast: the forward pass must run inside it
    ("bf16", True, None),  # the frozen bf16 graph casts inside itself, with no autocast around it
    ("off", True, None),
])  # fmt: skip
def test_bench_raw_step_times_the_served_precision(
    state: dict, amp: str, freeze: bool, expected: torch.dtype | None
) -> None:
    """The bench's raw figure is the denominator of every served ÷ raw ratio: it must run the network in the
    precision the handler serves (on a GPU, fp16 autocast), not plain fp32. CPU bf16 autocast stands in for it."""
    from resnet_serving.bench.runner import _raw_step

    clf = model.Classifier(state, amp=amp, freeze=freeze)
    seen: list[torch.dtype | None] = []
    inner = clf.model

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return inner(x)

    clf.model = spy
    _raw_step(clf, 1)()
    served = batch_logits(clf, [imaging.decode_image(fx.jpeg())])
    assert served.shape == (1, 1000)
    assert seen == [expected, expected]  # the raw step's pass, then the served one


def test_batched_jpeg_decode_matches_single_decode() -> None:
    datas = [fx.jpeg(96, 64), fx.PHOTO.read_bytes(), fx.jpeg_with_orientation(6)]
    batch = imaging.decode_jpeg_batch(datas, "cpu")
    assert batch is not None and len(batch) == 3
    for data, t in zip(datas, batch, strict=True):
        assert torch.equal(t, imaging.decode_image(data))
    assert imaging.decode_jpeg_batch([fx.jpeg(), fx.PHOTO.read_bytes()[:3000]], "cpu") is None


def test_service_deferred_decode_path_blames_the_right_image(model_dir: Path) -> None:
    svc = InferenceService.from_model_dir(model_dir)
    # force the accelerator path with GPU decode; resize and decode_jpeg_batch then run on the model's device (CPU)
    svc.crop_on_cpu, svc.gpu_decode = False, True
    good, bad = fx.PHOTO.read_bytes(), fx.PHOTO.read_bytes()[:5000]
    reqs = [{"body": good}, {"body": bad}, {"body": fx.png()}, {"body": good}]
    out = svc.handle(reqs, ["image/jpeg", "image/jpeg", "image/png", "image/jpeg"])
    assert [r.status for r in out] == [200, 400, 200, 200]
    assert "truncated" in out[1].body["message"]
    assert out[0].body["predictions"] == out[3].body["predictions"]
    deferred = out[0].body["predictions"]
    # same answer as decoding one by one on the same path (scores differ only by batch-size-dependent rounding)
    svc.gpu_decode = False
    single = svc.handle([{"body": good}], ["image/jpeg"])[0].body["predictions"]
    assert [p["index"] for p in single] == [p["index"] for p in deferred]
    assert np.allclose([p["score"] for p in single], [p["score"] for p in deferred], atol=1e-4)
    # and the CPU path (PIL resize) agrees with the accelerator path (torch resize) up to resize rounding
    cpu = InferenceService.from_model_dir(model_dir).handle([{"body": good}], ["image/jpeg"])[0].body["predictions"]
    assert [p["index"] for p in cpu] == [p["index"] for p in deferred]
    assert np.allclose([p["score"] for p in cpu], [p["score"] for p in deferred], atol=5e-3)


def test_cpu_model_is_frozen_by_default_and_matches_eager(state: dict) -> None:
    """The frozen TorchScript graph (BN folded, oneDNN-packed weights) computes what the eager model does."""
    frozen, eager = model.Classifier(state, amp="off"), model.Classifier(state, amp="off", freeze=False)
    assert frozen.graph == "torchscript-frozen" and isinstance(frozen.model, torch.jit.ScriptModule)
    assert eager.graph == "eager" and not isinstance(eager.model, torch.jit.ScriptModule)
    images = [imaging.decode_image(fx.PHOTO.read_bytes()), imaging.decode_image(fx.jpeg(300, 200)),
              imaging.decode_image(fx.png())]  # fmt: skip
    for n in (1, 3):  # the frozen graph takes any batch size
        a, b = batch_logits(frozen, images[:n]), batch_logits(eager, images[:n])
        assert a.shape == b.shape == (n, 1000)
        assert (a.argmax(1) == b.argmax(1)).all()
        assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(b).max()))
    # fp16 autocast and torch.compile keep their own paths; the GPU path is never frozen
    assert model.Classifier(state, amp="fp16").graph == "eager"


def test_freezing_falls_back_to_eager_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    class Unscriptable(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.asarray(x))  # numpy: TorchScript cannot compile this

    m = Unscriptable()
    with caplog.at_level("WARNING", logger="resnet_serving.inference.model"):
        out, graph = model.freeze_for_cpu(m)
    assert out is m and graph == "eager"
    assert "TorchScript freezing failed" in caplog.text
