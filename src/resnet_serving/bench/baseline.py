"""`bench --baseline`: the reference a user would get from TorchServe 0.12 alone, on the same weights.

A TorchScript file of the same ResNet50 (the state_dict inside the bench's ``model.mar``), archived with the
stock ``image_classifier`` handler, and served with TorchServe's own defaults where they touch speed: one
worker per CPU, batch size 1 (no dynamic batching), torch's default thread count in every worker, and the JVM's
default JIT tiers. Started by the same launcher as ``serve`` (:class:`~resnet_serving.torchserve.server.
TorchServe`), whose loopback binding, ports and logging are not performance settings.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torchvision.models import resnet50

from resnet_serving import MODEL_NAME
from resnet_serving.archiver import pack_mar
from resnet_serving.artifact.layout import ARCHIVE_NAME, LABELS_FILE
from resnet_serving.bench.mar import archive_member, archive_state_dict
from resnet_serving.errors import ConfigError, TorchServeError
from resnet_serving.inference.cpu import available_cpus
from resnet_serving.torchserve.config import ServeConfig
from resnet_serving.torchserve.probe import probe_image
from resnet_serving.torchserve.server import TorchServe

STOCK_HANDLER = "image_classifier"
#: TorchServe 0.12's defaults for a model registered without settings (its config documentation).
TORCHSERVE_BATCH_SIZE = 1
TORCHSERVE_MAX_BATCH_DELAY_MS = 100
TORCHSERVE_JOB_QUEUE_SIZE = 100
#: The JVM's default: tiered compilation up to C2 (serve stops at C1, see torchserve/config.py).
JVM_DEFAULT_TIERS = "-XX:TieredStopAtLevel=4"


def require_stock_handler() -> None:
    """TorchServe's vision handlers import captum (for explanations) even when nothing asks for one."""
    import importlib.util

    if importlib.util.find_spec("captum") is None:
        raise ConfigError(
            f"bench --baseline: TorchServe's stock {STOCK_HANDLER} handler imports captum, which is not installed: "
            "pip install captum (the dev extra has it)"
        )


def build_baseline_archive(model_dir: Path, out_dir: Path, version: str) -> Path:
    """``out_dir/model.mar``: the archive's weights as a TorchScript file, with the stock handler and labels."""
    model = resnet50(weights=None)
    model.load_state_dict(archive_state_dict(model_dir), strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".baseline-", dir=out_dir) as tmp_s:
        tmp = Path(tmp_s)
        with warnings.catch_warnings():
            # what a TorchServe user archives today; the deprecation is torch's, nothing here can act on it
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
            scripted = torch.jit.script(model.eval())
            scripted.save(str(tmp / "model.pt"))  # a .pt without a model file: TorchServe loads it as TorchScript
        (tmp / LABELS_FILE).write_bytes(archive_member(model_dir, LABELS_FILE))
        built = pack_mar(
            model_name=MODEL_NAME,
            version=version,
            serialized_file=tmp / "model.pt",
            handler=STOCK_HANDLER,
            extra_files=[tmp / LABELS_FILE],
            work_dir=tmp,
        )
        final = out_dir / ARCHIVE_NAME
        built.replace(final)
    return final


def wait_stock_ready(server: TorchServe, timeout: float = 300.0, poll: float = 0.5) -> float:
    """Seconds from start until the stock handler answers the probe image with a JSON object of label → score
    (:meth:`TorchServe.wait_ready` expects our handler's body)."""
    import requests

    assert server.started_at is not None, "start() the server first"
    route = f"{server.cfg.inference_url}/predictions/{server.cfg.model_name}"
    deadline = time.monotonic() + timeout
    detail = "not polled yet"
    while time.monotonic() < deadline:
        if not server.alive():
            raise TorchServeError(f"the baseline TorchServe exited; last log lines:\n{server.tail_log()}")
        try:
            r = requests.post(route, data=probe_image(), headers={"Content-Type": "image/jpeg"}, timeout=10)
            body = r.json() if r.status_code == 200 else None
            if isinstance(body, dict) and body:
                return time.monotonic() - server.started_at
            detail = f"HTTP {r.status_code}: {r.text[:200]}"
        except (requests.RequestException, ValueError) as e:
            detail = f"{type(e).__name__}: {e}"
        time.sleep(poll)
    raise TorchServeError(f"baseline not ready after {timeout:.0f}s ({detail}); last log lines:\n{server.tail_log()}")


def default_torch_threads() -> int:
    """Torch's own intra-op thread count here (what a worker uses when nobody sets one)."""
    return int(torch.get_num_threads())


def baseline_config(store: Path, version: str, ports: list[int]) -> ServeConfig:
    """TorchServe's defaults: a worker per CPU the JVM sees, batch 1, its queue size, the JVM's JIT tiers."""
    return ServeConfig(
        model_store=store,
        model_version=version,
        port=ports[0],
        management_port=ports[1],
        metrics_port=ports[2],
        grpc_inference_port=ports[3],
        grpc_management_port=ports[4],
        workers=available_cpus(),
        batch_size=TORCHSERVE_BATCH_SIZE,
        max_batch_delay_ms=TORCHSERVE_MAX_BATCH_DELAY_MS,
        job_queue_size=TORCHSERVE_JOB_QUEUE_SIZE,
        java_opts=JVM_DEFAULT_TIERS,
    )


def baseline_env(threads: int) -> dict[str, str]:
    """The launcher sets serve's thread budget; the baseline gets torch's default in every worker instead."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def describe(cfg: ServeConfig, threads: int) -> dict[str, Any]:
    return {
        "handler": STOCK_HANDLER,
        "model_file": "TorchScript (torch.jit.script of the same state_dict), fp32, not frozen",
        "workers": cfg.workers,
        "torch_threads_per_worker": threads,
        "batch_size": cfg.batch_size,
        "max_batch_delay_ms": cfg.max_batch_delay_ms,
        "job_queue_size": cfg.job_queue_size,
        "jvm": JVM_DEFAULT_TIERS,
    }
