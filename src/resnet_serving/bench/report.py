"""bench.json (:class:`~resnet_serving.bench.result.BenchReport`), bench.md (a markdown table) and bench.png
(latency and throughput against concurrency). bench.md and bench.png render the whole document, so they read it
as the JSON it is written as."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from resnet_serving.bench.result import BenchReport
from resnet_serving.files import atomic_write, atomic_write_text


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    env, cfg, raw = report["environment"], report["serve_config"], report["raw"]
    single = raw.get("single_process_img_s")
    single_row = (
        [
            f"| raw forward, one process × all threads (batch {raw['best_batch']}) | {_fmt(single)} | "
            f"{_fmt(single / raw['img_s'], 2)} |"
        ]
        if single
        else []
    )
    lines = [
        "# resnet-serving bench",
        "",
        f"Device {env['device']}, {env['cpus_available']} CPU(s) available, torch {env['torch']}, "
        f"payload {env['payload']['file']} ({_dims(env['payload'])}{env['payload']['bytes']} bytes), "
        f"weights {env['weights']}.",
        f"Serving: {cfg['workers']} worker(s) × {cfg['torch_threads_per_worker']} torch thread(s), "
        f"batch {cfg['batch_size']}, max batch delay {cfg['max_batch_delay_ms']} ms, channels_last, "
        f"{cfg.get('jpeg_decode', 'exact')} JPEG decode"
        + (f", {cfg['cpu_resize']} resize" if cfg.get("cpu_resize") else "")
        + (f", OpenMP {cfg['openmp_wait']}." if cfg.get("openmp_wait") else "."),
        f"Load generator: {report['load_generator']}. Server warmed up for {report.get('server_warmup_s', 0):.0f} s "
        "at the highest concurrency before measuring, as a long-running server would be.",
        "",
        "| stage | img/s | ratio to raw |",
        "|---|---:|---:|",
        f"| raw forward ({raw.get('graph', 'eager')}), {raw.get('layout', '')} (best batch {raw['best_batch']}) | "
        f"{_fmt(raw['img_s'])} | 1.00 |",
        *single_row,
        f"| raw forward at the serving batch size (batch {raw['serving_batch']}) | "
        f"{_fmt(raw['img_s_at_serving_batch'])} | {_fmt(raw['img_s_at_serving_batch'] / raw['img_s'], 2)} |",
        f"| in-process pipeline (batch {report['pipeline']['batch']}) | {_fmt(report['pipeline']['img_s'])} | "
        f"{_fmt(report['pipeline']['ratio_to_raw'], 2)} |",
        "",
        f"A lone image through the raw graph on all {cfg['workers'] * cfg['torch_threads_per_worker']} thread(s): "
        f"{_fmt(raw['batch1_all_cores_ms'])} ms (the reference for served p50 at concurrency 1)."
        if "batch1_all_cores_ms" in raw
        else "",
        "",
        "Raw forward by batch size: "
        + ", ".join(f"{bs}: {_fmt(v)}" for bs, v in raw["img_s_by_batch"].items())
        + " img/s",
        "",
        "Served levels are each bracketed by raw runs (same layout, best batch); `served ÷ raw` uses their mean; "
        "with --repeat, each round goes through every level in turn, the round with the median ratio is shown "
        "and every round's ratio is listed below.",
        "",
        "| concurrency | served img/s | raw img/s (adjacent) | served ÷ raw | p50 ms | p95 ms | p99 ms | failed "
        "| of them 503 | client CPU % | server CPU s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.get("served", []):
        lines.append(
            f"| {r['concurrency']} | {_fmt(r['img_s'])} | {_fmt(r.get('raw_adjacent_img_s', float('nan')))} | "
            f"{_fmt(r['ratio_to_raw'], 2)} | {_fmt(r['p50_ms'], 0)} | "
            f"{_fmt(r['p95_ms'], 0)} | {_fmt(r['p99_ms'], 0)} | {r['failed']} | {r.get('rejected_503', 'n/a')} | "
            f"{_fmt(r['client_cpu_pct'])} | "
            f"{_fmt(r.get('server_cpu_s', float('nan')))} |"
        )
    rounds = [f"c={r['concurrency']}: {r.get('round_ratios')}" for r in report.get("served", [])]
    lines += ["", "Ratios per round: " + "; ".join(rounds)]
    goodput = [f"c={r['concurrency']}: {r['round_img_s']}" for r in report.get("served", []) if "round_img_s" in r]
    if goodput:
        lines += ["", "Served img/s (answered 200) per round: " + "; ".join(goodput)]
    lines += server_split_lines(report.get("served", []))
    lines += baseline_lines(report)
    served = report.get("served", [])
    split = report.get("gap_split")
    if served and split:
        top = max(served, key=lambda r: r["img_s"])
        rest = top["ratio_to_raw"] / (split["batching"] * split["handler"])
        lines += [
            "",
            f"Where the gap to raw goes at c={top['concurrency']} (served ÷ raw {_fmt(top['ratio_to_raw'], 2)}), as "
            f"factors: batch {raw['serving_batch']} instead of {raw['best_batch']} {_fmt(split['batching'], 2)}; "
            f"decode, preprocessing and top-k {_fmt(split['handler'], 2)}; TorchServe, HTTP and the load generator "
            f"{_fmt(rest, 2)}. The first two are medians of {len(split['rounds'])} rounds that alternate raw at "
            f"batch {raw['best_batch']}, raw at batch {raw['serving_batch']} and the pipeline; the third is what "
            "is left of the served ratio.",
        ]
    mem = report.get("memory", {})
    if guard := mem.get("guard"):
        lines += ["", f"Served through serve's guard (Retry-After {guard['retry_after_s']} s): {guard_line(guard)}."]
    lines += [
        "",
        f"Cold start (process start → first prediction): {_fmt(report.get('cold_start_s', float('nan')))} s. "
        f"Memory: front end {mem.get('frontend_rss_mb', 'n/a')} MB RSS, workers {mem.get('worker_rss_mb', [])} MB.",
        "",
        "Targets: " + ", ".join(f"{k}={v}" for k, v in report.get("targets", {}).items()),
        "",
    ]
    return "\n".join(lines)


def guard_line(cost: dict[str, Any]) -> str:
    per_request = cost["cpu_ms_per_request"]
    return (
        f"c={cost['concurrency']} through the guard ÷ straight to TorchServe {cost['ratio']:.3f} "
        f"(rounds {[round(r['ratio'], 3) for r in cost['rounds']]}), guard CPU "
        + (f"{per_request:.2f} ms per request" if per_request is not None else "n/a")
    )


def server_split_lines(served: list[dict[str, Any]]) -> list[str]:
    """Where the server's time goes at each level: its own histograms, scraped around the measuring window."""
    rows = [r for r in served if "server" in r]
    if not rows:
        return []
    lines = [
        "",
        "Server side of each level, from serve's model-metrics port (the workers' histograms, scraped when the "
        "window opened and closed): the handler's p50/p99 are estimated from the latency buckets as Prometheus's "
        "histogram_quantile does, and exclude the time a request waits in TorchServe's queue and the HTTP hops.",
        "",
        "| concurrency | client p50 ms | client p99 ms | handler p50 ms | handler p99 ms | mean batch "
        "| decode ms/batch | preprocess ms/batch | forward ms/batch | postprocess ms/batch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sv, st = r["server"], r["server"]["stage_ms_per_batch"]
        lines.append(
            f"| {r['concurrency']} | {_fmt(r['p50_ms'], 0)} | {_fmt(r['p99_ms'], 0)} | "
            f"{_fmt(sv['handler_p50_ms'], 0)} | {_fmt(sv['handler_p99_ms'], 0)} | {_fmt(sv['mean_batch_size'], 2)} | "
            f"{_fmt(st['decode'])} | {_fmt(st['preprocess'])} | {_fmt(st['forward'])} | {_fmt(st['postprocess'])} |"
        )
    return lines


def baseline_lines(report: dict[str, Any]) -> list[str]:
    """The stock TorchServe reference of `bench --baseline`, with served ÷ baseline at each level."""
    base = report.get("baseline")
    if not base:
        return []
    cfg = base["config"]
    lines = [
        "",
        f"Baseline: TorchServe 0.12's stock `{cfg['handler']}` handler with its default settings on the same "
        f"weights ({cfg['model_file']}): {cfg['workers']} worker(s) × {cfg['torch_threads_per_worker']} torch "
        f"thread(s) (torch's default), batch {cfg['batch_size']}, JVM {cfg['jvm']}; cold start "
        f"{_fmt(base['cold_start_s'])} s, one round per level, bracketed by raw runs like the served levels.",
        "",
        "| concurrency | baseline img/s | baseline ÷ raw | served ÷ baseline | p50 ms | p99 ms | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in base["levels"]:
        lines.append(
            f"| {r['concurrency']} | {_fmt(r['img_s'])} | {_fmt(r['ratio_to_raw'], 2)} | "
            f"{_fmt(r['served_over_baseline'], 2)} | {_fmt(r['p50_ms'], 0)} | {_fmt(r['p99_ms'], 0)} | {r['failed']} |"
        )
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = report.get("served", [])
    cs = [r["concurrency"] for r in served]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(cs, [r["img_s"] for r in served], "o-", label="served")
    ax1.plot(
        cs,
        [r.get("raw_adjacent_img_s", report["raw"]["img_s"]) for r in served],
        "s--",
        color="grey",
        label="raw forward (adjacent)",
    )
    ax1.plot(
        cs,
        [0.9 * r.get("raw_adjacent_img_s", report["raw"]["img_s"]) for r in served],
        ":",
        color="grey",
        label="0.9 × raw",
    )
    base = report.get("baseline", {}).get("levels", [])
    if base:
        ax1.plot([r["concurrency"] for r in base], [r["img_s"] for r in base], "^-", label="stock TorchServe")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("concurrency")
    ax1.set_ylabel("img/s")
    ax1.set_title("throughput")
    ax1.legend()
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        ax2.plot(cs, [r[key] for r in served], "o-", label=key.replace("_ms", ""))
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("concurrency")
    ax2.set_ylabel("latency (ms)")
    ax2.set_title("latency")
    ax2.legend()
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def write_reports(report: BenchReport, out: Path) -> None:
    """bench.json, bench.md and bench.png in ``out``, each complete or absent (:mod:`resnet_serving.files`)."""
    report.write(out / "bench.json")
    document = report.to_dict()
    atomic_write_text(out / "bench.md", markdown(document))
    plot(document, out / "bench.png")


def ratio_lines(report: BenchReport) -> list[str]:
    """What `bench` prints when it is done: served ÷ raw at each level, and served ÷ baseline with --baseline."""
    lines = [
        f"served_img_s / raw_img_s at concurrency {r.concurrency}: {r.ratio_to_raw:.2f}"
        for r in report.served
        if r.ratio_to_raw is not None
    ]
    for r in report.extra.get("baseline", {}).get("levels", []):
        over = r["served_over_baseline"]
        shown = "n/a (the baseline answered nothing in the window)" if over is None else f"{over:.2f}"
        lines.append(f"served_img_s / baseline_img_s at concurrency {r['concurrency']}: {shown}")
    return lines


def _dims(payload: dict[str, Any]) -> str:
    size = payload.get("size")
    return f"{size[0]}×{size[1]}, " if size else ""
