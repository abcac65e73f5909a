"""The OpenVINO runtime behind the same service (``archive --runtime openvino``; docs: how-to/reduced-precision).

:func:`export_ir` converts the network that the torch path serves (normalisation folded into conv1, so it takes
centred pixels) to OpenVINO IR at archive time; :class:`OpenVinoClassifier` compiles that IR for the CPU at worker
start and offers the service what :class:`~resnet_serving.inference.model.Classifier` does (``center``,
``forward``, ``device``, ``channels_last``, ``max_batch``, ``graph``, ``precision``). OpenVINO is the optional
``openvino`` extra: it is imported here only, when an archive asks for it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torchvision.models import resnet50

from resnet_serving.artifact.layout import IR_XML_FILE
from resnet_serving.artifact.manifest import sha256_file
from resnet_serving.artifact.runtime import OPENVINO_FILES, OPENVINO_PRECISIONS, openvino_missing
from resnet_serving.errors import ArchiveError, IntegrityError
from resnet_serving.inference.cpuinfo import asked_precision
from resnet_serving.inference.model import PIXEL_MEAN, fold_input_normalization

log = logging.getLogger(__name__)

#: OpenVINO's INFERENCE_PRECISION_HINT for each precision it is asked to compute in.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}

#: The input the IR is converted with: any batch (dynamic), 3 × 224 × 224 centred pixels, NCHW.
INPUT_SHAPE = (-1, 3, 224, 224)


def import_openvino(purpose: str) -> Any:
    """The ``openvino`` module, or :class:`ArchiveError` naming the extra to install."""
    try:
        import openvino
    except ImportError as e:
        raise ArchiveError(openvino_missing(purpose)) from e
    return openvino


def export_ir(state_dict: dict[str, torch.Tensor], out_dir: Path, precision: str) -> dict[str, Any]:
    """Write ``out_dir/model.xml`` and ``model.bin``: the served network (:func:`fold_input_normalization` applied)
    as OpenVINO IR with a dynamic batch, weights kept fp32 (the precision is chosen when it is compiled). Returns
    the runtime record for the manifest (``artifact/runtime.py``)."""
    if precision not in OPENVINO_PRECISIONS:
        raise ArchiveError(f"--precision {precision}: the openvino runtime takes {', '.join(OPENVINO_PRECISIONS)}")
    ov = import_openvino("archive --runtime openvino")
    model = resnet50(weights=None)
    model.load_state_dict(state_dict, strict=True)
    fold_input_normalization(model.eval())
    # convert_model traces with torch.jit, whose deprecation warnings nothing can act on at archive time
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        ir = ov.convert_model(
            model, example_input=torch.zeros(1, *INPUT_SHAPE[1:]), input=[ov.PartialShape(list(INPUT_SHAPE))]
        )
    ov.save_model(ir, out_dir / IR_XML_FILE, compress_to_fp16=False)
    return {
        "name": "openvino",
        "version": metadata.version("openvino"),
        "precision": precision,
        "files": {name: sha256_file(out_dir / name) for name in OPENVINO_FILES},
    }


def verify_ir(model_dir: Path, runtime: Mapping[str, Any]) -> None:
    """:class:`IntegrityError` unless each IR file in ``model_dir`` has the sha256 its runtime record says."""
    for name, expected in runtime["files"].items():
        try:
            digest = sha256_file(model_dir / name)
        except OSError as e:
            raise ArchiveError(f"{model_dir}: the openvino archive has no {name} ({e.strerror})") from e
        if digest != expected:
            raise IntegrityError(
                f"{model_dir / name} has sha256 {digest[:16]}… but the archive records {expected[:16]}…: refusing "
                "to compile it"
            )


class OpenVinoClassifier:
    """The IR compiled for the CPU with OpenVINO: :meth:`forward` on a batch of centred pixels (:meth:`center`),
    as :class:`~resnet_serving.inference.model.Classifier` does for torch."""

    def __init__(
        self,
        xml: Path,
        *,
        precision: str = "fp32",
        threads: int = 1,
        channels_last: bool = True,
        warmup_batches: tuple[int, ...] = (),
        max_batch: int = 32,
    ) -> None:
        ov = import_openvino("an archive built with --runtime openvino")
        self.device = torch.device("cpu")
        self.channels_last = channels_last
        self.max_batch = max_batch
        self.pixel_mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
        core = ov.Core()
        model = core.read_model(xml)
        if channels_last:  # the service's channels_last batch is NHWC memory: OpenVINO reads it in place
            ppp = ov.preprocess.PrePostProcessor(model)
            ppp.input().tensor().set_layout(ov.Layout("NHWC"))
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            model = ppp.build()
        #: What OpenVINO was asked to compute in: the archive's precision, or auto's choice for this CPU.
        self.asked, why = asked_precision(precision)
        log.info("OpenVINO asked for %s (%s archive: %s)", self.asked, precision, why)
        self.compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.asked],
                "INFERENCE_NUM_THREADS": threads,
                # one batch at a time per worker, as the torch path runs: one stream, all its threads on it
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        self._request = self.compiled.create_infer_request()
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        #: What the compiled model computes in: "fp32", or "bf16" where the CPU has bf16 instructions. OpenVINO
        #: compiles a bf16 request in f32 on a CPU without them, and this says so.
        self.precision = "bf16" if ran == "bf16" else "fp32"
        if self.precision != self.asked:
            log.warning("OpenVINO compiled this %s archive in %s on this CPU", precision, self.precision)
        #: What runs the forward pass, in responses and the bench: "openvino-fp32" or "openvino-bf16".
        self.graph = f"openvino-{self.precision}"
        for bs in warmup_batches:  # OpenVINO's kernels for each batch shape, before the first request
            pixels = torch.zeros(min(bs, max_batch), 3, 224, 224)
            layout = torch.channels_last if channels_last else torch.contiguous_format
            self.forward(self.center(pixels.contiguous(memory_format=layout)))

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, runtime: Mapping[str, Any], *, threads: int, batch_size: int
    ) -> OpenVinoClassifier:
        """The IR that ``archive --runtime openvino`` packed (TorchServe unpacked it into ``model_dir``), checked
        against its sha256 and compiled as serving runs it, warmed at batch 1 and ``batch_size``."""
        import_openvino("an archive built with --runtime openvino")
        verify_ir(model_dir, runtime)
        return cls(
            model_dir / IR_XML_FILE,
            precision=str(runtime["precision"]),
            threads=threads,
            warmup_batches=(1, batch_size),
        )

    def center(self, pixels: torch.Tensor) -> torch.Tensor:
        """A float pixel batch (0–255) → the IR's input, in place, as ``Classifier.center``."""
        return pixels.sub_(self.pixel_mean)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 (N, 1000) logits of a batch of centred pixels; the input is read in place where its memory is
        the layout the IR was compiled for (the service's batches are)."""
        x = batch.permute(0, 2, 3, 1) if self.channels_last else batch
        result = self._request.infer({0: x.contiguous().numpy()}, share_inputs=True)
        # a copy (4 KB an image): the request reuses its output buffer on the next pass
        return torch.from_numpy(result[0].copy())
