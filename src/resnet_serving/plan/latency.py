"""p99 latency of one pod as a function of its load, from the bench's measured latency against concurrency.

The bench drives TorchServe with a closed loop: at concurrency ``c`` exactly ``c`` requests are in flight, it
measures throughput ``X(c)`` and p99 ``P(c)``. The model works in that coordinate, requests in flight ``n``:

* **Asymptotic bound.** A closed queueing system's mean response time is at least
  ``B(n) = max(D, n / mu)``: ``D`` is one request's service time with nothing queued (the raw forward pass of
  one image in one worker, measured by the bench) and ``mu`` the saturation throughput (the best served
  throughput among the points used). Below the knee a request only waits for itself; above it, each extra
  request in flight adds one service interval ``1 / mu``.
* **Measured points.** Each point has a tail factor ``k(c) = P(c) / B(c)``. Between measured concurrencies
  ``k`` is interpolated linearly in ``n`` and ``P(n) = k(n) * B(n)``; past the last (or before the first)
  measured point ``k`` is held at the end point's value, so ``P`` follows the asymptotic bound from there:
  it grows by one service interval per request in flight.
* **Open load.** A pod in production gets requests from many users, not from a closed loop. At ``lam``
  requests/s its mean number in flight is that of an M/M/w queue (Poisson arrivals, ``w`` = TorchServe
  workers, total service rate ``mu``): ``n = w*rho + C(w, w*rho) * rho / (1 - rho)`` with ``rho = lam / mu``
  and ``C`` the Erlang C probability of waiting. The pod's p99 at ``lam`` is ``P(n)``; at ``rho >= 1`` it is
  unbounded.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resnet_serving.plan.capacity import forward_time_ms, level_img_s


@dataclass(frozen=True)
class Point:
    concurrency: float
    img_s: float
    p99_ms: float


def bench_points(bench: Mapping[str, Any]) -> list[Point]:
    """The bench's served levels without failed requests, by concurrency.

    With ``--repeat`` a level keeps every round; its point is then the median over the rounds of throughput and
    of p99 (one round's p99 rests on its one or two slowest requests, so a single stall moves it).
    """
    pts = []
    for r in bench["served"]:
        if r.get("failed"):
            continue
        rounds = r.get("rounds") or [r]
        p99 = statistics.median(float(x["p99_ms"]) for x in rounds)
        pts.append(Point(float(r["concurrency"]), level_img_s(r), p99))
    return sorted(pts, key=lambda p: p.concurrency)


@dataclass(frozen=True)
class LatencyModel:
    points: tuple[Point, ...]
    service_ms: float  # D: one image's forward pass in one worker, nothing queued
    workers: int

    @classmethod
    def from_bench(cls, bench: Mapping[str, Any], points: Sequence[Point] | None = None) -> LatencyModel:
        pts = tuple(points if points is not None else bench_points(bench))
        if not pts:
            raise ValueError("a latency model needs at least one measured point")
        return cls(pts, forward_time_ms(bench), int(bench["serve_config"]["workers"]))

    @property
    def mu(self) -> float:
        """Saturation throughput (requests/s): the best served throughput among the points."""
        return max(p.img_s for p in self.points)

    def bound_ms(self, n: float) -> float:
        return max(self.service_ms, 1000.0 * n / self.mu)

    def tail_factor(self, n: float) -> float:
        pts = self.points
        ks = [p.p99_ms / self.bound_ms(p.concurrency) for p in pts]
        if n <= pts[0].concurrency:
            return ks[0]
        if n >= pts[-1].concurrency:
            return ks[-1]
        for i in range(len(pts) - 1):
            a, b = pts[i].concurrency, pts[i + 1].concurrency
            if a <= n <= b:
                return ks[i] + (n - a) / (b - a) * (ks[i + 1] - ks[i])
        raise AssertionError("unreachable: n lies between the first and last point")

    def p99_at_concurrency(self, n: float) -> float:
        """p99 (ms) with ``n`` requests in flight on one pod."""
        return self.tail_factor(n) * self.bound_ms(n)

    def in_flight(self, rate: float) -> float:
        """Mean requests in flight on one pod receiving ``rate`` requests/s (M/M/w); inf at saturation."""
        rho = rate / self.mu
        if rho >= 1:
            return math.inf
        return mmc_in_system(self.workers, rho)

    def p99_at_rate(self, rate: float) -> float:
        """p99 (ms) of one pod receiving ``rate`` requests/s; inf at or past saturation."""
        n = self.in_flight(rate)
        return math.inf if math.isinf(n) else self.p99_at_concurrency(n)

    def max_rate_for(self, p99_ms: float, *, step: float = 0.001) -> float:
        """The highest per-pod rate (requests/s) whose p99, and every lower rate's, stays within ``p99_ms``."""
        best = 0.0
        rho = step
        while rho < 1:
            if self.p99_at_rate(rho * self.mu) > p99_ms:
                break
            best = rho * self.mu
            rho += step
        return best


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with ``servers`` and offered load ``load`` (Erlangs)."""
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    # the Erlang B recursion, then C from B: numerically stable for any number of servers
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    rho = load / servers
    return b / (1 - rho + rho * b)


def mmc_in_system(servers: int, rho: float) -> float:
    """Mean number in an M/M/c system at per-server utilisation ``rho`` (< 1)."""
    load = servers * rho
    return load + erlang_c(servers, load) * rho / (1 - rho)


def leave_one_out(bench: Mapping[str, Any]) -> list[dict[str, float]]:
    """Each measured point's p99 predicted from the other points only, with the relative error."""
    pts = bench_points(bench)
    out = []
    for i, p in enumerate(pts):
        model = LatencyModel.from_bench(bench, pts[:i] + pts[i + 1 :])
        predicted = model.p99_at_concurrency(p.concurrency)
        out.append(
            {
                "concurrency": p.concurrency,
                "measured_p99_ms": p.p99_ms,
                "predicted_p99_ms": predicted,
                "error": (predicted - p.p99_ms) / p.p99_ms,
            }
        )
    return out
