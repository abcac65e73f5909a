"""The benchmark: raw forward pass, in-process pipeline and served throughput, measured in one run.

Every figure that matters is reported as a ratio to the raw model measured in the same run
(``served_img_s / raw_img_s``), because this machine is shared and noisy.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from resnet_serving import MODEL_NAME, ui
from resnet_serving.artifact.manifest import open_model_dir
from resnet_serving.bench import DEFAULT_CONCURRENCY, scrape
from resnet_serving.bench.mar import unpack_archive
from resnet_serving.bench.report import guard_line, write_reports
from resnet_serving.bench.result import BenchReport
from resnet_serving.errors import ConfigError
from resnet_serving.inference import imaging
from resnet_serving.inference.cpu import available_cpus, cgroup_cpu_quota, openmp_env, openmp_wait
from resnet_serving.inference.cpuinfo import cpu_report
from resnet_serving.inference.formats import content_type_for
from resnet_serving.inference.model import select_device
from resnet_serving.inference.service import InferenceService, Model, load_model
from resnet_serving.settings import Settings, children_inherit, environment, source_checkout
from resnet_serving.torchserve.config import ServeConfig, free_ports
from resnet_serving.torchserve.guard import DEFAULT_RETRY_AFTER_S, Guard
from resnet_serving.torchserve.server import TorchServe

#: The example photo of a source checkout; an installed package is given --payload.
_CHECKOUT = source_checkout()
DEFAULT_PAYLOAD = _CHECKOUT / "examples" / "grace_hopper.jpg" if _CHECKOUT else None


@dataclass
class BenchOptions:
    out: Path
    concurrency: list[int] = field(default_factory=lambda: list(DEFAULT_CONCURRENCY))
    duration_s: float = 20.0
    warmup_s: float = 4.0
    raw_seconds_per_batch: float = 5.0
    raw_batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 8, 16])
    #: Rounds per concurrency level; the median ratio is reported (a shared host drifts within minutes).
    repeat: int = 1
    #: Seconds of load at the highest concurrency after the cold start and before any level is measured: the
    #: Java front end compiles its hot paths and the workers' allocators settle, as in a long-running server.
    server_warmup_s: float = 20.0
    payload: Path | None = DEFAULT_PAYLOAD
    model_dir: Path | None = None  # model.mar + manifest.json; default: build one with random weights
    workers: int | None = None  # None: the serve defaults (ServeConfig)
    threads: int | None = None
    batch_size: int | None = None
    max_batch_delay_ms: int | None = None
    #: Also measure the reference: TorchServe's stock image_classifier with its defaults (bench/baseline.py).
    baseline: bool = False
    #: The served path goes through serve's guard (torchserve/guard.py), as `serve` runs by default; 0: straight
    #: to TorchServe's port. With the guard, the highest level is also measured straight to TorchServe.
    retry_after: int = DEFAULT_RETRY_AFTER_S


def _serve_config(opts: BenchOptions, store: Path, version: str) -> ServeConfig:
    """The served configuration: `serve`'s own defaults unless a flag overrides one."""
    overrides: dict[str, Any] = {}
    for name in ("workers", "threads", "batch_size", "max_batch_delay_ms"):
        if getattr(opts, name) is not None:
            overrides[name] = getattr(opts, name)
    # serve's own queue and admission: the levels above what TorchServe holds measure goodput under overload
    ports = free_ports(5)
    overrides.update(
        port=ports[0], management_port=ports[1], metrics_port=ports[2],
        grpc_inference_port=ports[3], grpc_management_port=ports[4],
    )  # fmt: skip
    # TorchServe serves the verified directory in place, as `serve --model-dir` does
    return ServeConfig(model_store=store, model_version=version, **overrides)


def _time_loop(seconds: float, fn: Any, per_call: int, *, warm: bool = True) -> float:
    if warm:
        fn()  # warm-up call (allocations, oneDNN primitive cache)
    n = 0
    t0 = time.perf_counter()
    while True:
        fn()
        n += per_call
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed


def _raw_step(clf: Model, bs: int) -> Any:
    x = torch.randn(bs, 3, 224, 224)
    if clf.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(clf.device)

    def step() -> None:
        clf.forward(x)  # the served precision: fp16 autocast on a GPU, as the handler runs it
        if clf.device.type == "cuda":
            torch.cuda.synchronize()

    return step


def _pipeline_step(clf: Model, bs: int, payload: bytes) -> Any:
    """What the handler does per dynamic batch, minus TorchServe: parse, decode, preprocess, forward, top-k, body."""
    service = InferenceService(clf, imaging.categories(), {"model": MODEL_NAME})
    requests = [{"body": payload}] * bs
    content_types = [content_type_for(payload)] * bs

    def step() -> None:
        for response in service.handle(requests, content_types):
            if response.status != 200:
                raise RuntimeError(f"pipeline: the payload got {response.status}: {response.body}")

    return step


class LayoutPool:
    """``processes`` model copies × ``threads`` torch threads each, kept alive for the whole run: the layout
    TorchServe uses (one process per worker), so raw and served spend the same CPU the same way. Each call
    starts all copies together (a barrier) and returns their summed img/s. Keeping the copies alive lets the
    bench measure the raw model right before and right after each served level, on a noisy shared machine.
    Each copy is built as serving builds it (:func:`~resnet_serving.inference.service.load_model`, warmed at
    ``batch_size``) from the served archive, unpacked into ``model_dir``: its runtime and precision too."""

    def __init__(
        self, processes: int, threads: int, device: str, batch_size: int, payload: bytes, model_dir: Path
    ) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(processes)
        self.commands = [ctx.Queue() for _ in range(processes)]
        self.results: Any = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_pool_main,
                args=(threads, device, batch_size, payload, model_dir, self.barrier, q, self.results),
                daemon=True,
            )
            for q in self.commands
        ]
        # libgomp reads its spin count when torch loads it, so the copies get serve's before they start
        with children_inherit(openmp_env(environment())):
            for proc in self.procs:
                proc.start()
        #: What runs each copy's forward pass (Classifier.graph), reported once every copy has loaded its model.
        self.graph = {self.results.get(timeout=300) for _ in self.procs}.pop()

    def rate(self, kind: str, bs: int, seconds: float) -> float:
        for q in self.commands:
            q.put((kind, bs, seconds))
        return float(sum(self.results.get(timeout=seconds + 300) for _ in self.commands))

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def _pool_main(
    threads: int,
    device: str,
    batch_size: int,
    payload: bytes,
    model_dir: Path,
    barrier: Any,
    commands: Any,
    results: Any,
) -> None:
    torch.set_num_threads(threads)
    clf, _ = load_model(model_dir, torch.device(device), batch_size, Settings.from_env(), threads)
    results.put(clf.graph)
    while (cmd := commands.get()) is not None:
        kind, bs, seconds = cmd
        step = _raw_step(clf, bs) if kind == "raw" else _pipeline_step(clf, bs, payload)
        step()  # warm-up (allocations, oneDNN primitives) before the common start
        barrier.wait()
        results.put(_time_loop(seconds, step, bs, warm=False))


def _process_memory(pids: list[int]) -> dict[str, Any]:
    frontend_mb = 0.0
    workers: list[float] = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            cmd = " ".join(p.cmdline())
            rss = p.memory_info().rss / 2**20
        except psutil.Error:
            continue
        if "model_service_worker" in cmd:
            workers.append(round(rss, 1))
        elif p.name() == "java" or "org.pytorch.serve" in cmd:
            frontend_mb = round(rss, 1)
    return {"frontend_rss_mb": frontend_mb, "worker_rss_mb": workers}


def run_loadgen(
    url: str,
    payload: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    *,
    metrics_url: str | None = None,
    ok_text: str | None = None,
) -> dict[str, Any]:
    """One closed-loop level in the load generator's own process. With ``metrics_url`` (serve's model-metrics
    port), the server's histograms are scraped when the measuring window opens and when it closes, and
    ``result["server"]`` holds the window's split (:func:`resnet_serving.bench.scrape.window`)."""
    cmd = [
        sys.executable, "-m", "resnet_serving.bench.loadgen",
        "--url", url, "--payload", str(payload), "--concurrency", str(concurrency),
        "--duration", str(duration), "--warmup", str(warmup),
    ]  # fmt: skip
    if ok_text is not None:
        cmd += ["--ok-text", ok_text]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        before = None
        if metrics_url:
            time.sleep(warmup)  # the window opens after the load generator's warm-up
            before = scrape.scrape(metrics_url)
        stdout, stderr = proc.communicate(timeout=duration + warmup + 300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr[-2000:]}")
    result = dict(json.loads(stdout.strip().splitlines()[-1]))
    if metrics_url and before is not None:
        result["server"] = scrape.window(before, scrape.scrape(metrics_url))
    return result


def _prepare_model_dir(opts: BenchOptions, tmp: Path) -> Path:
    if opts.model_dir:
        return opts.model_dir
    from resnet_serving.archiver import build_archive

    out = tmp / "archive"
    with ui.status("building a model archive (random weights) for the bench"):
        build_archive(weights="random", version="1", out_dir=out)
    return out


def _image_size(payload: bytes) -> list[int] | None:
    """The payload's width and height from its header, or None when it does not parse (the served level says why)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(payload)) as im:
            return list(im.size)
    except Exception:  # any header PIL refuses: the served levels then report the real error
        return None


def run_bench(opts: BenchOptions) -> BenchReport:
    opts.out.mkdir(parents=True, exist_ok=True)
    if opts.payload is None or not opts.payload.is_file():
        raise ConfigError(f"bench payload {opts.payload or '(none)'}: not a file; pass --payload IMAGE.jpg")
    payload_path = opts.payload
    payload = payload_path.read_bytes()
    if opts.baseline:
        from resnet_serving.bench.baseline import require_stock_handler

        require_stock_handler()  # before minutes of measuring, not after
    tmp = Path(tempfile.mkdtemp(prefix="resnet-serving-bench-"))
    try:
        model_dir = _prepare_model_dir(opts, tmp)
        manifest = open_model_dir(model_dir)
        unpacked = unpack_archive(model_dir, tmp / "unpacked")  # what the raw processes load, as a worker does
        cfg = _serve_config(opts, model_dir, manifest.version)
        budget = cfg.workers * cfg.torch_threads
        device = select_device(0 if torch.cuda.is_available() else None)
        settings = Settings.from_env()  # the workers and the pipeline read the same environment, as serve's do
        report: dict[str, Any] = {
            "environment": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "cpus_available": available_cpus(),
                "cgroup_cpu_quota": cgroup_cpu_quota(),
                "cpu": cpu_report(),
                "load_average_before": os.getloadavg(),
                "payload": {"file": payload_path.name, "bytes": len(payload), "size": _image_size(payload)},
                "weights": manifest.weights.get("id"),
                "runtime": manifest.runtime,
                "model_version": manifest.version,
            },
            "serve_config": {
                "workers": cfg.workers,
                "torch_threads_per_worker": cfg.torch_threads,
                "batch_size": cfg.batch_size,
                "max_batch_delay_ms": cfg.max_batch_delay_ms,
                "channels_last": True,
                "jpeg_decode": "scaled" if settings.jpeg_scaled_decode and device.type == "cpu" else "exact",
                "cpu_resize": settings.cpu_resize if device.type == "cpu" else None,
                "openmp_wait": ", ".join(f"{k}={v}" for k, v in sorted(openmp_wait(environment()).items())),
            },
            "server_warmup_s": opts.server_warmup_s,
            "load_generator": "closed-loop threaded HTTP client (http.client, keep-alive) in its own process",
        }

        # 1-2. raw and pipeline, in serving's layout (workers processes × torch threads each)
        pool = LayoutPool(cfg.workers, cfg.torch_threads, str(device), cfg.batch_size, payload, unpacked)
        try:
            # batch 1 is the lone request's reference; the serving batch splits the gap into batching and the rest
            sizes = sorted({1, *opts.raw_batch_sizes, cfg.batch_size})
            with ui.status(f"raw forward pass, batch sizes {sizes}, {cfg.workers}×{cfg.torch_threads}"):
                by_batch = {str(bs): pool.rate("raw", bs, opts.raw_seconds_per_batch) for bs in sizes}
            best = max(by_batch, key=lambda k: by_batch[k])
            raw_img_s = by_batch[best]
            report["raw"] = {
                "layout": f"{cfg.workers} process(es) × {cfg.torch_threads} thread(s)",
                "graph": pool.graph,
                "img_s_by_batch": by_batch,
                "best_batch": int(best),
                "img_s": raw_img_s,
                "serving_batch": cfg.batch_size,
                "img_s_at_serving_batch": by_batch[str(cfg.batch_size)],
            }
            # 2. the pipeline, alternated with raw at the best and the serving batch: the host drifts over a run,
            # so the split of the gap is taken from ratios within each round, not across the run
            split = _measure_gap_split(pool, opts, int(best), cfg.batch_size)
            pipe = statistics.median(r["pipeline"] for r in split["rounds"])
            report["pipeline"] = {"batch": cfg.batch_size, "img_s": pipe, "ratio_to_raw": pipe / raw_img_s}
            report["gap_split"] = split
            if cfg.workers > 1:
                with ui.status(f"raw forward pass, one process × {budget} threads (for comparison)"):
                    single = LayoutPool(1, budget, str(device), cfg.batch_size, payload, unpacked)
                    try:
                        report["raw"]["single_process_img_s"] = single.rate(
                            "raw", int(best), opts.raw_seconds_per_batch
                        )
                        batch1_img_s = single.rate("raw", 1, opts.raw_seconds_per_batch)
                    finally:
                        single.close()
            else:
                batch1_img_s = by_batch["1"]
            # the lone request's reference: one image through the raw graph on all the pod's cores
            report["raw"]["batch1_all_cores_ms"] = 1000.0 / batch1_img_s
            report["served"], report["cold_start_s"], report["memory"] = _measure_served(
                cfg, tmp, opts, pool, int(best), payload_path
            )
            if opts.baseline:
                report["baseline"] = _measure_baseline(report, model_dir, tmp, opts, pool, payload_path)
        finally:
            pool.close()
        report["targets"] = evaluate_targets(report)

        result = BenchReport.of(report)
        write_reports(result, opts.out)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure_gap_split(pool: LayoutPool, opts: BenchOptions, best: int, serving: int) -> dict[str, Any]:
    """Rounds of (raw at the best batch, raw at the serving batch, pipeline at the serving batch), back to back.

    Per round, ``batching`` = raw at the serving batch ÷ raw at the best batch and ``handler`` = pipeline ÷ raw at
    the serving batch; the report uses their medians, so a factor reads what one stage costs, not host drift.
    """
    rounds = []
    seconds = max(0.5, opts.raw_seconds_per_batch / 2)
    for k in range(opts.repeat):
        with ui.status(
            f"raw batch {best} / raw batch {serving} / pipeline (decode → preprocess → forward → top-k) batch "
            f"{serving}, round {k + 1}/{opts.repeat}"
        ):
            at_best = pool.rate("raw", best, seconds)
            at_serving = pool.rate("raw", serving, seconds) if serving != best else at_best
            pipe = pool.rate("pipeline", serving, seconds)
        rounds.append({"raw_best_batch": at_best, "raw_serving_batch": at_serving, "pipeline": pipe})
    return {
        "rounds": rounds,
        "batching": statistics.median(r["raw_serving_batch"] / r["raw_best_batch"] for r in rounds),
        "handler": statistics.median(r["pipeline"] / r["raw_serving_batch"] for r in rounds),
    }


def _measure_served(
    cfg: ServeConfig, tmp: Path, opts: BenchOptions, pool: LayoutPool, best_batch: int, payload_path: Path
) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """Cold start, then each concurrency level bracketed by raw measurements (same layout, best batch), with the
    server's own split of each level read from its model-metrics port, as ``serve`` exports it."""
    from resnet_serving.torchserve import exporter

    metrics_dir = exporter.fresh_dir(tmp / "prometheus")
    metrics_port = free_ports(1)[0]
    metrics_server = exporter.start(
        metrics_dir, host="127.0.0.1", port=metrics_port, management_url=cfg.management_url, model=cfg.model_name
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    server = TorchServe(
        cfg, tmp / "run", env={**openmp_env(environment()), exporter.ENV_MULTIPROC_DIR: str(metrics_dir)}
    )
    guard = (
        Guard.in_front_of(cfg, host="127.0.0.1", port=free_ports(1)[0], retry_after=opts.retry_after)
        if opts.retry_after
        else None
    )
    try:
        if guard is not None:
            guard.start()
        server.start()  # inside the try: a failed start still closes the exporter (stop() is idempotent)
        with ui.status("starting TorchServe (cold start: process start → first prediction)"):
            cold = server.wait_ready(timeout=cfg.startup_timeout_s)  # as long as the worker may take to load
        direct = f"{cfg.inference_url}/predictions/{MODEL_NAME}"
        url = f"{guard.url}/predictions/{MODEL_NAME}" if guard is not None else direct
        if opts.server_warmup_s > 0:
            c_max = max(opts.concurrency)
            with ui.status(f"warming up the server (JIT): {opts.server_warmup_s:.0f}s at concurrency {c_max}"):
                warm = run_loadgen(url, payload_path, c_max, opts.server_warmup_s, 0)
            if warm["failed"]:
                raise RuntimeError(f"warm-up: {warm['failed']} requests failed: {warm['failures']}")
        adjacent = max(2.0, opts.raw_seconds_per_batch)
        # Rounds go through every level in turn (c=1, 4, …, then again), so slow drift of the host over the
        # minutes of a run lands on all levels alike instead of on the last ones.
        by_level: dict[int, list[dict[str, Any]]] = {c: [] for c in opts.concurrency}
        # the guard's cost: the highest level that TorchServe holds whole, through the guard and straight to its port
        # (above it, straight to TorchServe is the 503 storm that admission prevents, not a cost)
        holds = cfg.queue_size + cfg.workers * cfg.batch_size
        c_top = max((c for c in opts.concurrency if c <= holds), default=min(opts.concurrency))
        direct_rounds: list[dict[str, Any]] = []

        def level(c: int, target: str, label: str) -> dict[str, Any]:
            with ui.status(f"{label}, bracketed by raw runs"):
                before = pool.rate("raw", best_batch, adjacent)
                cpu_before, guard_before = _group_cpu(server.group_pids()), _thread_cpu(guard)
                r = run_loadgen(target, payload_path, c, opts.duration_s, opts.warmup_s, metrics_url=metrics_url)
                r["rejected_503"] = r["failures"].get("HTTP 503", 0)
                r["server_cpu_s"] = round(_group_cpu(server.group_pids()) - cpu_before, 2)
                if guard is not None and target == url:
                    r["guard_cpu_s"] = round(_thread_cpu(guard) - guard_before, 3)
                after = pool.rate("raw", best_batch, adjacent)
            r["raw_before_img_s"], r["raw_after_img_s"] = before, after
            r["raw_adjacent_img_s"] = (before + after) / 2
            r["ratio_to_raw"] = r["img_s"] / r["raw_adjacent_img_s"]
            return r

        for k in range(opts.repeat):
            for c in opts.concurrency:
                label = f"served: round {k + 1}/{opts.repeat}, concurrency {c}, {opts.duration_s:.0f}s"
                by_level[c].append(level(c, url, label))
            if guard is not None:  # what the guard costs: the same level straight to TorchServe's port
                label = f"served: round {k + 1}/{opts.repeat}, concurrency {c_top} without the guard"
                direct_rounds.append(level(c_top, direct, label))
        served = []
        for c, rounds in by_level.items():
            # The round with the median ratio represents the level; every round is kept in the report.
            r = dict(sorted(rounds, key=lambda x: x["ratio_to_raw"])[len(rounds) // 2])
            r["failed"] = sum(x["failed"] for x in rounds)
            r["rejected_503"] = sum(x["rejected_503"] for x in rounds)
            r["round_img_s"] = [round(x["img_s"], 2) for x in rounds]
            r["round_ratios"] = [round(x["ratio_to_raw"], 3) for x in rounds]
            if len(rounds) > 1:
                r["rounds"] = rounds
            served.append(r)
            ui.info(
                f"  c={c:<3} {r['img_s']:6.1f} img/s  raw {r['raw_adjacent_img_s']:5.1f}  ratio {r['ratio_to_raw']:.2f}"
                f"  (rounds {r['round_ratios']})  p50 {r['p50_ms']:.0f} ms  p99 {r['p99_ms']:.0f} ms"
                f"  failed {r['failed']} (503: {r['rejected_503']})"
            )
            ui.info(f"        server: {server_line(r['server'])}")
        memory = _process_memory(server.group_pids())
        if guard is not None:
            memory["guard"] = _guard_cost(guard, by_level[c_top], direct_rounds)
            ui.info(f"  guard: {guard_line(memory['guard'])}")
    finally:
        server.stop()
        if guard is not None:
            guard.stop()
        metrics_server.shutdown()
        metrics_server.server_close()  # shutdown() only stops the loop; this closes the listening socket
    return served, cold, memory


def _thread_cpu(guard: Guard | None) -> float:
    """CPU seconds of the guard's thread (it runs in this process, as in `serve`'s), 0 without one."""
    tid = guard.thread_id if guard is not None else None
    if tid is None:
        return 0.0
    for t in psutil.Process().threads():
        if t.id == tid:
            return float(t.user_time + t.system_time)
    return 0.0


def _guard_cost(guard: Guard, through: list[dict[str, Any]], direct: list[dict[str, Any]]) -> dict[str, Any]:
    """The top level through the guard against straight to TorchServe, round by round (each round's two runs
    are minutes apart at most), and the guard's own CPU per request."""
    rounds = [
        {"guard_img_s": g["img_s"], "direct_img_s": d["img_s"], "ratio": g["img_s"] / d["img_s"]}
        for g, d in zip(through, direct, strict=True)
    ]
    requests = sum(g["answered_total"] for g in through)  # the CPU window spans the warm-up too
    cpu = sum(g.get("guard_cpu_s", 0.0) for g in through)
    return {
        "retry_after_s": guard.retry_after,
        "concurrency": through[0]["concurrency"],
        "rounds": rounds,
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "cpu_ms_per_request": 1000.0 * cpu / requests if requests else None,
    }


def server_line(split: dict[str, Any]) -> str:
    """One level's server side in a line: batch size, handler p50/p99, and per batch each stage's time."""
    stages = "  ".join(f"{k} {v:.1f}" for k, v in split["stage_ms_per_batch"].items())
    return (
        f"batch {split['mean_batch_size']:.2f}  handler p50 {split['handler_p50_ms']:.0f} ms "
        f"p99 {split['handler_p99_ms']:.0f} ms  per batch (ms): {stages}"
    )


def _measure_baseline(
    report: dict[str, Any], model_dir: Path, tmp: Path, opts: BenchOptions, pool: LayoutPool, payload_path: Path
) -> dict[str, Any]:
    """The stock TorchServe (bench/baseline.py) at each concurrency, one round, bracketed by raw runs like
    the served levels; each level's ratio to the served one of this run is reported beside it."""
    from resnet_serving.bench import baseline

    version = report["environment"].get("model_version", "1")
    with ui.status(f"archiving the baseline: TorchScript of the same weights, handler {baseline.STOCK_HANDLER}"):
        baseline.build_baseline_archive(model_dir, tmp / "baseline", version)
    threads = baseline.default_torch_threads()
    cfg = baseline.baseline_config(tmp / "baseline", version, free_ports(5))
    server = TorchServe(cfg, tmp / "baseline-run", env=baseline.baseline_env(threads))
    served = {r["concurrency"]: r for r in report["served"]}
    best = report["raw"]["best_batch"]
    adjacent = max(2.0, opts.raw_seconds_per_batch)
    levels = []
    try:
        server.start()
        with ui.status("starting the baseline TorchServe (stock handler, default settings)"):
            cold = baseline.wait_stock_ready(server, timeout=300)
        url = f"{cfg.inference_url}/predictions/{MODEL_NAME}"
        if opts.server_warmup_s > 0:
            c_max = max(opts.concurrency)
            with ui.status(f"warming up the baseline: {opts.server_warmup_s:.0f}s at concurrency {c_max}"):
                run_loadgen(url, payload_path, c_max, opts.server_warmup_s, 0, ok_text=BASELINE_OK)
        for c in opts.concurrency:
            with ui.status(f"baseline: concurrency {c}, {opts.duration_s:.0f}s, bracketed by raw runs"):
                before = pool.rate("raw", best, adjacent)
                r = run_loadgen(url, payload_path, c, opts.duration_s, opts.warmup_s, ok_text=BASELINE_OK)
                after = pool.rate("raw", best, adjacent)
            r["raw_adjacent_img_s"] = (before + after) / 2
            r["ratio_to_raw"] = r["img_s"] / r["raw_adjacent_img_s"]
            # None (JSON null) when the baseline answered nothing inside the window: no finite ratio exists
            r["served_over_baseline"] = served[c]["img_s"] / r["img_s"] if r["img_s"] > 0 else None
            levels.append(r)
            over = r["served_over_baseline"]
            ui.info(
                f"  baseline c={c:<3} {r['img_s']:6.1f} img/s  ratio to raw {r['ratio_to_raw']:.2f}  "
                f"served ÷ baseline {'n/a' if over is None else f'{over:.2f}'}  p50 {r['p50_ms']:.0f} ms  "
                f"p99 {r['p99_ms']:.0f} ms  failed {r['failed']}"
            )
        memory = _process_memory(server.group_pids())
    finally:
        server.stop()
    return {"config": baseline.describe(cfg, threads), "cold_start_s": cold, "memory": memory, "levels": levels}


#: The stock handler answers a JSON object of label → probability, not our {"predictions": …} body.
BASELINE_OK = "{"


def _group_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def _median_img_s(level: dict[str, Any]) -> float:
    return float(statistics.median(x["img_s"] for x in level.get("rounds") or [level]))


def evaluate_targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, evaluated on this run's numbers (reported, not asserted)."""
    by_c = {r["concurrency"]: r for r in report.get("served", [])}
    out: dict[str, Any] = {}
    for c in (4, 16, 64):
        if c in by_c:
            out[f"ratio_c{c}_ge_0.90"] = by_c[c]["ratio_to_raw"] >= 0.90
    if 4 in by_c and 64 in by_c:
        out["no_collapse_c64_ge_c4"] = by_c[64]["img_s"] >= by_c[4]["img_s"]
    for c in (64, 256):  # goodput under overload, against c=16 in the same run (the median of each's rounds)
        if 16 in by_c and c in by_c:
            out[f"goodput_c{c}_over_c16"] = round(_median_img_s(by_c[c]) / _median_img_s(by_c[16]), 3)
            out[f"goodput_c{c}_ge_0.9x_c16"] = out[f"goodput_c{c}_over_c16"] >= 0.9
            out[f"failures_c{c}_only_503_or_429"] = set(by_c[c].get("failures", {})) <= {"HTTP 503", "HTTP 429"}
    if 16 in by_c and by_c[16]["img_s"] > 0:
        bound = 2 * 16 / by_c[16]["img_s"] * 1000
        out["p99_c16_le_2x_queueing_bound"] = by_c[16]["p99_ms"] <= bound
        out["p99_c16_bound_ms"] = round(bound, 1)
    lone_ms = report.get("raw", {}).get("batch1_all_cores_ms")
    if 1 in by_c and lone_ms:
        out["c1_p50_over_raw_batch1"] = round(by_c[1]["p50_ms"] / lone_ms, 2)
        out["c1_p50_le_1.3x_raw_batch1"] = by_c[1]["p50_ms"] <= 1.3 * lone_ms
    if "cold_start_s" in report:
        out["cold_start_le_15s"] = report["cold_start_s"] <= 15.0
    out["failed_requests"] = sum(r["failed"] for r in report.get("served", []))
    return out
