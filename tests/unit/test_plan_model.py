"""The plan's arithmetic on small hand-checked cases: the latency model, zone headroom, prices, sizing.

The open-load (flow-equivalent server) model itself is tested in test_plan_open_load.py."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resnet_serving.bench.result import BenchReport
from resnet_serving.plan.latency import LatencyModel, Point
from resnet_serving.plan.planner import Load, load_from_args, make_plan, zone_spread
from resnet_serving.plan.prices import load_prices, tiered_cost
from tests.helpers.plan import tiny_bench


def _model() -> LatencyModel:
    # D = 50 ms, mu = 40/s: B(n) = max(50, 25 n) ms
    pts = (Point(1, 20, 60), Point(4, 40, 130), Point(8, 40, 230))
    return LatencyModel(pts, service_ms=50.0)


def test_latency_model_interpolates_the_tail_factor() -> None:
    m = _model()
    assert m.mu == 40
    assert m.bound_ms(1) == 50 and m.bound_ms(4) == 100 and m.bound_ms(8) == 200
    # k(1) = 1.2, k(4) = 1.3; at n = 2: k = 1.2 + 1/3 * 0.1, B = 50
    assert m.p99_at_concurrency(2) == pytest.approx((1.2 + 0.1 / 3) * 50)
    # the measured points are reproduced exactly
    for p in m.points:
        assert m.p99_at_concurrency(p.concurrency) == pytest.approx(p.p99_ms)


def test_latency_model_follows_the_asymptote_past_the_ends() -> None:
    m = _model()
    # past c=8: k(8) = 1.15, B(16) = 400
    assert m.p99_at_concurrency(16) == pytest.approx(1.15 * 400)
    # below c=1: B stays at D, so p99 stays at the first point's
    assert m.p99_at_concurrency(0.2) == pytest.approx(60)


def test_latency_at_rate_follows_the_flow_equivalent_chain_and_saturates() -> None:
    m = _model()
    # mu(n): 20, 20 + 20/3, 20 + 40/3, then 40 from n = 4 on. At 20/s the chain's weights are
    # 1, 1, 3/4, 9/20, 9/40, then 9/40 * (1/2)^j: Z = 3.65, sum n w(n) = 1 + 1.5 + 1.35 + 0.9 + 9/40 * (4 + 2)
    assert m.in_flight(20) == pytest.approx(6.1 / 3.65)
    assert m.saturation == 40
    assert math.isinf(m.in_flight(40)) and math.isinf(m.p99_at_rate(40)) and math.isinf(m.p99_at_rate(50))
    r = m.max_rate_for(100)
    assert 0 < r < m.saturation
    assert m.p99_at_rate(r) <= 100 < m.p99_at_rate(r + 0.001 * m.saturation)


@pytest.mark.parametrize(("base", "total"), [(1, 3), (2, 3), (3, 6), (4, 6), (5, 9), (86, 129)])
def test_zone_spread_any_two_of_three_zones_carry_the_load(base: int, total: int) -> None:
    assert zone_spread(base, 3) == total
    assert 2 * (total // 3) >= base


def test_tiered_cost_crosses_tiers() -> None:
    tiers = [[333_000_000, 3.5], [667_000_000, 2.8], [None, 1.51]]
    assert tiered_cost(1_000_000, tiers) == pytest.approx(3.5)
    # 333 M at 3.50 + 667 M at 2.80 + 1 000 M at 1.51
    assert tiered_cost(2_000_000_000, tiers) == pytest.approx(333 * 3.5 + 667 * 2.8 + 1000 * 1.51)


def test_users_become_rps_only_through_think_time() -> None:
    load = load_from_args(None, 10_000, 10)
    assert load.rps == 1000 and "think time" in load.how


def test_plan_sizes_eks_by_hand() -> None:
    """tiny_bench: mu 40/s per 2-vCPU pod; a loose p99 leaves the 0.7 cap binding: 28 req/s per pod."""
    prices = load_prices(None, "us-east-1")
    plan = make_plan(BenchReport.parse(tiny_bench()), prices, Load(280, ""), p99_ms=10_000, utilisation=0.7)
    eks = plan.rows[0]
    assert eks.option == "EKS on-demand"
    assert eks.per_unit_rps == pytest.approx(28)
    assert (eks.base_units, eks.total_units, eks.headroom_units) == (10, 15, 5)
    # c5.2xlarge: 8 vCPU - 0.5 reserved = 3 pods of 2 vCPU; 15 pods = 5 per AZ = 2 nodes per AZ = 6 nodes
    assert "15 pods on 6 × c5.2xlarge" in eks.units
    node = prices.entry("ec2_on_demand", "c5.2xlarge")["usd_per_hour"]
    fixed = eks.usd_month - 6 * node * 730
    assert fixed > prices.entry("eks_cluster")["usd_per_hour"] * 730  # control plane + ALB
    sm = next(r for r in plan.rows if r.option == "SageMaker real-time ml.m5.xlarge")
    # 4 vCPU = twice the bench machine: 56 req/s per instance, 5 instances for the load, 9 across 3 zones
    assert sm.per_unit_rps == pytest.approx(56) and (sm.base_units, sm.total_units) == (5, 9)
    assert sm.estimated and "EXTRAPOLATED from 2 to 4" in sm.note
    assert plan.values["autoscaling"]["minReplicas"] == 15
    assert plan.values["autoscaling"]["targetCPUUtilizationPercentage"] == 70


def _serverless(bench: dict, rps: float) -> Any:
    plan = make_plan(BenchReport.parse(bench), load_prices(None, "us-east-1"), Load(rps, ""), p99_ms=10_000)
    return next(r for r in plan.rows if r.option == "SageMaker serverless")


def test_serverless_within_its_limits_is_priced_per_gb_second() -> None:
    # c=1: 20 req/s, so 50 ms per request; 60 req/s need 3 concurrent invocations
    row = _serverless(tiny_bench(), 60)
    prices = load_prices(None, "us-east-1")
    sv = prices.entry("sagemaker_serverless")
    per_month = 60 * 3600 * 730
    gb = 1024 / 1024  # no memory figures in tiny_bench: the smallest size fits
    data_gb = per_month * (60_000 + 1024) / 1e9
    assert row.total_units == 3 and "1024 MB" in row.units
    expected = per_month * 0.05 * gb * sv["usd_per_gb_second"] + data_gb * sv["data_processing_usd_per_gb"]
    assert row.usd_month == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mutate", "rps", "needle"),
    [
        (lambda b: None, 4020, "needs 201 concurrent invocations"),
        (lambda b: b.update(memory={"frontend_rss_mb": 300, "worker_rss_mb": [5000]}), 10, "above 6144 MB"),
        (lambda b: b["environment"]["payload"].update(bytes=5 * 2**20), 10, "payload 5.0 MB is above 4 MB"),
    ],
)
def test_serverless_outside_its_limits_is_not_possible(mutate: Any, rps: float, needle: str) -> None:
    bench = tiny_bench()
    mutate(bench)
    row = _serverless(bench, rps)
    assert row.units == "not possible" and row.usd_month is None and needle in row.note
