"""Render TorchServe's ``config.properties``. The only place TorchServe is configured (chart, SageMaker and
local ``serve`` all go through :func:`render`)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from resnet_serving import MODEL_NAME
from resnet_serving.artifact.layout import ARCHIVE_NAME
from resnet_serving.errors import ConfigError
from resnet_serving.inference.cpu import available_cpus, thread_budget
from resnet_serving.ports import (
    GRPC_INFERENCE_PORT,
    GRPC_MANAGEMENT_PORT,
    INFERENCE_PORT,
    MANAGEMENT_PORT,
    METRICS_PORT,
)
from resnet_serving.settings import Settings, environment

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: The default queue, in batches per worker: a full queue answers 503 at once, so an accepted request waits about
#: this many batch times whatever the hardware, and an overload's backlog drains as fast
#: (docs: explanation/reliability).
QUEUED_BATCHES = 4
#: Dynamic batching defaults, one owner: ServeConfig's (and so serve's flags and bench's) and those of a version
#: `sync` registers when nothing is registered yet. tests/unit/test_shared_names.py holds the chart's equal.
BATCH_SIZE = 8
MAX_BATCH_DELAY_MS = 2
#: TorchServe's own default, and SageMaker's limit on a container's answer.
RESPONSE_TIMEOUT_S = 60
#: API Gateway's integration timeout: past it the front door answers 504, whatever the container still does.
GATEWAY_TIMEOUT_S = 29
#: The response timeout on SageMaker, behind the front door: with the guard's margin and its admission wait, the
#: container still answers before the gateway gives up (tests/unit/test_front_door_timeouts.py).
SAGEMAKER_RESPONSE_TIMEOUT_S = 20


def response_timeout(flag: int | None, settings: Settings) -> int:
    """``--response-timeout``'s value, else the front door's on SageMaker (``RESNET_SERVING_SAGEMAKER_MODE``
    set), else TorchServe's default."""
    if flag is not None:
        return flag
    return SAGEMAKER_RESPONSE_TIMEOUT_S if settings.sagemaker_mode else RESPONSE_TIMEOUT_S


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports, all held at once while they are picked so none repeats."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def visible_gpus() -> int:
    """The NVIDIA GPUs TorchServe would hand its workers: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``
    (how TorchServe counts them), else none. Torch-free: ``serve`` runs before any worker."""
    visible = environment().get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip()]
        return 0 if not ids or ids[0].strip() == "-1" else len(ids)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def default_workers() -> int:
    """One worker per GPU TorchServe would use (it gives each worker its own), else one worker with every CPU."""
    return max(1, visible_gpus())


def checked_max_batch_delay(value: int) -> int:
    """``--max-batch-delay-ms``, refused below 1: TorchServe 0.12 replaces a maxBatchDelay of 0 with its default of
    100 ms, which every lone request would then wait."""
    if value < 1:
        raise ConfigError(
            f"--max-batch-delay-ms must be ≥ 1, got {value} (TorchServe 0.12 reads 0 as its default of 100 ms)"
        )
    return value


@dataclass(frozen=True)
class ServeConfig:
    model_store: Path
    #: The archive in ``model_store`` that TorchServe loads at start (a verified model directory's).
    mar_name: str = ARCHIVE_NAME
    model_name: str = MODEL_NAME
    model_version: str = "1"
    host: str = "127.0.0.1"
    port: int = INFERENCE_PORT
    management_host: str = "127.0.0.1"
    management_port: int = MANAGEMENT_PORT
    metrics_host: str = "127.0.0.1"
    metrics_port: int = METRICS_PORT
    #: TorchServe 0.12 always starts its gRPC servers; we bind them to loopback on these ports.
    grpc_inference_port: int = GRPC_INFERENCE_PORT
    grpc_management_port: int = GRPC_MANAGEMENT_PORT
    #: TorchServe backend workers (Python processes). On a CPU one, with every CPU of the quota: TorchServe 0.12's
    #: batch aggregator splits a queue among workers, so N workers each got small batches and a lone request ran
    #: on one core while the others idled. One worker takes the queue up to batch_size, runs the forward pass on
    #: every core and decodes the batch's images on the same cores in parallel (InferenceService.decode_threads).
    #: With GPUs, one per GPU (default_workers).
    workers: int = field(default_factory=default_workers)
    #: Torch intra-op threads per worker; 0 = derive from the CPU quota (workers × threads ≤ CPUs).
    threads: int = 0
    #: Dynamic batching: most requests per batch, and how long the front end waits to fill one. The one worker
    #: takes what is queued, up to batch_size, so the batch follows the load; the delay is paid by a lone
    #: request in full, so it stays short (docs: explanation/server-configuration).
    batch_size: int = BATCH_SIZE
    max_batch_delay_ms: int = MAX_BATCH_DELAY_MS
    response_timeout_s: int = RESPONSE_TIMEOUT_S
    #: Longest a worker may take to load the model (TorchServe's startupTimeout, whose own default is 120 s).
    #: serve sets it to --ready-timeout: a slow load (torch.compile's warm-up) is then never killed and
    #: restarted by TorchServe while serve is still waiting for it.
    startup_timeout_s: int = 300
    #: Request body cap in the Java front end (bytes); per-image limits are checked by the handler.
    max_request_size: int = 64 * 1024 * 1024
    #: Requests queued per model beyond those in batches; 0 = QUEUED_BATCHES batches per worker (see queue_size).
    job_queue_size: int = 0
    netty_threads: int = 0  # 0 = TorchServe default (number of CPUs)
    #: Register/unregister through the management API (needed by `sync`); off otherwise.
    enable_model_api: bool = False
    java_heap_mb: int = 1024
    #: Extra JVM options appended to vmargs (serve reads RESNET_SERVING_JAVA_OPTS).
    java_opts: str = ""
    #: Java's temp dir, where the front end puts its worker sockets (.ts.sock.9000…); one per instance.
    tmp_dir: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = ("port", "management_port", "metrics_port", "grpc_inference_port", "grpc_management_port")
        for name in ports:
            value = getattr(self, name)
            if not 0 < value < 65536:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: not a TCP port")
        if len({getattr(self, name) for name in ports}) != len(ports):
            raise ConfigError("inference, management, metrics and gRPC ports must all differ")
        for name, lo in (
            ("workers", 1),
            ("batch_size", 1),
            ("threads", 0),
            ("response_timeout_s", 1),
            ("startup_timeout_s", 1),
            ("job_queue_size", 0),
            ("java_heap_mb", 128),
        ):
            if getattr(self, name) < lo:
                raise ConfigError(f"--{name.replace('_', '-')} must be ≥ {lo}, got {getattr(self, name)}")
        checked_max_batch_delay(self.max_batch_delay_ms)
        if self.management_host not in LOOPBACK:
            raise ConfigError(
                f"--management-host {self.management_host}: the management API can register arbitrary code; "
                "it binds to loopback only"
            )

    @property
    def queue_size(self) -> int:
        """TorchServe's job_queue_size: the flag's value, or QUEUED_BATCHES batches per worker."""
        return self.job_queue_size or QUEUED_BATCHES * self.workers * self.batch_size

    @property
    def torch_threads(self) -> int:
        """Torch threads per worker: ``threads`` if given, else CPUs ÷ workers (workers × threads ≤ CPUs)."""
        return self.threads or thread_budget(self.workers)

    @property
    def inference_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://{_url_host(self.management_host)}:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.metrics_host)}:{self.metrics_port}"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def render(cfg: ServeConfig) -> str:
    """The config.properties text. Deterministic (sorted keys) so it can be diffed and tested."""
    store = cfg.model_store.resolve()
    models = {
        cfg.model_name: {
            cfg.model_version: {
                "marName": cfg.mar_name,
                "minWorkers": cfg.workers,
                "maxWorkers": cfg.workers,
                "batchSize": cfg.batch_size,
                "maxBatchDelay": cfg.max_batch_delay_ms,
                "responseTimeout": cfg.response_timeout_s,
                "startupTimeout": cfg.startup_timeout_s,
                "defaultVersion": True,
            }
        }
    }
    props: dict[str, str] = {
        "inference_address": _bind(cfg.host, cfg.port),
        "management_address": _bind(cfg.management_host, cfg.management_port),
        "metrics_address": _bind(cfg.metrics_host, cfg.metrics_port),
        # gRPC cannot be switched off in 0.12: keep it on loopback, where nothing outside the pod reaches it.
        "grpc_inference_address": "127.0.0.1",
        "grpc_inference_port": str(cfg.grpc_inference_port),
        "grpc_management_address": "127.0.0.1",
        "grpc_management_port": str(cfg.grpc_management_port),
        "model_store": str(store),
        "load_models": f"{cfg.model_name}={cfg.mar_name}",
        "models": json.dumps(models, separators=(",", ":")),
        "default_workers_per_model": str(cfg.workers),
        "metrics_mode": "prometheus",
        # Auth is the ALB's job (optional Cognito/OIDC there); the management API never leaves loopback.
        # TorchServe's token check also guards /ping, which would break kubelet probes.
        "disable_token_authorization": "true",
        "enable_model_api": "true" if cfg.enable_model_api else "false",
        # Only archives from our own model store may be registered: no remote URLs.
        "allowed_urls": "file://" + re.escape(str(store)) + "/.*",
        "install_py_dep_per_model": "false",
        "enable_envvars_config": "false",
        "max_request_size": str(cfg.max_request_size),
        "max_response_size": str(4 * 1024 * 1024),
        "job_queue_size": str(cfg.queue_size),
        "default_response_timeout": str(cfg.response_timeout_s),
        "default_startup_timeout": str(cfg.startup_timeout_s),
        "unregister_model_timeout": str(cfg.response_timeout_s),
        "async_logging": "true",
        # C1 only: the front end's per-request work is small and C2 kept recompiling it
        # (docs: explanation/server-configuration). A later -XX flag in java_opts (RESNET_SERVING_JAVA_OPTS, the
        # chart's torchserve.javaOpts) overrides it.
        "vmargs": f"-Xmx{cfg.java_heap_mb}m -XX:+UseContainerSupport -XX:+ExitOnOutOfMemoryError"
        " -XX:TieredStopAtLevel=1"
        + (f" -Djava.io.tmpdir={cfg.tmp_dir.resolve()}" if cfg.tmp_dir else "")
        + (f" {cfg.java_opts.strip()}" if cfg.java_opts.strip() else ""),
    }
    if cfg.netty_threads:
        props["number_of_netty_threads"] = str(cfg.netty_threads)
    props.update(cfg.extra)
    header = (
        "# Rendered by resnet-serving (resnet_serving.torchserve.config). Do not edit: change the flags.\n"
        f"# thread budget: {cfg.workers} worker(s) × {cfg.torch_threads} torch thread(s) on "
        f"{available_cpus()} CPU(s)\n"
    )
    return header + "".join(f"{k}={_escape(v)}\n" for k, v in sorted(props.items()))


def _escape(value: str) -> str:
    # Java .properties: backslashes escape; keep the regex and JSON intact.
    return value.replace("\\", "\\\\")
