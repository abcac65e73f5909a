"""capacity.py: the SageMaker invocations target and bench loading, on small hand-checked bench reports."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from resnet_serving.bench.result import BenchReport
from resnet_serving.errors import InputError
from resnet_serving.plan.capacity import bench_capacity, forward_time_ms, sagemaker_invocations_target
from tests.helpers.plan import tiny_bench


def test_target_same_vcpus() -> None:
    t = sagemaker_invocations_target(BenchReport.parse(tiny_bench()), instance_vcpus=2, utilisation=0.7)
    # 40 req/s × 60 × 0.7 = 1680 per minute
    assert t.invocations_per_minute == 1680
    assert "2 vCPU(s)" in t.how and "concurrency 4" in t.how and "no scaling" in t.how
    assert "EXTRAPOLATED" not in t.how


def test_target_extrapolates_and_says_so() -> None:
    t = sagemaker_invocations_target(BenchReport.parse(tiny_bench()), instance_vcpus=8, utilisation=0.5)
    # 20 req/s per vCPU × 8 × 60 × 0.5 = 4800
    assert t.invocations_per_minute == 4800
    assert "EXTRAPOLATED linearly to 8 vCPUs" in t.how and "measured 2" in t.how


def test_target_scaled_down() -> None:
    t = sagemaker_invocations_target(BenchReport.parse(tiny_bench()), instance_vcpus=1, utilisation=1.0)
    assert t.invocations_per_minute == 1200  # 20 req/s × 60
    assert "scaled down" in t.how


@pytest.mark.parametrize("u", [0, -0.1, 1.5])
def test_target_rejects_bad_utilisation(u: float) -> None:
    with pytest.raises(InputError, match="utilisation"):
        sagemaker_invocations_target(BenchReport.parse(tiny_bench()), instance_vcpus=2, utilisation=u)


def test_target_rejects_zero_vcpus() -> None:
    with pytest.raises(InputError, match="at least 1 vCPU"):
        sagemaker_invocations_target(BenchReport.parse(tiny_bench()), instance_vcpus=0)


def test_capacity_ignores_levels_with_failures() -> None:
    cap = bench_capacity(BenchReport.parse(tiny_bench()))
    assert (cap.best_concurrency, cap.best_img_s, cap.img_s_per_vcpu) == (4, 40.0, 20.0)
    assert "2 worker(s) × 1 thread(s), batch 2" in cap.config


def test_capacity_refuses_when_every_level_failed() -> None:
    b = tiny_bench()
    for r in b["served"]:
        r["failed"] = 3
    with pytest.raises(InputError, match="failed requests"):
        bench_capacity(BenchReport.parse(b))


def test_forward_time_per_worker_at_smallest_batch() -> None:
    # batch 1: 40 img/s over 2 worker processes = 20 img/s each = 50 ms per image
    assert forward_time_ms(BenchReport.parse(tiny_bench())) == pytest.approx(50.0)


def test_load_bench_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        BenchReport.load(tmp_path / "nope.json")
    assert "run `resnet-serving bench --out bench-results` to make one" in e.value.message
    assert e.value.http_status < 500  # the CLI exits 2


def test_load_bench_not_json(tmp_path: Path) -> None:
    p = tmp_path / "bench.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON bench file"):
        BenchReport.load(p)


def _broken(mutate: Any) -> dict[str, Any]:
    b = copy.deepcopy(tiny_bench())
    mutate(b)
    return b


@pytest.mark.parametrize(
    ("bench", "needle"),
    [
        ([], "top level"),
        (_broken(lambda b: b.pop("served")), "served is missing"),
        (_broken(lambda b: b.update(served=[])), "served is missing"),
        (_broken(lambda b: b["served"][1].pop("p99_ms")), "served[1] lacks"),
        (_broken(lambda b: b["served"][0].update(img_s=-1)), "served[0] lacks"),
        (_broken(lambda b: b["served"][0].update(p99_ms=1.0)), "out of order"),
        (_broken(lambda b: b["served"][1].update(concurrency=1)), "twice"),
        (_broken(lambda b: b["environment"].pop("cpus_available")), "cpus_available"),
        (_broken(lambda b: b["environment"].pop("payload")), "payload.bytes"),
        (_broken(lambda b: b["served"][0].update(rounds=[{"img_s": 1}])), "served[0].rounds"),
        (_broken(lambda b: b["serve_config"].update(workers=0)), "serve_config"),
        (_broken(lambda b: b["raw"].update(img_s_by_batch={"x": 1})), "bad entry"),
    ],
)
def test_load_bench_malformed(tmp_path: Path, bench: Any, needle: str) -> None:
    p = tmp_path / "bench.json"
    p.write_text(json.dumps(bench))
    with pytest.raises(InputError) as e:
        BenchReport.load(p)
    assert needle in e.value.message and "resnet-serving bench --out bench-results" in e.value.message


def test_load_bench_accepts_a_good_one(tmp_path: Path) -> None:
    p = tmp_path / "bench.json"
    p.write_text(json.dumps(tiny_bench()))
    assert BenchReport.load(p).to_dict() == tiny_bench()
