"""The open-load step of the p99 model (plan/latency.py): the flow-equivalent server's birth–death chain and the
p99 of the arrival-state mixture, against closed forms (M/M/1, infinite servers) and, on the checked-in smoke
bench, against a plain-Python recomputation of the pod count the plan gives."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from resnet_serving.bench.result import BenchReport
from resnet_serving.plan.latency import TAIL_MASS, LatencyModel, Point
from resnet_serving.plan.planner import Load, make_plan
from resnet_serving.plan.prices import load_prices

SMOKE = Path(__file__).resolve().parents[1] / "fixtures" / "bench-smoke.json"
LN100 = math.log(100)


def erlang_p99_s(c: int, mu: float) -> float:
    """p99 (s) of an Erlang(c, mu) time: a closed loop of c requests on one exponential server at rate mu."""

    def cdf(t: float) -> float:
        x, term, below = mu * t, math.exp(-mu * t), 0.0
        for k in range(c):
            below += term
            term *= x / (k + 1)
        return 1 - below

    lo, hi = 0.0, 10 * (c + 10) / mu
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < 0.99 else (lo, mid)
    return hi


def mm1_model(mu: float = 10.0, top: int = 200) -> LatencyModel:
    """What the bench would measure on one exponential server: X(c) = mu, latency Erlang(c, mu)."""
    pts = tuple(Point(c, mu, 1000 * erlang_p99_s(c, mu)) for c in range(1, top + 1))
    return LatencyModel(pts, service_ms=1000 / mu)


def test_throughput_follows_the_measured_points() -> None:
    m = LatencyModel((Point(2, 10, 300), Point(4, 16, 500), Point(8, 12, 900)), service_ms=100)
    assert m.throughput(0) == 0
    assert m.throughput(1) == pytest.approx(5)  # below the first point: its per-request rate, 10 / 2
    assert m.throughput(2) == pytest.approx(10) and m.throughput(3) == pytest.approx(13)
    assert m.throughput(6) == pytest.approx(14)  # falls between 4 and 8: the chain takes the dip as measured
    assert m.throughput(8) == m.throughput(100) == m.saturation == 12
    assert m.mu == 16  # the best level, which the planner's utilisation is a share of


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("concurrencies", [(1,), (1, 3, 8), (2, 16)])
def test_constant_throughput_is_mm1(rho: float, concurrencies: tuple[int, ...]) -> None:
    """X(n) = mu for every n >= 1: the chain is M/M/1, geometric with mean rho / (1 - rho)."""
    mu = 10.0
    m = LatencyModel(tuple(Point(c, mu, 200.0 * c) for c in concurrencies), service_ms=100)
    # below the first point the rate is n * X(c1) / c1: constant only when the first point is c = 1
    if concurrencies[0] != 1:
        m = LatencyModel((Point(1, mu, 200.0), *m.points), service_ms=100)
    dist = m.in_flight_distribution(rho * mu)
    assert dist is not None
    assert m.in_flight(rho * mu) == pytest.approx(rho / (1 - rho), rel=1e-6)
    assert dist.mean == pytest.approx(rho / (1 - rho), rel=1e-6)
    for n in (0, 1, 5, 50):
        if n < len(dist.p):
            assert dist.p[n] == pytest.approx((1 - rho) * rho**n, rel=1e-9)
    # the truncation is bounded as promised, and the explicit states plus the rest are the whole mass
    assert dist.beyond <= TAIL_MASS
    assert math.fsum(dist.p) + dist.beyond == pytest.approx(1, abs=1e-12)
    assert dist.beyond == pytest.approx(rho ** len(dist.p), rel=1e-6)


@pytest.mark.parametrize("points", [((1, 3.0), (64, 192.0)), ((64, 192.0),)])
@pytest.mark.parametrize("lam", [0.5, 6.0, 30.0])
def test_linear_throughput_is_infinite_servers(points: tuple[tuple[int, float], ...], lam: float) -> None:
    """X(n) = n * mu1 (to far past where the mass lies): the chain is M/M/inf, Poisson with mean lam / mu1."""
    mu1 = 3.0
    m = LatencyModel(tuple(Point(c, x, 100.0 * c) for c, x in points), service_ms=300)
    dist = m.in_flight_distribution(lam)
    assert dist is not None
    a = lam / mu1
    for n in range(30):
        assert dist.p[n] == pytest.approx(math.exp(-a) * a**n / math.factorial(n), abs=1e-12)
    assert dist.mean == pytest.approx(a, rel=1e-9)


@pytest.mark.parametrize("rho", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_mixture_p99_is_the_exact_mm1_p99(rho: float) -> None:
    """Fed what one exponential server measures in a closed loop, the open-load p99 is M/M/1's exact
    ln(100) / (mu - lam) within 5%; the two cruder readings the module docstring rejects are not."""
    mu = 10.0
    m = mm1_model(mu)
    exact = 1000 * LN100 / (mu - rho * mu)
    assert m.p99_at_rate(rho * mu) == pytest.approx(exact, rel=0.05)
    if rho >= 0.3:
        n99 = math.ceil(math.log(0.01) / math.log(rho)) - 1  # P(N <= n99) = 1 - rho^(n99 + 1) >= 0.99
        assert m.p99_at_concurrency(n99 + 1) > 1.2 * exact
    if rho >= 0.5:
        assert m.p99_at_concurrency(rho / (1 - rho) + 1) < 0.8 * exact


@pytest.mark.parametrize("source", ["smoke", "mm1", "dip"])
def test_p99_never_falls_as_the_load_rises_and_is_unbounded_at_saturation(source: str) -> None:
    if source == "smoke":
        m = LatencyModel.from_bench(BenchReport.load(SMOKE))
    elif source == "mm1":
        m = mm1_model(top=40)
    else:  # throughput that dips past its best, as the smoke bench's does at c = 16
        m = LatencyModel((Point(1, 8, 150), Point(4, 14, 400), Point(8, 9, 1000)), service_ms=120)
    sat = m.saturation
    rates = [sat * i / 400 for i in range(1, 400)]
    p99s = [m.p99_at_rate(r) for r in rates]
    assert all(math.isfinite(x) for x in p99s)
    drops = [(rates[i + 1], a, b) for i, (a, b) in enumerate(itertools.pairwise(p99s)) if b < a]
    assert not drops, drops
    # the lone request's p99 at no load; unbounded at and past the held last throughput, as before
    assert m.p99_at_rate(1e-9) == pytest.approx(m.points[0].p99_ms, rel=1e-6)
    for r in (sat, 1.5 * sat):
        assert math.isinf(m.p99_at_rate(r)) and math.isinf(m.in_flight(r)) and not m.meets(r, 1e12)
    assert m.max_rate_for(1e12) < sat


def test_meets_agrees_with_p99_at_rate() -> None:
    m = LatencyModel.from_bench(BenchReport.load(SMOKE))
    for rate in (0.5, 3.0, 8.0, 9.9):
        p99 = m.p99_at_rate(rate)
        assert m.meets(rate, p99) and not m.meets(rate, p99 * (1 - 1e-12))


def _smoke_pods_by_hand(p99_target: float, rps: float, utilisation: float, azs: int) -> tuple[float, int]:
    """The per-pod rate and pod count for the smoke bench, recomputed here in plain Python from the bench's
    numbers and the model's definitions (module docstring), without the module's chain or mixture code."""
    bench = BenchReport.load(SMOKE).to_dict()
    levels = []
    for r in bench["served"]:
        if r["failed"]:
            continue
        rounds = r.get("rounds") or [r]
        assert len(rounds) % 2 == 1  # so the median over the rounds is the middle one
        x = sorted(float(q["img_s"]) for q in rounds)[len(rounds) // 2]
        p = sorted(float(q["p99_ms"]) for q in rounds)[len(rounds) // 2]
        levels.append((float(r["concurrency"]), x, p))
    levels.sort()
    by_batch = bench["raw"]["img_s_by_batch"]
    d = 1000 / (by_batch[min(by_batch, key=int)] / bench["serve_config"]["workers"])
    best = max(x for _, x, _ in levels)

    def lerp(n: float, values: list[float]) -> float:
        cs = [lv[0] for lv in levels]
        if n <= cs[0]:
            return values[0]
        for i, c1 in enumerate(cs[1:], 1):
            if n <= c1:
                c0, v0, v1 = cs[i - 1], values[i - 1], values[i]
                return v0 + (n - c0) / (c1 - c0) * (v1 - v0)
        return values[-1]

    def x_at(n: float) -> float:
        c1, x1, _ = levels[0]
        return n * x1 / c1 if n < c1 else lerp(n, [lv[1] for lv in levels])

    def p99_at(n: float) -> float:
        k = lerp(n, [p / max(d, 1000 * c / best) for c, _, p in levels])
        return k * max(d, 1000 * n / best)

    def meets(lam: float) -> bool:
        w, probs, n = 1.0, [1.0], 0
        while n < levels[-1][0] or w > 1e-15:  # past the last level the weights fall geometrically
            n += 1
            w *= lam / x_at(n)
            probs.append(w)
        z = sum(probs)
        done = 0.0
        for n, pn in enumerate(probs):
            mean, p99 = 1000 * (n + 1) / x_at(n + 1), p99_at(n + 1)
            b = (p99 - mean) / (LN100 - 1)
            a = mean - b
            assert b > 0 and a >= 0  # this bench needs neither of the model's edge cases
            done += pn / z * (1 - math.exp(-(p99_target - a) / b) if p99_target > a else 0.0)
        return done >= 0.99

    sat = levels[-1][1]
    rate, i = 0.0, 1
    while i * 0.001 < 1 and meets(i * 0.001 * sat):
        rate, i = i * 0.001 * sat, i + 1
    per_pod = min(rate, utilisation * best)
    base = math.ceil(rps / per_pod)
    return per_pod, azs * math.ceil(base / (azs - 1))


@pytest.mark.parametrize(("p99_ms", "rps"), [(500, 1000), (1000, 200)])
def test_smoke_bench_pod_count_is_the_models(p99_ms: float, rps: float) -> None:
    per_pod, pods = _smoke_pods_by_hand(p99_ms, rps, 0.7, 3)
    plan = make_plan(BenchReport.load(SMOKE), load_prices(None, "us-east-1"), Load(rps, ""), p99_ms=p99_ms)
    eks = plan.rows[0]
    assert eks.option == "EKS on-demand"
    assert eks.per_unit_rps == pytest.approx(per_pod, rel=1e-9)
    assert eks.total_units == pods
    assert plan.values["autoscaling"]["minReplicas"] == pods


def test_the_per_state_shape_predicts_the_measured_p95() -> None:
    """The shifted exponential is an assumption about each state's latency; pinned to a level's mean (Little's
    law) and p99, it must put that level's p95, which it was not fitted to, within 12% of the bench's."""
    bench = BenchReport.load(SMOKE)
    m = LatencyModel.from_bench(bench)
    a, b, _ = m._arrival_latency(16)
    for level in bench.to_dict()["served"]:
        c = int(level["concurrency"])
        measured = sorted(float(q["p95_ms"]) for q in level["rounds"])[1]  # the median of the three rounds
        implied = a[c - 1] + b[c - 1] * math.log(20)
        assert implied == pytest.approx(measured, rel=0.12), (c, implied, measured)
