"""Batch orchestration behind the TorchServe handler: parse → decode → batch tensor → one forward pass → top-k.

One bad request in a dynamic batch fails only itself: every request gets its own status and JSON body.
The handler (``resnet_serving.torchserve.handler``, packed into the .mar by ``handlers/resnet50_handler.py``)
only adapts TorchServe's ``context`` to this.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet_serving.artifact.layout import LABELS_FILE, MODEL_INFO_FILE, STATE_DICT_FILE
from resnet_serving.artifact.manifest import sha256_file
from resnet_serving.artifact.runtime import TORCH, validate_runtime
from resnet_serving.errors import ArchiveError, InputError, ResnetServingError
from resnet_serving.inference import imaging, postprocess, protocol
from resnet_serving.inference.cpu import thread_budget
from resnet_serving.inference.metrics import BatchMetrics
from resnet_serving.inference.model import Classifier, select_device
from resnet_serving.inference.openvino_model import OpenVinoClassifier
from resnet_serving.settings import Settings

log = logging.getLogger(__name__)

#: What the service runs a batch through: the torch network, or its OpenVINO IR (``archive --runtime``).
Model = Classifier | OpenVinoClassifier


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    phrase: str = "OK"
    #: What the request carried, for its log line: decoded image bytes (the body's size if it did not parse).
    image_bytes: int = 0
    images: int = 0


@dataclass
class _Pending:
    parsed: protocol.ParsedRequest
    images: list[Any] = field(default_factory=list)  # decoded tensors (or JPEG bytes awaiting GPU decode)
    offset: int = 0


def worker_threads(settings: Settings) -> int:
    """The worker's thread budget: the one chosen by ``serve`` (:attr:`Settings.torch_threads`), else derived."""
    chosen = settings.torch_threads
    return chosen if chosen is not None else thread_budget(workers=1)


def configure_threads(settings: Settings) -> int:
    """Apply the worker's thread budget (:func:`worker_threads`) to torch."""
    threads = worker_threads(settings)
    torch.set_num_threads(threads)
    return threads


def load_model(
    model_dir: Path, device: torch.device, batch_size: int, settings: Settings, threads: int
) -> tuple[Model, dict[str, Any]]:
    """The network an unpacked archive holds, built as serving runs it (the handler's service and the bench's
    raw processes both load it here), and the archive's ``model_info.json``. The archive's runtime record says
    which: torch (archives without one), or OpenVINO on a CPU with ``threads`` threads."""
    try:
        info = json.loads((model_dir / MODEL_INFO_FILE).read_text(encoding="utf-8"))
        runtime = validate_runtime(info.get("runtime", TORCH), where=str(model_dir / MODEL_INFO_FILE))
        if runtime["name"] == "openvino":
            if device.type != "cpu":
                raise ArchiveError(
                    f"{model_dir}: this archive runs on OpenVINO, which serves on a CPU, and this worker was given "
                    f"{device}: serve GPUs with an archive built with --runtime torch"
                )
            return OpenVinoClassifier.from_model_dir(model_dir, runtime, threads=threads, batch_size=batch_size), info
        state = torch.load(model_dir / STATE_DICT_FILE, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise ArchiveError(f"{model_dir}: not a resnet-serving archive ({e})") from e
    return Classifier.configured(state, device, batch_size, settings), info


def pixel_batch(classifier: Model, images: Sequence[torch.Tensor], *, crops: bool) -> torch.Tensor:
    """The model's input for one forward pass: centred float pixels on its device, in its memory layout.

    ``crops``: uint8 (224, 224, 3) crops from :func:`imaging.decode_crop` (the CPU path); otherwise uint8
    (3, H, W) full images, resized on the model's device (the accelerator path: 4× fewer bytes to copy than
    float)."""
    if crops:
        pixels = imaging.crop_pixels(images, channels_last=classifier.channels_last)
    else:
        if classifier.device.type != "cpu":
            images = [im.to(classifier.device, non_blocking=True) for im in images]
        pixels = imaging.resize_pixels(images, channels_last=classifier.channels_last)
    return classifier.center(pixels.to(classifier.device))


@torch.inference_mode()
def batch_logits(
    classifier: Model,
    images: Sequence[torch.Tensor],
    *,
    crops: bool = False,
    stages: dict[str, float] | None = None,
) -> np.ndarray:
    """float32 (N, 1000) logits for decoded images (see :func:`pixel_batch`), in forward passes of at most
    ``classifier.max_batch`` images. ``stages``, when given, is set to the seconds spent building the batch
    tensors ("preprocess") and in the network ("forward"), for the stage metrics."""
    outs: list[np.ndarray] = []
    spent = {"preprocess": 0.0, "forward": 0.0}
    for start in range(0, len(images), classifier.max_batch):
        t0 = time.perf_counter()
        batch = pixel_batch(classifier, images[start : start + classifier.max_batch], crops=crops)
        t1 = time.perf_counter()
        spent["preprocess"] += t1 - t0
        out = classifier.forward(batch)
        outs.append(out.float().cpu().numpy())  # the copy to the host waits for the device: forward time
        spent["forward"] += time.perf_counter() - t1
    if stages is not None:
        stages.update(spent)
    return np.concatenate(outs, axis=0)


def _sizes(parsed: protocol.ParsedRequest | None, request: Any) -> tuple[int, int]:
    """(image bytes, images) of one request: the decoded images, else the size of a body that did not parse."""
    if parsed is not None:
        return sum(len(image) for image in parsed.images), len(parsed.images)
    body = next((request.get(f) for f in protocol.BODY_FIELDS if isinstance(request, Mapping) and f in request), None)
    if isinstance(body, (bytes, bytearray)):
        return len(body), 0
    if isinstance(body, str):
        return len(body.encode("utf-8", "surrogatepass")), 0
    return 0, 0


class InferenceService:
    def __init__(
        self,
        classifier: Model,
        labels: Sequence[str],
        meta: Mapping[str, Any],
        settings: Settings | None = None,
        *,
        gpu_decode: bool = True,
        sha256: str = "",
        decode_threads: int | None = None,
    ) -> None:
        self.classifier = classifier
        self.labels = list(labels)
        self.meta = dict(meta)
        self.settings = settings or Settings.from_env()
        #: On a CPU, PIL decodes, resizes and crops each image (the cheapest exact path); on an accelerator the
        #: full image goes to the device and is resized there.
        self.crop_on_cpu = classifier.device.type == "cpu"
        #: Decode JPEG batches on the accelerator (nvJPEG) when the model runs on one.
        self.gpu_decode = gpu_decode and classifier.device.type == "cuda"
        self.metrics = BatchMetrics(self.meta, sha256=sha256, precision=classifier.precision)
        #: A batch's images are decoded by this many threads (PIL and libjpeg release the GIL), on the cores the
        #: forward pass uses next: one worker with every core decodes in parallel, one with one core in turn.
        self.decode_threads = max(1, decode_threads if decode_threads is not None else torch.get_num_threads())
        self._pool = (
            ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode") if self.decode_threads > 1 else None
        )

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | os.PathLike[str],
        gpu_id: Any = None,
        batch_size: int = 8,
        settings: Settings | None = None,
    ) -> InferenceService:
        """Load what ``resnet-serving archive`` packed into the .mar (TorchServe unpacks it to model_dir).

        ``settings``: the worker's, read once at its start (the handler); without them, read from the
        environment here, once."""
        settings = settings or Settings.from_env()
        model_dir = Path(model_dir)
        device = select_device(gpu_id)
        classifier, info = load_model(model_dir, device, batch_size, settings, worker_threads(settings))
        labels = postprocess.load_labels(model_dir / LABELS_FILE)
        weights = info.get("weights", {})
        meta: dict[str, Any] = {
            "model": info.get("name", "resnet50"),
            "version": str(info.get("version", "")),
            "weights": weights.get("id", "unknown"),
        }
        if not weights.get("pretrained", False):
            meta["warning"] = weights.get("warning", "weights are not pretrained: predictions are meaningless")
        if classifier.precision != "fp32":  # scores then differ slightly from an fp32 pod's: say so
            meta["precision"] = classifier.precision
        if isinstance(classifier, OpenVinoClassifier):  # so do an OpenVINO pod's from a torch one's: say which ran
            meta["graph"] = classifier.graph
        if settings.jpeg_scaled_decode and device.type == "cpu":  # so do the pixels of a large JPEG: say so too
            meta["jpeg_decode"] = "scaled"
        sha256 = sha256_file(model_dir / STATE_DICT_FILE)
        return cls(classifier, labels, meta, settings, gpu_decode=settings.gpu_decode, sha256=sha256)

    def handle(
        self,
        requests: Sequence[Mapping[str, Any]],
        content_types: Sequence[str | None],
        headers: Sequence[Mapping[str, str]] | None = None,
    ) -> list[Response]:
        """One Response per request, in order. Never raises for bad input. ``headers`` are lower-cased.

        Records the batch in :attr:`metrics`: each stage's time, the batch size, each request's status and time."""
        started = time.perf_counter()
        self.metrics.in_flight.inc(len(requests))
        try:
            responses = self._handle(requests, content_types, headers)
        finally:
            self.metrics.in_flight.dec(len(requests))
        elapsed = time.perf_counter() - started
        self.metrics.batch(len(requests))
        for resp in responses:
            code = None if resp.status == 200 else str(resp.body.get("error", "internal_error"))
            self.metrics.request(resp.status, elapsed, code)
        return responses

    def _handle(
        self,
        requests: Sequence[Mapping[str, Any]],
        content_types: Sequence[str | None],
        headers: Sequence[Mapping[str, str]] | None,
    ) -> list[Response]:
        started = time.perf_counter()
        results: list[Response | None] = [None] * len(requests)
        parsed: dict[int, protocol.ParsedRequest] = {}
        all_headers = list(headers) if headers is not None else [{} for _ in requests]
        sizes: list[tuple[int, int]] = [(0, 0)] * len(requests)
        for idx, (req, ctype) in enumerate(zip(requests, content_types, strict=True)):
            try:
                parsed[idx] = protocol.parse_request(
                    req if isinstance(req, Mapping) else {}, ctype, self.settings, all_headers[idx]
                )
            except ResnetServingError as e:
                results[idx] = self._error(e)
            sizes[idx] = _sizes(parsed.get(idx), req)
        jobs = [raw for p in parsed.values() for raw in p.images]
        decoded = iter(self._map(self._decode_one, jobs))
        pending: dict[int, _Pending] = {}
        for idx, p in parsed.items():
            item = _Pending(p)
            outcomes = [next(decoded) for _ in p.images]  # every image is consumed, failed request or not
            for i, out in enumerate(outcomes):
                if isinstance(out, InputError):  # the first bad image fails its request, as decoding in turn would
                    results[idx] = self._error(out, index=i if p.multi else None)
                    break
                if isinstance(out, ResnetServingError):
                    results[idx] = self._error(out)
                    break
                item.images.append(out)
            else:
                pending[idx] = item
        self._decode_deferred(pending, results)
        self.metrics.stage("decode", time.perf_counter() - started)
        if pending:
            flat: list[torch.Tensor] = []
            for item in pending.values():
                item.offset = len(flat)
                flat.extend(item.images)
            stages: dict[str, float] = {}
            logits = batch_logits(self.classifier, flat, crops=self.crop_on_cpu, stages=stages)
            for stage, seconds in stages.items():
                self.metrics.stage(stage, seconds)
            post = time.perf_counter()
            for idx, item in pending.items():
                n = len(item.images)
                preds = postprocess.topk(logits[item.offset : item.offset + n], item.parsed.topk, self.labels)
                results[idx] = Response(200, protocol.success_body(preds, self.meta, multi=item.parsed.multi))
            self.metrics.stage("postprocess", time.perf_counter() - post)
        out = [r for r in results if r is not None]
        for resp, (image_bytes, images) in zip(out, sizes, strict=True):
            resp.image_bytes, resp.images = image_bytes, images
        return out

    def _map(self, fn: Callable[[bytes], Any], items: list[bytes]) -> list[Any]:
        """``fn`` over ``items`` in order: on the decode threads when there are several items, else inline."""
        if self._pool is None or len(items) < 2:
            return [fn(x) for x in items]
        return list(self._pool.map(fn, items))

    def _decode_one(self, raw: bytes) -> torch.Tensor | bytes | ResnetServingError:
        """One image decoded (or deferred), or the typed error that names what is wrong with it."""
        try:
            return self._decode_or_defer(raw)
        except ResnetServingError as e:
            return e

    def _decode_or_defer(self, raw: bytes) -> torch.Tensor | bytes:
        """Decode on the CPU now, or (GPU decode on) validate the header and leave JPEG bytes for one batch call."""
        if self.crop_on_cpu:
            return imaging.decode_crop(raw, self.settings)
        if self.gpu_decode and imaging.validate_header(raw, self.settings) in ("JPEG:RGB", "JPEG:L"):
            return raw
        return imaging.decode_image(raw, self.settings)

    def _decode_deferred(self, pending: dict[int, _Pending], results: list[Response | None]) -> None:
        """Batch-decode deferred JPEGs on the model's device; on failure decode one by one to blame the right one."""
        deferred = [
            (idx, i) for idx, item in pending.items() for i, im in enumerate(item.images) if isinstance(im, bytes)
        ]
        if not deferred:
            return
        datas = [pending[idx].images[i] for idx, i in deferred]
        decoded = imaging.decode_jpeg_batch(datas, self.classifier.device)
        for n, (idx, i) in enumerate(deferred):
            if idx not in pending:
                continue
            item = pending[idx]
            try:
                item.images[i] = decoded[n] if decoded is not None else imaging.decode_image(datas[n], self.settings)
            except InputError as e:
                results[idx] = self._error(e, index=i if item.parsed.multi else None)
                del pending[idx]

    def _error(self, err: ResnetServingError, *, index: int | None = None) -> Response:
        phrase = {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type"}.get(
            err.http_status, "Error"
        )
        return Response(err.http_status, protocol.error_body(err, self.meta, index=index), phrase)
