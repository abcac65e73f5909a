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
* **Open load: a flow-equivalent server.** A pod in production gets Poisson arrivals from many users, not a
  closed loop. By Norton's theorem for queueing networks (Chandy, Herzog and Woo) the pod is replaced by one
  server whose rate with ``n`` requests in flight is the closed-loop throughput at ``n``:
  ``mu(n) = X(n)``, linear between measured concurrencies, ``n * X(c1) / c1`` up to the first one and held at
  the last one's ``X`` past it. That captures what a worker count cannot: a batching worker serves a lone
  request at batch 1 and a queue at its full batch. At ``lam`` requests/s the pod is the birth–death chain
  ``p(n) ∝ prod_{k<=n} lam / mu(k)``; past the last point it is geometric with ratio ``lam / X(last)``, so
  its mass is summed in closed form and the explicit states stop where the rest holds under 1e-9 (or at
  ``MAX_STATES``). At ``lam >= X(last)`` the chain has no stationary state: unbounded.
* **p99 under open load.** By PASTA a request arrives to the chain's ``n`` in flight and then runs as in the
  closed loop at ``n + 1``: latency with mean ``R(n+1) = (n+1) / X(n+1)`` (Little's law in the closed loop)
  and p99 ``P(n+1)``, taken as a shifted exponential pinned to both (an assumed shape, checked against the
  smoke bench's p95, which it is not fitted to). The pod's p99 is the 99th percentile of
  that mixture over ``p(n)``. Not ``P(n_mean)``: the mean queue ignores how the queue varies and is optimistic
  by more the busier the pod; nor the 99th percentile of ``P(n+1)`` over ``p(n)``, which stacks a tail state
  on a tail latency and errs high. For M/M/1 (constant ``X``, Erlang closed-loop latencies) the mixture is
  within 5% of the exact ``ln(100) / (mu - lam)`` and the other two are not (tests/unit/test_plan_open_load.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from resnet_serving.bench.result import BenchReport
from resnet_serving.plan.capacity import forward_time_ms

#: the chain's explicit states stop where the states past them hold less than this share of the mass
TAIL_MASS = 1e-9
#: at most this many explicit states past the last measured concurrency (reached only within ~2e-5 of saturation)
MAX_STATES = 1_000_000
QUANTILE = 0.99
_LN_TAIL = math.log(1 / (1 - QUANTILE))  # an exponential's p99 in units of its mean

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Point:
    concurrency: float
    img_s: float
    p99_ms: float


def bench_points(bench: BenchReport) -> list[Point]:
    """The bench's served levels without failed requests, by concurrency.

    With ``--repeat`` a level keeps every round; its point is then the median over the rounds of throughput and
    of p99 (one round's p99 rests on its one or two slowest requests, so a single stall moves it).
    """
    pts = [Point(float(r.concurrency), r.median_img_s, r.median_p99_ms) for r in bench.served if not r.failed]
    return sorted(pts, key=lambda p: p.concurrency)


@dataclass(frozen=True)
class InFlight:
    """The stationary distribution of requests in flight on one pod under Poisson arrivals."""

    p: Floats  # p[n], n = 0 .. len(p) - 1
    beyond: float  # the mass of the states past len(p) - 1
    mean: float  # over every state, the geometric tail summed in closed form


@dataclass(frozen=True)
class LatencyModel:
    points: tuple[Point, ...]
    service_ms: float  # D: one image's forward pass in one worker, nothing queued

    @classmethod
    def from_bench(cls, bench: BenchReport, points: Sequence[Point] | None = None) -> LatencyModel:
        pts = tuple(points if points is not None else bench_points(bench))
        if not pts:
            raise ValueError("a latency model needs at least one measured point")
        return cls(pts, forward_time_ms(bench))

    @property
    def mu(self) -> float:
        """Saturation throughput (requests/s): the best served throughput among the points."""
        return max(p.img_s for p in self.points)

    @property
    def saturation(self) -> float:
        """The highest sustainable open-load rate (requests/s): the last point's throughput, held past it."""
        return self.points[-1].img_s

    def bound_ms(self, n: float) -> float:
        return max(self.service_ms, 1000.0 * n / self.mu)

    def tail_factor(self, n: float) -> float:
        return float(self._tail_factors(np.array([n], dtype=float))[0])

    def p99_at_concurrency(self, n: float) -> float:
        """p99 (ms) with ``n`` requests in flight on one pod."""
        return float(self._p99s(np.array([n], dtype=float))[0])

    def throughput(self, n: float) -> float:
        """Requests/s with ``n`` in flight: the flow-equivalent server's rate ``mu(n)``."""
        return float(self._throughputs(np.array([n], dtype=float))[0])

    def in_flight(self, rate: float) -> float:
        """Mean requests in flight on one pod receiving ``rate`` requests/s; inf at or past saturation."""
        dist = self.in_flight_distribution(rate)
        return math.inf if dist is None else dist.mean

    def in_flight_distribution(self, rate: float) -> InFlight | None:
        """``p(n) ∝ prod_{k<=n} rate / mu(k)``, in logs; None where ``rate`` is at or past saturation."""
        if rate <= 0:
            return InFlight(np.ones(1), 0.0, 0.0)
        sat = self.saturation
        if rate >= sat:
            return None
        n0 = max(1, math.ceil(self.points[-1].concurrency))  # mu(n) = sat for every n >= n0
        log_w = np.concatenate(([0.0], np.cumsum(math.log(rate) - np.log(self._throughputs(np.arange(1.0, n0 + 1))))))
        log_r = math.log(rate / sat)
        log_1mr = math.log(-math.expm1(log_r))
        # the states n > n0 weigh w(n0) r^(n - n0): a geometric series
        log_z = float(np.logaddexp(np.logaddexp.reduce(log_w), log_w[n0] + log_r - log_1mr))
        # the states past n0 + extra hold w(n0) r^(extra + 1) / (1 - r) / Z: the smallest extra that is <= TAIL_MASS
        need = (math.log(TAIL_MASS) + log_z - log_w[n0] + log_1mr) / log_r
        extra = min(MAX_STATES, max(0, math.ceil(need) - 1))
        beyond = math.exp(log_w[n0] + (extra + 1) * log_r - log_1mr - log_z)
        if beyond > TAIL_MASS and extra < MAX_STATES:  # `need` fell just onto the integer below
            extra, beyond = extra + 1, beyond * rate / sat
        p = np.exp(np.concatenate((log_w, log_w[n0] + log_r * np.arange(1.0, extra + 1))) - log_z)
        r = rate / sat
        head = float(np.dot(np.arange(n0 + 1.0), p[: n0 + 1]))
        tail = math.exp(log_w[n0] - log_z) * (n0 * r / (1 - r) + r / (1 - r) ** 2)
        return InFlight(p, beyond, head + tail)

    def p99_at_rate(self, rate: float) -> float:
        """p99 (ms) of one pod receiving ``rate`` requests/s; inf at or past saturation."""
        dist = self.in_flight_distribution(rate)
        if dist is None or dist.beyond >= 1 - QUANTILE:
            return math.inf
        a, b, p99s = self._arrival_latency(len(dist.p))
        lo, hi = float(p99s.min()), float(p99s.max())
        # the mixture's quantile lies between its parts' (up to the mass past the explicit states)
        while _mixture_cdf(dist.p, a, b, hi) < QUANTILE:
            lo, hi = hi, 2 * hi
        # bisect down to adjacent floats: hi is then the least float the mixture reaches the quantile at
        while True:
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                return hi
            if _mixture_cdf(dist.p, a, b, mid) < QUANTILE:
                lo = mid
            else:
                hi = mid

    def meets(self, rate: float, p99_ms: float) -> bool:
        """Whether one pod receiving ``rate`` requests/s keeps its p99 within ``p99_ms``."""
        dist = self.in_flight_distribution(rate)
        if dist is None:
            return False
        a, b, _ = self._arrival_latency(len(dist.p))
        return _mixture_cdf(dist.p, a, b, p99_ms) >= QUANTILE

    def max_rate_for(self, p99_ms: float, *, step: float = 0.001) -> float:
        """The highest per-pod rate (requests/s) on a grid of ``step`` × saturation whose p99, and every lower
        grid rate's, stays within ``p99_ms``."""
        best = 0.0
        i = 1
        while i * step < 1:
            rate = i * step * self.saturation
            if not self.meets(rate, p99_ms):
                break
            best = rate
            i += 1
        return best

    @cached_property
    def _curve(self) -> tuple[Floats, Floats, Floats]:
        """The measured points as arrays, built once: concurrency, throughput and tail factor ``k = P / B``
        (``max_rate_for`` evaluates the chain at up to a thousand rates)."""
        cs = np.array([p.concurrency for p in self.points])
        xs = np.array([p.img_s for p in self.points])
        ks = np.array([p.p99_ms / self.bound_ms(p.concurrency) for p in self.points])
        return cs, xs, ks

    def _tail_factors(self, ns: Floats) -> Floats:
        cs, _, ks = self._curve
        return np.interp(ns, cs, ks)  # linear between the points, held past either end

    def _p99s(self, ns: Floats) -> Floats:
        return self._tail_factors(ns) * np.maximum(self.service_ms, 1000.0 * ns / self.mu)

    def _throughputs(self, ns: Floats) -> Floats:
        cs, xs, _ = self._curve
        return np.where(ns < cs[0], ns * (xs[0] / cs[0]), np.interp(ns, cs, xs))

    def _arrival_latency(self, states: int) -> tuple[Floats, Floats, Floats]:
        """Per arrival state n = 0 .. states - 1: the shift ``a`` and scale ``b`` (ms) of the shifted exponential
        with the closed loop's mean and p99 at ``n + 1`` in flight, and that p99."""
        m = np.arange(1.0, states + 1)
        p99 = self._p99s(m)
        mean = 1000.0 * m / self._throughputs(m)
        b = np.maximum(p99 - mean, 0.0) / (_LN_TAIL - 1)
        a = mean - b
        # a p99 over ln(100) means: an exponential with that p99; a p99 at or under the mean: a point mass there
        wide = a < 0
        a, b = np.where(wide, 0.0, a), np.where(wide, p99 / _LN_TAIL, b)
        a = np.where(b > 0, a, p99)
        return a, b, p99


def _mixture_cdf(p: Floats, a: Floats, b: Floats, t: float) -> float:
    """P(latency <= t) for the mixture over arrival states with weights ``p`` of shifted exponentials."""
    z = np.maximum(t - a, 0.0) / np.where(b > 0, b, 1.0)
    part = np.where(b > 0, -np.expm1(-z), (t >= a).astype(float))
    return float(np.dot(p, part))


def leave_one_out(bench: BenchReport) -> list[dict[str, float]]:
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
