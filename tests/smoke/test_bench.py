"""A short, bounded run of the real benchmark (seconds, not minutes), so `resnet-serving bench` cannot rot.

It asserts the report's structure and internal consistency, never speed: speed is what `make bench` measures.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from resnet_serving.cli import main

pytestmark = [pytest.mark.smoke, pytest.mark.torchserve]


def test_quick_bench_writes_consistent_reports(archive_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "--quick", "--repeat", "2", "--baseline", "--model-dir", str(archive_dir), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "served_img_s / raw_img_s at concurrency 1:" in printed
    assert "served_img_s / raw_img_s at concurrency 4:" in printed
    assert "served_img_s / baseline_img_s at concurrency 4:" in printed

    report = json.loads((out / "bench.json").read_text())
    raw = report["raw"]
    assert raw["img_s"] == max(raw["img_s_by_batch"].values()) > 0
    assert str(raw["best_batch"]) in raw["img_s_by_batch"]
    # the serving batch size is measured even when --raw-batch-sizes leaves it out (quick: 1 and 4)
    assert raw["serving_batch"] == report["serve_config"]["batch_size"] == report["pipeline"]["batch"]
    assert raw["img_s_at_serving_batch"] == raw["img_s_by_batch"][str(raw["serving_batch"])] > 0
    assert raw["graph"] in ("torchscript-frozen", "eager")
    assert report["pipeline"]["img_s"] > 0
    assert report["pipeline"]["ratio_to_raw"] == pytest.approx(report["pipeline"]["img_s"] / raw["img_s"])
    split = report["gap_split"]
    assert len(split["rounds"]) == 2 and all(v > 0 for r in split["rounds"] for v in r.values())
    assert report["pipeline"]["img_s"] == pytest.approx(statistics.median(r["pipeline"] for r in split["rounds"]))
    ratios = [r["raw_serving_batch"] / r["raw_best_batch"] for r in split["rounds"]]
    assert split["batching"] == pytest.approx(statistics.median(ratios))
    assert split["handler"] == pytest.approx(
        statistics.median(r["pipeline"] / r["raw_serving_batch"] for r in split["rounds"])
    )
    assert [r["concurrency"] for r in report["served"]] == [1, 4]
    for r in report["served"]:
        assert r["failed"] == 0 and r["completed"] > 0
        assert r["raw_before_img_s"] > 0 and r["raw_after_img_s"] > 0
        assert r["raw_adjacent_img_s"] == pytest.approx((r["raw_before_img_s"] + r["raw_after_img_s"]) / 2)
        assert r["ratio_to_raw"] == pytest.approx(r["img_s"] / r["raw_adjacent_img_s"])
        assert len(r["rounds"]) == 2 and len(r["round_ratios"]) == 2
        assert min(r["round_ratios"]) <= round(r["ratio_to_raw"], 3) <= max(r["round_ratios"])
        assert r["failed"] == sum(x["failed"] for x in r["rounds"])
        assert r["rejected_503"] == sum(x["rejected_503"] for x in r["rounds"]) == 0
        assert r["round_img_s"] == [round(x["img_s"], 2) for x in r["rounds"]]
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert 0 <= r["client_cpu_pct"] < 100
    assert 0 < report["cold_start_s"] < 300
    assert report["memory"]["frontend_rss_mb"] > 0 and len(report["memory"]["worker_rss_mb"]) >= 1
    assert report["serve_config"]["torch_threads_per_worker"] >= 1
    assert report["targets"]["failed_requests"] == 0
    lone = report["raw"]["batch1_all_cores_ms"]
    assert lone > 0 and "1" in report["raw"]["img_s_by_batch"]
    c1 = next(r for r in report["served"] if r["concurrency"] == 1)
    assert report["targets"]["c1_p50_over_raw_batch1"] == pytest.approx(c1["p50_ms"] / lone, abs=0.01)
    assert report["targets"]["c1_p50_le_1.3x_raw_batch1"] == (c1["p50_ms"] <= 1.3 * lone)
    cpu = report["environment"]["cpu"]
    assert set(cpu["flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    assert cpu["bf16_native"] == (cpu["flags"]["avx512_bf16"] or cpu["flags"]["amx_bf16"])

    # the server's side of every round, from serve's model-metrics port: it saw the requests the client counted
    for r in report["served"]:
        for rnd in r["rounds"]:
            sv = rnd["server"]
            assert sv["requests_ok"] >= rnd["completed"] > 0, sv
            assert 1 <= sv["mean_batch_size"] <= report["serve_config"]["batch_size"]
            assert set(sv["stage_ms_per_batch"]) == {"decode", "preprocess", "forward", "postprocess"}
            assert all(v > 0 for v in sv["stage_ms_per_batch"].values())
            assert 0 < sv["handler_p50_ms"] <= sv["handler_p99_ms"] and sv["handler_mean_ms"] > 0
        assert r["server"] in [rnd["server"] for rnd in r["rounds"]]  # the median round's, like the rest of r

    # the served path went through serve's guard, as `serve` runs by default; its cost is the top level against
    # TorchServe's own port, round by round, and its CPU per request comes from its own thread
    guard = report["memory"]["guard"]
    top_rounds = next(r for r in report["served"] if r["concurrency"] == 4)["rounds"]
    assert guard["retry_after_s"] == 1 and guard["concurrency"] == 4 and len(guard["rounds"]) == 2
    for g, rnd in zip(guard["rounds"], top_rounds, strict=True):
        assert g["guard_img_s"] == rnd["img_s"] and g["direct_img_s"] > 0
        assert g["ratio"] == pytest.approx(g["guard_img_s"] / g["direct_img_s"])
        assert rnd["guard_cpu_s"] > 0
    assert guard["ratio"] == pytest.approx(statistics.median(g["ratio"] for g in guard["rounds"]))
    answered = sum(rnd["answered_total"] for rnd in top_rounds)
    assert guard["cpu_ms_per_request"] == pytest.approx(1000 * sum(r["guard_cpu_s"] for r in top_rounds) / answered)
    assert (
        "Served through serve's guard (Retry-After 1 s): c=4 through the guard ÷ straight to TorchServe"
        in (out / "bench.md").read_text()
    )

    # the stock TorchServe reference: same levels, its own defaults, ratios against this run's served levels
    base = report["baseline"]
    assert base["config"]["handler"] == "image_classifier" and base["config"]["batch_size"] == 1
    assert 0 < base["cold_start_s"] < 300 and len(base["memory"]["worker_rss_mb"]) == base["config"]["workers"]
    served_by_c = {r["concurrency"]: r for r in report["served"]}
    assert [b["concurrency"] for b in base["levels"]] == [1, 4]
    for b in base["levels"]:
        # every client thread got at least one answer, in the window or after it (a slow host can leave a quick
        # window empty), and none failed
        assert b["answered_total"] >= b["concurrency"] and b["failed_total"] == b["failed"] == 0
        assert b["ratio_to_raw"] == pytest.approx(b["img_s"] / b["raw_adjacent_img_s"])
        if b["completed"]:
            assert b["served_over_baseline"] == pytest.approx(served_by_c[b["concurrency"]]["img_s"] / b["img_s"])
        else:  # slower than the window at this level: no finite ratio, and the report says n/a
            assert b["served_over_baseline"] is None

    md = (out / "bench.md").read_text()
    assert "| concurrency | served img/s | raw img/s (adjacent) | served ÷ raw |" in md
    # one row per level in each table: served, then the server's side, then the baseline
    served_table, rest = md.split("Ratios per round:", 1)
    assert served_table.count("\n| 1 |") == 1 and served_table.count("\n| 4 |") == 1
    server_table, baseline_table = rest.split("Baseline: TorchServe 0.12", 1)
    assert server_table.count("\n| 1 |") == 1 and server_table.count("\n| 4 |") == 1
    assert baseline_table.count("\n| 1 |") == 1 and baseline_table.count("\n| 4 |") == 1
    assert "Ratios per round: c=1: [" in md
    assert f"| raw forward at the serving batch size (batch {raw['serving_batch']}) |" in md
    top = max(report["served"], key=lambda r: r["img_s"])
    rest = top["ratio_to_raw"] / (split["batching"] * split["handler"])
    assert f"Where the gap to raw goes at c={top['concurrency']}" in md
    assert f"TorchServe, HTTP and the load generator {rest:.2f}." in md
    assert "| concurrency | client p50 ms | client p99 ms | handler p50 ms | handler p99 ms | mean batch |" in md
    assert "| concurrency | baseline img/s | baseline ÷ raw | served ÷ baseline |" in md
    assert f"| 1 | {base['levels'][0]['img_s']:.1f} | {base['levels'][0]['ratio_to_raw']:.2f} |" in md
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_bad_concurrency_list(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--concurrency", "4,zero"])
    assert exc.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err
