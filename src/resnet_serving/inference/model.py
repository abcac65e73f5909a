"""The ResNet50 network: weights resolution, device selection and the batched forward pass.

Weights specs (``resnet-serving archive --weights``):

* ``imagenet``: torchvision's ``ResNet50_Weights.IMAGENET1K_V2`` from the torch cache (``$TORCH_HOME``), else
  downloaded. Fails with :class:`WeightsUnavailable` when neither works.
* ``random``: seeded random initialisation. Meaningless predictions, labelled as such everywhere.
* ``auto``: ``imagenet`` when available, otherwise ``random`` with a loud warning (what ``make serve`` uses).
* a path to a ``state_dict`` saved with ``torch.save`` (or a dict holding one under ``state_dict``).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import torch
from torchvision.models import ResNet, ResNet50_Weights, resnet50

from resnet_serving.errors import ArchiveError, WeightsUnavailable
from resnet_serving.inference.cpuinfo import auto_cpu_precision
from resnet_serving.inference.imaging import MEAN, STD, WEIGHTS
from resnet_serving.settings import Settings

log = logging.getLogger(__name__)

RANDOM_SEED = 0
DOWNLOAD_TIMEOUT_S = 20.0


def _cached_weights_path(weights: ResNet50_Weights) -> Path:
    hub = Path(torch.hub.get_dir())
    return hub / "checkpoints" / os.path.basename(weights.url)


def resolve_weights(spec: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(state_dict, info)``; ``info`` is recorded in the manifest and echoed in every response."""
    if spec in ("imagenet", "auto"):
        try:
            return _imagenet_weights()
        except WeightsUnavailable:
            if spec == "imagenet":
                raise
        return _random_weights(fallback=True)
    if spec == "random":
        return _random_weights(fallback=False)
    return _file_weights(Path(spec))


def _imagenet_weights() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    weights = WEIGHTS
    cached = _cached_weights_path(weights)
    origin = "cache" if cached.exists() else "download"
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # URLError, timeout, hash mismatch, corrupt cache file…
        raise WeightsUnavailable(
            f"pretrained weights {weights} are not in the torch cache ({cached}) and could not be "
            f"downloaded: {e}. Put the file there, pass --weights PATH, or use --weights random"
        ) from e
    finally:
        socket.setdefaulttimeout(old_timeout)
    info = {
        "source": "imagenet",
        "id": str(weights).split(".", 1)[-1],
        "pretrained": True,
        "origin": origin,
        "file": os.path.basename(weights.url),
    }
    return state, info


def _random_weights(*, fallback: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    torch.manual_seed(RANDOM_SEED)
    model = resnet50(weights=None)
    info: dict[str, Any] = {
        "source": "random",
        "id": f"random-seed-{RANDOM_SEED}",
        "pretrained": False,
        "seed": RANDOM_SEED,
        "warning": "random weights: predictions are meaningless",
    }
    if fallback:
        info["fallback_reason"] = "pretrained ImageNet weights unavailable (offline and not cached)"
    return model.state_dict(), info


def _file_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise ArchiveError(f"--weights {path}: no such file (use imagenet, random, auto or a path)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ArchiveError(f"--weights {path}: not a loadable torch state_dict ({e})") from e
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ArchiveError(f"--weights {path}: expected a state_dict, got {type(obj).__name__}")
    try:
        resnet50(weights=None).load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArchiveError(f"--weights {path}: not a ResNet50 state_dict: {str(e)[:300]}") from e
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return state, {"source": "file", "id": path.name, "pretrained": True, "sha256": digest}


def select_device(gpu_id: Any = None) -> torch.device:
    """TorchServe passes ``gpu_id`` when it assigned the worker a GPU; otherwise run on the CPU."""
    if gpu_id is not None and str(gpu_id).strip() not in ("", "None", "-1") and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


AMP_DTYPES = {"auto": None, "off": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class _Bf16Graph(torch.nn.Module):
    """Runs a bf16 copy of the network on float input and returns float logits (the service's contract)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(torch.bfloat16)).float()


#: What :meth:`Classifier.center` subtracts from a pixel batch: the weights' mean, in pixel units (0–255).
PIXEL_MEAN: list[float] = [255.0 * m for m in MEAN]


def fold_input_normalization(model: ResNet) -> ResNet:
    """Make ``model`` (in place, and returned) take centred pixels, ``pixels − PIXEL_MEAN``, instead of the
    weights' normalised input ``(pixels / 255 − mean) / std``: conv1's weights are divided by 255·std per input
    channel. The same function up to float rounding, borders included: conv1 pads with zeros, and a centred
    pixel is zero exactly where a normalised one is. It saves the batch's scaling and division passes, which
    cost more than the one subtraction left (docs: explanation/server-configuration)."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in STD], dtype=model.conv1.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        model.conv1.weight.mul_(scale.to(model.conv1.weight.device))
    return model


def fold_batch_norm(model: ResNet) -> ResNet:
    """A copy of a torchvision ResNet in eval mode with every batch norm folded into the convolution before it,
    computed in the weights' own dtype (fp32): folding after a cast to bf16 would round twice."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()

    def fold(parent: torch.nn.Module, conv: str, bn: str) -> None:
        setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn)))
        setattr(parent, bn, torch.nn.Identity())

    fold(folded, "conv1", "bn1")
    for layer in (folded.layer1, folded.layer2, folded.layer3, folded.layer4):
        for block in layer:
            for i in (1, 2, 3):
                fold(block, f"conv{i}", f"bn{i}")
            if block.downsample is not None:
                fold(block.downsample, "0", "1")
    return folded


def freeze_for_cpu(model: torch.nn.Module, dtype: torch.dtype | None = None) -> tuple[Any, str]:
    """The eval-mode model as a frozen TorchScript graph optimised for CPU inference: batch norm folded into
    the convolutions, and the convolution weights reordered into oneDNN's layout once, here, instead of on every
    forward pass; logits stay close to eager (the measurements pages have the figures, and a test the
    tolerance). Returns ``(model, "torchscript-frozen")``, or the eager model and
    ``"eager"`` where TorchScript cannot do it (logged; serving goes on, slower).

    TorchScript is deprecated in favour of ``torch.compile``, which is faster still but compiles for tens of
    seconds per batch shape at worker start (``RESNET_SERVING_COMPILE=1``). torch is pinned, and the
    FutureWarnings it raises here are silenced because nothing can act on them at serving time.

    ``dtype=torch.bfloat16`` (a ResNet only) folds batch norm in fp32, casts the weights to bf16 and returns
    ``"torchscript-frozen-bf16"``: a graph that takes and returns float32. It only pays on CPUs with bf16
    instructions (docs: how-to/reduced-precision).
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
            with torch.no_grad():
                if dtype == torch.bfloat16 and isinstance(model, ResNet):
                    net: torch.nn.Module = _Bf16Graph(fold_batch_norm(model).to(torch.bfloat16))
                    name = "torchscript-frozen-bf16"
                elif dtype is None:
                    net, name = model, "torchscript-frozen"
                else:
                    raise ValueError(f"no frozen CPU graph for {dtype}")
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(net.eval())))
    except Exception as e:  # a torch without TorchScript, or a graph it cannot script
        log.warning("TorchScript freezing failed, serving the eager model: %s", e)
        return model, "eager"
    return frozen, name


class Classifier:
    """A loaded ResNet50 on one device: :meth:`forward` on a batch of centred pixels (:meth:`center`). The service
    builds that batch from decoded images (``inference/service.py``: ``pixel_batch``, ``batch_logits``)."""

    def __init__(
        self,
        state_dict: dict[str, torch.Tensor],
        *,
        device: torch.device | None = None,
        channels_last: bool = True,
        amp: str = "auto",
        compile: bool = False,
        freeze: bool = True,
        warmup_batches: tuple[int, ...] = (),
        max_batch: int = 32,
    ) -> None:
        self.device = device or torch.device("cpu")
        model = resnet50(weights=None)
        model.load_state_dict(state_dict, strict=True)
        model.eval()
        fold_input_normalization(model)  # every graph below takes centred pixels (self.center)
        self.pixel_mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1).to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model: Any = model.to(self.device)
        self.channels_last = channels_last
        # auto: fp16 autocast on a GPU; on a CPU bf16 where it is native, else fp32 (bf16 emulated is slower)
        self.amp_dtype: torch.dtype | None
        if amp == "auto" and self.device.type == "cuda":
            self.amp_dtype = torch.float16
        elif amp == "auto":
            self.amp_dtype = torch.bfloat16 if auto_cpu_precision()[0] == "bf16" else None
        else:
            self.amp_dtype = AMP_DTYPES[amp]
        self.compiled = False
        #: What runs the forward pass: "eager", "compiled", or on a CPU "torchscript-frozen" (fp32) or
        #: "torchscript-frozen-bf16" (bf16 weights, float32 in and out).
        self.graph = "eager"
        if compile:
            self.model = torch.compile(self.model)
            self.compiled = True
            self.graph = "compiled"
        elif freeze and self.device.type == "cpu" and self.amp_dtype in (None, torch.bfloat16):
            self.model, self.graph = freeze_for_cpu(self.model, self.amp_dtype)
        #: The most images one forward pass takes; the service splits larger batches.
        self.max_batch = max_batch
        # compile/autotune, TorchScript's profiling runs and oneDNN primitive caches, before the first request:
        # a batch shaped, typed and laid out as the service's (float pixels, channels_last, on the device)
        with torch.inference_mode():
            for bs in warmup_batches:
                pixels = torch.zeros(min(bs, max_batch), 3, 224, 224, device=self.device)
                layout = torch.channels_last if channels_last else torch.contiguous_format
                self.forward(self.center(pixels.contiguous(memory_format=layout)))

    @property
    def precision(self) -> str:
        """The forward pass's arithmetic: "fp32", or "bf16"/"fp16" (autocast or a bf16 graph)."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.amp_dtype]

    @property
    def _autocast(self) -> torch.dtype | None:
        """The autocast dtype around the forward pass: none for a frozen bf16 graph, which casts inside."""
        return None if self.graph == "torchscript-frozen-bf16" else self.amp_dtype

    @classmethod
    def configured(
        cls,
        state_dict: dict[str, torch.Tensor],
        device: torch.device,
        batch_size: int,
        settings: Settings | None = None,
    ) -> Classifier:
        """The model as serving runs it, with the worker's :class:`~resnet_serving.settings.Settings` switches
        (``RESNET_SERVING_AMP``, ``_COMPILE``, ``_FREEZE``; all off or automatic on a CPU) applied; without
        ``settings``, they are read from the environment. Compilation happens during the warm-up forward passes
        at worker start, never on a request; freezing runs the CPU model as :func:`freeze_for_cpu`'s graph. The
        handler's service and the bench's raw and pipeline processes all build it here, so raw measures what is
        served."""
        s = settings or Settings.from_env()
        return cls(
            state_dict,
            device=device,
            amp=s.amp,
            compile=s.compile,
            freeze=s.freeze,
            # a compiled or frozen model is compiled/profiled here, at worker start, not on the first request
            warmup_batches=(1, batch_size) if s.compile or s.freeze else (),
        )

    def center(self, pixels: torch.Tensor) -> torch.Tensor:
        """A float pixel batch (0–255, on the model's device) → the model's input, in place: the normalisation
        left after :func:`fold_input_normalization`."""
        return pixels.sub_(self.pixel_mean)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The network on a ready batch (centred pixels on the device), in the served precision: what serving
        runs, and what the bench's raw figure times."""
        if self._autocast is None:
            return self.model(batch)
        with torch.autocast(device_type=self.device.type, dtype=self._autocast):
            return self.model(batch)
