"""``serve``, ``predict`` and ``probe``: thin adapters over :mod:`resnet_serving.torchserve`."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from resnet_serving import MODEL_NAME, ui
from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
from resnet_serving.artifact.manifest import Manifest, open_model_dir
from resnet_serving.cli.flags import add_endpoint_url, auto_or_positive
from resnet_serving.errors import ConfigError, InputError, TorchServeError
from resnet_serving.policy import version_to_start
from resnet_serving.ports import (
    GRPC_INFERENCE_PORT,
    GRPC_MANAGEMENT_PORT,
    INFERENCE_PORT,
    MANAGEMENT_PORT,
    METRICS_PORT,
    MODEL_METRICS_PORT,
    loopback_url,
)
from resnet_serving.settings import (
    DEFAULT_STORE,
    ENV_API_KEY,
    ENV_CHANNEL,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_SCOPE,
    ENV_STORE,
    ENV_TOKEN_URL,
    ENV_URL,
    ENV_VERSION,
    environment,
)
from resnet_serving.signals import on_stop_signals
from resnet_serving.store import open_store
from resnet_serving.torchserve import requestlog
from resnet_serving.torchserve.client import (
    FRONT_DOOR_SCOPE,
    ClientCredentials,
    PredictClient,
    TokenSource,
    image_too_large,
    read_secret,
)
from resnet_serving.torchserve.drain import drain_accepted
from resnet_serving.torchserve.guard import (
    DEFAULT_ADMISSION_WAIT_S,
    DEFAULT_RETRY_AFTER_S,
    Guard,
    checked_admission_wait,
    checked_retry_after,
)

EXAMPLE_IMAGE = "examples/grace_hopper.jpg"
#: SIGTERM to SIGKILL is 30 s on SageMaker (and the default grace period on Kubernetes): the drain and the stop
#: together stay inside it.
STOP_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 8.0


def _serve_default(name: str) -> Any:
    """serve's flag defaults are ServeConfig's (the values `resnet-serving bench` settled on), defined once."""
    from resnet_serving.torchserve.config import ServeConfig

    return ServeConfig.__dataclass_fields__[name].default


def _sagemaker_response_timeout() -> int:
    from resnet_serving.torchserve.config import SAGEMAKER_RESPONSE_TIMEOUT_S

    return SAGEMAKER_RESPONSE_TIMEOUT_S


def _queued_batches() -> int:
    from resnet_serving.torchserve.config import QUEUED_BATCHES

    return QUEUED_BATCHES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the model with TorchServe in the foreground")
    src = p.add_argument_group("model source (default: latest version in ./model-store)")
    src.add_argument("--model-dir", type=Path, help="a directory holding model.mar + manifest.json")
    src.add_argument("--store", default=environment().get(ENV_STORE) or DEFAULT_STORE, help="store URI")
    src.add_argument("--version", default=environment().get(ENV_VERSION) or None, help="pin a version")
    src.add_argument(
        "--channel",
        default=environment().get(ENV_CHANNEL) or None,
        help="follow a channel: start on its version, then switch to each version promoted to it (sync)",
    )
    src.add_argument(
        "--sync-interval", type=float, default=10.0, help="with --channel: seconds between store polls (default 10)"
    )
    add_endpoint_url(p)
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="inference bind address (default loopback)")
    net.add_argument("--port", type=int, default=INFERENCE_PORT)
    net.add_argument("--management-host", default="127.0.0.1", help="loopback only")
    net.add_argument("--management-port", type=int, default=MANAGEMENT_PORT)
    net.add_argument("--metrics-host", default="127.0.0.1")
    net.add_argument("--metrics-port", type=int, default=METRICS_PORT)
    net.add_argument(
        "--model-metrics-port",
        type=int,
        default=MODEL_METRICS_PORT,
        help="our own /metrics (latency histograms by version, in flight, queued; on --metrics-host; 0: off)",
    )
    net.add_argument(
        "--grpc-inference-port", type=int, default=GRPC_INFERENCE_PORT, help="loopback only (always started)"
    )
    net.add_argument("--grpc-management-port", type=int, default=GRPC_MANAGEMENT_PORT, help="loopback only")
    perf = p.add_argument_group("performance")
    perf.add_argument(
        "--workers",
        default="auto",
        help="TorchServe workers: auto (one per GPU, else one with every CPU of the quota) or N",
    )
    perf.add_argument("--threads", default="auto", help="torch threads per worker: auto (CPU quota ÷ workers) or N")
    perf.add_argument(
        "--batch-size", type=int, default=_serve_default("batch_size"), help="dynamic batching: max requests per batch"
    )
    perf.add_argument(
        "--max-batch-delay-ms",
        type=int,
        default=_serve_default("max_batch_delay_ms"),
        help="dynamic batching: max wait to fill a batch",
    )
    perf.add_argument(
        "--response-timeout",
        type=int,
        default=None,
        help=f"seconds before a request times out (default {_serve_default('response_timeout_s')}; on SageMaker "
        f"{_sagemaker_response_timeout()}, below the front door's API Gateway timeout)",
    )
    perf.add_argument(
        "--job-queue-size",
        type=int,
        default=0,
        help="requests the front end queues per model; beyond them it answers 503 at once "
        f"(default 0: {_queued_batches()} batches per worker)",
    )
    perf.add_argument("--java-heap-mb", type=int, default=1024)
    p.add_argument(
        "--log-format",
        choices=requestlog.FORMATS,
        default=None,
        help="one line per request on stdout: json (the default when stdout is not a terminal, as in a container) "
        "or text (the default on a terminal)",
    )
    perf.add_argument(
        "--retry-after",
        type=int,
        default=DEFAULT_RETRY_AFTER_S,
        metavar="SECONDS",
        help="a guard on --port forwards to TorchServe and answers its queue-full 503s with our JSON error and "
        f"Retry-After: N (default {DEFAULT_RETRY_AFTER_S}; one loopback hop per request, "
        "docs: explanation/reliability); "
        "0: no guard, TorchServe answers on --port itself, its 503s without Retry-After",
    )
    perf.add_argument(
        "--admission-wait",
        type=float,
        default=DEFAULT_ADMISSION_WAIT_S,
        metavar="SECONDS",
        help="with the guard: TorchServe gets at most what its queue and workers hold, and a request beyond that "
        f"waits its turn up to this long before a 503 (default {DEFAULT_ADMISSION_WAIT_S:g}; 0: a 503 at once)",
    )
    p.add_argument("--run-dir", type=Path, help="working dir for config, logs, unpacked model (default: temp)")
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=_serve_default("startup_timeout_s"),
        help="seconds to wait for the model to answer; also how long a worker may take to load it",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT_S,
        help=f"on SIGTERM/Ctrl-C: seconds to finish accepted requests before stopping (default {DRAIN_TIMEOUT_S:g}; "
        "0: stop at once; a second signal stops at once too)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "predict",
        help="classify image files against a running server or the API Gateway front door",
        description="POST each IMAGE to a serve (--url, default loopback) or to the front door of infra/ "
        "(--url: the resnet-serving-frontdoor stack's ApiUrl output, with a Cognito token and the usage plan's "
        "API key).",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument(
        "--url",
        default=environment().get(ENV_URL, loopback_url(INFERENCE_PORT)),
        help=f"a serve's base URL, or a URL ending in /predictions/MODEL, used as is (the front door's ApiUrl "
        f"output; default: ${ENV_URL}, else {loopback_url(INFERENCE_PORT)})",
    )
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the raw JSON responses")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)")
    door = p.add_argument_group(
        "API Gateway front door",
        "With --token-url, each request carries a Cognito access token from the OAuth2 client-credentials grant, "
        "fetched once and renewed shortly before it expires; with an API key, x-api-key. The values are outputs "
        "of the resnet-serving-frontdoor stack.",
    )
    door.add_argument(
        "--token-url",
        metavar="URL",
        help=f"the user pool's token endpoint: output TokenUrl (default: ${ENV_TOKEN_URL})",
    )
    door.add_argument(
        "--client-id", metavar="ID", help=f"the app client: output MachineClientId (default: ${ENV_CLIENT_ID})"
    )
    door.add_argument(
        "--client-secret-file",
        metavar="FILE",
        help=f"a file holding the app client's secret ('-': standard input; default: ${ENV_CLIENT_SECRET} holds "
        "the secret itself). Never given on the command line, where other users and the shell history see it",
    )
    # taken only to refuse it: else argparse would read it as an abbreviation of --client-secret-file
    door.add_argument("--client-secret", dest="client_secret_on_command_line", help=argparse.SUPPRESS)
    door.add_argument(
        "--scope",
        metavar="SCOPE",
        help=f"the OAuth scope to ask for (default: ${ENV_SCOPE}, else every scope the client may have; the front "
        f"door's routes require {FRONT_DOOR_SCOPE})",
    )
    door.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the usage plan's API key, sent as x-api-key (default: ${ENV_API_KEY}, which keeps it out of the "
        "shell history; its value: aws apigateway get-api-key --api-key <ApiKeyId output> --include-value)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("probe", help="exit 0 iff the model answers a real prediction (readiness probe)")
    p.add_argument("--url", default=loopback_url(INFERENCE_PORT))
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(func=cmd_probe)


# ---- serve --------------------------------------------------------------------------------------------
def _prepare_model(args: argparse.Namespace, dest: Path) -> tuple[Path, Manifest]:
    """The directory holding a verified model.mar + manifest.json, and the manifest. ``--model-dir`` is served
    in place (read only: a pod's mount, SageMaker's /opt/ml/model); a store version is fetched into ``dest``."""
    if args.model_dir:
        with ui.status(f"verifying {Path(args.model_dir) / ARCHIVE_NAME}"):
            return Path(args.model_dir), open_model_dir(args.model_dir)
    store = open_store(args.store, endpoint_url=getattr(args, "endpoint_url", None))
    try:
        version = version_to_start(store, MODEL_NAME, pinned=args.version, channel=args.channel)
    except ConfigError as e:
        raise ConfigError(f"{args.store}: {e.message}") from e
    with ui.status(f"fetching and verifying {MODEL_NAME} v{version} from {args.store}"):
        store.fetch(MODEL_NAME, version, dest)
    return dest, Manifest.load(dest / MANIFEST_NAME)


def _check_runtime(manifest: Manifest) -> None:
    """Refuse an archive whose runtime this environment lacks before TorchServe starts (its workers would fail to
    load it, each, until the ready timeout); say which runtime and precision an OpenVINO archive serves in."""
    from resnet_serving.artifact.runtime import runtime_unavailable
    from resnet_serving.inference.cpuinfo import asked_precision
    from resnet_serving.settings import env_name

    runtime = manifest.runtime
    if missing := runtime_unavailable(runtime, f"{MODEL_NAME} v{manifest.version} (built with --runtime openvino)"):
        raise ConfigError(missing)
    if runtime["name"] == "openvino":
        chosen, why = asked_precision(runtime["precision"])
        ui.info(
            f"runtime: OpenVINO {runtime.get('version', '')}, {runtime['precision']} as archived, asking for "
            f"{chosen} on this CPU ({why}); OpenVINO computes fp32 where the CPU has no bf16 instructions, and "
            f"{env_name('amp')} applies to torch archives only"
        )


def _workers(value: str) -> int:
    from resnet_serving.torchserve.config import default_workers

    return auto_or_positive("--workers", value, default_workers())


def _threads(value: str) -> int:
    return auto_or_positive("--threads", value, 0)  # 0: ServeConfig derives CPUs ÷ workers


def cmd_serve(args: argparse.Namespace) -> int:
    from resnet_serving.errors import Stopped
    from resnet_serving.inference.cpu import openmp_env
    from resnet_serving.inference.cpuinfo import auto_cpu_precision, bf16_warning
    from resnet_serving.settings import Settings
    from resnet_serving.torchserve.config import ServeConfig, checked_max_batch_delay, free_ports, response_timeout
    from resnet_serving.torchserve.server import TorchServe

    settings = Settings.from_env()  # fail fast on a bad RESNET_SERVING_* value, before Java starts
    if bf16_note := bf16_warning(settings.amp):
        ui.warn(bf16_note)
    if settings.amp == "auto":
        chosen, why = auto_cpu_precision()
        ui.info(f"precision on CPU workers: {chosen}: {why}")
    if args.drain_timeout < 0:
        raise InputError(f"--drain-timeout {args.drain_timeout:g}: must be ≥ 0 seconds")
    if not args.ready_timeout >= 1:  # also refuses nan
        raise InputError(f"--ready-timeout {args.ready_timeout:g}: must be ≥ 1 second")
    if args.job_queue_size < 0:
        raise InputError(
            f"--job-queue-size {args.job_queue_size}: must be ≥ 0 (0: {_queued_batches()} batches per worker)"
        )
    checked_retry_after(args.retry_after)
    checked_admission_wait(args.admission_wait)
    checked_max_batch_delay(args.max_batch_delay_ms)
    own_run_dir = args.run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="resnet-serving-")) if own_run_dir else Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    server: TorchServe | None = None
    metrics_server: Any = None
    guard: Guard | None = None
    stop = threading.Event()
    hurry = threading.Event()  # a second signal: stop without draining
    drain = False
    sync_thread: threading.Thread | None = None
    # --channel (without a pinned --version or --model-dir) follows the channel: the sync loop runs beside
    # TorchServe and switches versions through its management API, which therefore is enabled (loopback only).
    follow = bool(args.channel) and not args.version and not args.model_dir

    signals = contextlib.ExitStack()  # restored last, after TorchServe has stopped

    def on_signal(_signum: int) -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    signals.enter_context(on_stop_signals(on_signal))
    try:
        # TorchServe's model store is the verified directory itself: no copy of the archive at start-up.
        store_dir, manifest = _prepare_model(args, run_dir / "model")
        _check_runtime(manifest)
        cfg = ServeConfig(
            model_store=store_dir,
            model_version=manifest.version,
            # behind the guard TorchServe listens on a loopback port of its own
            host="127.0.0.1" if args.retry_after else args.host,
            port=free_ports(1)[0] if args.retry_after else args.port,
            management_host=args.management_host,
            management_port=args.management_port,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
            grpc_inference_port=args.grpc_inference_port,
            grpc_management_port=args.grpc_management_port,
            workers=_workers(args.workers),
            threads=_threads(args.threads),
            batch_size=args.batch_size,
            max_batch_delay_ms=args.max_batch_delay_ms,
            response_timeout_s=response_timeout(args.response_timeout, settings),
            startup_timeout_s=math.ceil(args.ready_timeout),
            job_queue_size=args.job_queue_size,
            java_heap_mb=args.java_heap_mb,
            enable_model_api=follow,
            java_opts=settings.java_opts,
        )
        if not manifest.weights.get("pretrained", False):
            ui.warn(
                f"{MODEL_NAME} v{manifest.version} has RANDOM weights ({manifest.weights.get('id')}): "
                "predictions are meaningless. Build with --weights imagenet or PATH for real ones."
            )
        worker_env: dict[str, str] = openmp_env(environment())
        if args.model_metrics_port:
            from resnet_serving.torchserve import exporter

            metrics_dir = exporter.fresh_dir(run_dir / "prometheus")
            worker_env[exporter.ENV_MULTIPROC_DIR] = str(metrics_dir)
            try:
                metrics_server = exporter.start(
                    metrics_dir,
                    host=args.metrics_host,
                    port=args.model_metrics_port,
                    management_url=cfg.management_url,
                    model=cfg.model_name,
                )
            except OSError as e:
                raise ConfigError(f"--model-metrics-port {args.model_metrics_port}: {e.strerror or e}") from e
        public_url = cfg.inference_url
        if args.retry_after:
            guard = Guard.in_front_of(
                cfg,
                host=args.host,
                port=args.port,
                retry_after=args.retry_after,
                admission_wait=args.admission_wait,
                sagemaker=bool(settings.sagemaker_mode),
            )
            guard.start()
            public_url = guard.url
        server = TorchServe(cfg, run_dir, env=worker_env, request_sink=_request_sink(args.log_format))
        server.start()
        with ui.status(
            f"starting TorchServe ({cfg.workers} worker(s) × {cfg.torch_threads} thread(s)), "
            "waiting until the model answers"
        ):
            try:
                ready_s = server.wait_ready(timeout=args.ready_timeout, stop=stop)
            except Stopped:
                return 130
        model_metrics = (
            f" and http://{args.metrics_host}:{args.model_metrics_port}/metrics" if args.model_metrics_port else ""
        )
        example = EXAMPLE_IMAGE if Path(EXAMPLE_IMAGE).exists() else "IMAGE.jpg"
        print(
            f"resnet-serving: {MODEL_NAME} v{manifest.version} (weights {manifest.weights.get('id')}) ready in "
            f"{ready_s:.1f}s at {public_url}" + (f" (guard, Retry-After {args.retry_after} s)" if guard else "") + "\n"
            f"  curl -s -X POST {public_url}/predictions/{MODEL_NAME} "
            f"-H 'Content-Type: image/jpeg' --data-binary @{example}\n"
            f"  metrics: {cfg.metrics_url}/metrics{model_metrics}   logs: {run_dir / 'logs'}   stop: Ctrl-C",
            flush=True,
        )
        if follow:
            sync_thread = _start_sync(args, cfg, store_dir, stop)
        while not stop.wait(0.5):
            if not server.alive():
                raise TorchServeError(f"TorchServe exited unexpectedly; last log lines:\n{server.tail_log()}")
        drain = True
        return 0
    finally:
        stop.set()
        if sync_thread is not None:
            sync_thread.join(timeout=5)  # mid-switch it may still wait on TorchServe; stopping it ends that
        if server is not None:
            if drain and server.alive() and args.drain_timeout > 0:
                drain_accepted(server.cfg, args.drain_timeout, hurry)
            print("resnet-serving: stopping TorchServe…", file=sys.stderr, flush=True)
            server.stop(timeout=STOP_TIMEOUT_S)
        if sync_thread is not None:
            sync_thread.join(timeout=10)
        if guard is not None:
            guard.stop()  # after TorchServe: the drain answers through it
        if metrics_server is not None:
            metrics_server.shutdown()
        signals.close()
        if own_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def _request_sink(log_format: str | None) -> Any:
    """Print each request line (requestlog) on stdout: as it is for ``json``, shortened for ``text``."""
    fmt = log_format or requestlog.default_format(sys.stdout)
    render = requestlog.to_text if fmt == "text" else str

    def sink(line: str) -> None:
        sys.stdout.write(render(line) + "\n")
        sys.stdout.flush()

    return sink


def _start_sync(args: argparse.Namespace, cfg: Any, store_dir: Path, stop: threading.Event) -> threading.Thread:
    from resnet_serving.sync.follow import build_syncer, start_in_background

    syncer = build_syncer(
        store=args.store,
        endpoint_url=getattr(args, "endpoint_url", None),
        channel=args.channel,
        management_url=cfg.management_url,
        inference_url=cfg.inference_url,
        model_store=store_dir,
        interval=args.sync_interval,
        max_backoff=max(120.0, args.sync_interval),
    )
    print(
        f"resnet-serving: following channel {args.channel} in {args.store} (poll every {args.sync_interval:g}s)",
        flush=True,
    )
    return start_in_background(syncer, stop)


# ---- predict / probe ----------------------------------------------------------------------------------
def _front_door(args: argparse.Namespace) -> tuple[TokenSource | None, str | None]:
    """The token source and the API key from the flags, else the environment; ``(None, None)`` for a serve."""
    if args.client_secret_on_command_line is not None:
        raise ConfigError(
            f"--client-secret is not taken on the command line, where other users and the shell history see it: "
            f"use --client-secret-file FILE (or - for standard input) or ${ENV_CLIENT_SECRET}"
        )
    env = environment()
    token_url = args.token_url or env.get(ENV_TOKEN_URL) or None
    client_id = args.client_id or env.get(ENV_CLIENT_ID) or None
    api_key = args.api_key or env.get(ENV_API_KEY) or None
    if args.client_secret_file:
        secret: str | None = read_secret(args.client_secret_file)
    else:
        secret = (env.get(ENV_CLIENT_SECRET) or "").strip() or None
    if not token_url:
        if client_id or args.client_secret_file:
            raise ConfigError(f"--client-id and the client secret need --token-url (or ${ENV_TOKEN_URL})")
        return None, api_key
    if not client_id:
        raise ConfigError(f"--token-url needs --client-id (or ${ENV_CLIENT_ID}): the MachineClientId output")
    if not secret:
        raise ConfigError(
            f"--token-url needs the app client's secret: --client-secret-file FILE, or ${ENV_CLIENT_SECRET}"
        )
    scope = args.scope or env.get(ENV_SCOPE) or None
    credentials = ClientCredentials(token_url=token_url, client_id=client_id, client_secret=secret, scope=scope)
    return TokenSource(credentials, timeout=args.timeout), api_key


def cmd_predict(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from resnet_serving.inference.formats import content_type_for

    tokens, api_key = _front_door(args)
    client = PredictClient(args.url, tokens=tokens, api_key=api_key, timeout=args.timeout)
    rc = 0
    table = ui.predictions_table(f"{MODEL_NAME} @ {args.url}")
    meta_line = ""
    for path in args.images:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"{path}: {e.strerror}") from e
        answer = client.predict(data, topk=args.topk, content_type=content_type_for(data), name=str(path))
        if args.json:
            print(json.dumps({"image": str(path), "status": answer.status, "response": answer.body}))
        if answer.status != 200:
            rc = 2
            said = image_too_large(answer, len(data)) or answer.message
            ui.console.print(f"[red]{escape(f'{path}: HTTP {answer.status}: {said}')}[/]", highlight=False)
            continue
        meta_line = ui.add_predictions(table, str(path), answer.body)
    if not args.json and table.row_count:
        table.caption = meta_line
        ui.Console().print(table)
    return rc


def cmd_probe(args: argparse.Namespace) -> int:
    from resnet_serving.torchserve.probe import model_answers

    ok, detail = model_answers(args.url, timeout=args.timeout)
    print(("ready: " if ok else "not ready: ") + detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
