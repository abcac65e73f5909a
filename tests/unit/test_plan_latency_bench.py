"""The p99 model against a real bench: tests/fixtures/bench-smoke.json.

That file is a real, short `resnet-serving bench` run (2 vCPUs shared with other jobs, so its throughput is
below a quiet machine's; command in tests/fixtures/README.md). Leave-one-out: each measured concurrency's p99
is predicted by a model built from the OTHER levels only (interpolation inside, the asymptotic queueing model
past the ends) and must agree with the measurement within 25%.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from resnet_serving.bench.result import BenchReport
from resnet_serving.plan.latency import LatencyModel, bench_points, leave_one_out

SMOKE = Path(__file__).resolve().parents[1] / "fixtures" / "bench-smoke.json"


def test_fixture_is_a_real_bench_run() -> None:
    bench = BenchReport.load(SMOKE)
    assert [r.concurrency for r in bench.served] == [1, 2, 4, 8, 16]
    assert all(r.rounds is not None and len(r.rounds) == 3 and r.failed == 0 for r in bench.served)
    assert bench.environment.cpus_available == 2


def test_leave_one_out_p99_within_25_percent() -> None:
    rows = leave_one_out(BenchReport.load(SMOKE))
    assert [r["concurrency"] for r in rows] == [1, 2, 4, 8, 16]
    report = ", ".join(
        f"c={r['concurrency']:g}: measured {r['measured_p99_ms']:.0f} predicted {r['predicted_p99_ms']:.0f} "
        f"({r['error']:+.0%})"
        for r in rows
    )
    assert all(abs(r["error"]) <= 0.25 for r in rows), report


@pytest.mark.parametrize("held_out", [0, 2, 4])
def test_the_held_out_point_does_not_reach_its_own_prediction(held_out: int) -> None:
    """Scaling the held-out level's p99 by 10 leaves its prediction unchanged: the check is not circular."""
    bench = BenchReport.load(SMOKE)
    before = leave_one_out(bench)[held_out]["predicted_p99_ms"]
    changed = copy.deepcopy(bench.to_dict())
    level = changed["served"][held_out]
    for r in [level, *level["rounds"]]:
        r["p99_ms"] *= 10
    after = leave_one_out(BenchReport.parse(changed))[held_out]
    assert after["predicted_p99_ms"] == pytest.approx(before)
    assert after["measured_p99_ms"] == pytest.approx(10 * bench_points(bench)[held_out].p99_ms)


def test_full_model_reproduces_every_measured_point() -> None:
    bench = BenchReport.load(SMOKE)
    model = LatencyModel.from_bench(bench)
    for p in bench_points(bench):
        assert model.p99_at_concurrency(p.concurrency) == pytest.approx(p.p99_ms)
