"""Closed-loop HTTP load generator, run in its OWN process so the server it measures cannot starve it.

``python -m resnet_serving.bench.loadgen --url URL --concurrency N --duration S --payload FILE`` keeps N
requests in flight (N threads, one keep-alive connection each), counts completions inside the measuring
window (after a warm-up), and prints one JSON object:
completed/failed counts, throughput, latency percentiles and its own CPU seconds. Torch-free.

Throughput is each client's answered requests over the time they took, from the start of its first request that
began inside the window to the end of its last one that ended inside it, summed over the clients: requests are
back to back in a closed loop, so that span holds exactly those requests. A plain count over the window moves
in whole batches (8 answers at once, 2% of a 12 s window at 33 img/s); the span does not. The count over the
window is kept as ``img_s_count``, and it is the throughput where a client got fewer than two answers inside
the window (a server slower than the window).

It speaks HTTP/1.1 through the standard library's ``http.client``: it shares the CPUs with the server it
measures, and ``requests`` costs several times more CPU per request.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from resnet_serving.inference.formats import content_type_for

#: Our handler's successful body holds its predictions.
OK_TEXT = b'"predictions"'


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def run(
    url: str,
    payload: bytes,
    concurrency: int,
    duration: float,
    warmup: float,
    timeout: float,
    ok_text: bytes = OK_TEXT,
    honour_retry_after: bool = False,
) -> dict[str, Any]:
    """``ok_text``: what a 200 body must contain to count as answered (the stock TorchServe handler of
    ``bench --baseline`` answers another body than ours). ``honour_retry_after``: a client told to come back
    (503 or 429 with ``Retry-After``) waits that long before its next request; by default it sends at once, as a
    closed loop that ignores it does. Either way ``lost`` counts the failures that were not told to come back."""
    headers = {"Content-Type": content_type_for(payload)}
    start_measure = time.monotonic() + warmup
    stop_at = start_measure + duration
    lock = threading.Lock()
    latencies: list[float] = []
    failures: dict[str, int] = {}
    completed_in_window = 0
    #: Per client: (start of its first request inside the window, end of its last, answered requests between).
    spans: list[tuple[float, float, int]] = []
    #: Every response, in the window or not: a server slower than the window still shows that it answered.
    answered_total, failed_total = 0, 0
    #: Failures without a Retry-After (a 503 or 429 without one, a reset, a timeout, any other status).
    lost = 0

    target = urlsplit(url)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise ValueError(f"--url {url}: expected http(s)://host[:port]/path")
    conn_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    host = target.hostname
    path = (target.path or "/") + (f"?{target.query}" if target.query else "")

    def worker() -> None:
        nonlocal completed_in_window, answered_total, failed_total, lost
        conn = None
        first: float | None = None
        last, answered = 0.0, 0
        while True:
            t0 = time.monotonic()
            if t0 >= stop_at:
                if first is not None and last > first:
                    with lock:
                        spans.append((first, last, answered))
                return
            come_back = -1.0  # not told to come back
            try:
                if conn is None:
                    conn = conn_class(host, target.port, timeout=timeout)
                conn.request("POST", path, body=payload, headers=headers)
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200 and ok_text in body
                reason = "" if ok else f"HTTP {r.status}"
                if r.status in (429, 503):
                    come_back = _retry_after(r.getheader("Retry-After"))
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                ok, reason = False, type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            t1 = time.monotonic()
            with lock:
                answered_total += ok
                failed_total += not ok
                lost += not ok and come_back < 0
            if start_measure <= t0 and t1 < stop_at:  # wholly inside the window: part of this client's span
                first = t0 if first is None else first
                last, answered = t1, answered + ok
            # Count by completion time, so requests in flight across the window edges don't bias throughput.
            if start_measure <= t1 < stop_at:
                with lock:
                    if ok:
                        latencies.append(t1 - t0)
                        completed_in_window += 1
                    else:
                        failures[reason] = failures.get(reason, 0) + 1
            if honour_retry_after and come_back > 0:
                time.sleep(min(come_back, max(0.0, stop_at - time.monotonic())))

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + warmup + timeout + 30)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = sorted(latencies)
    # every client answered at least twice inside the window; else (a server slower than the window) the count
    spanned = len(spans) == concurrency and min(n for _, _, n in spans) >= 2
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "completed": completed_in_window,
        "failed": sum(failures.values()),
        "failures": failures,
        "answered_total": answered_total,
        "failed_total": failed_total,
        "lost": lost,
        "honour_retry_after": honour_retry_after,
        "img_s": sum(n / (end - begin) for begin, end, n in spans) if spanned else completed_in_window / duration,
        "img_s_count": completed_in_window / duration,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p95_ms": percentile(lat, 0.95) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "mean_ms": (sum(lat) / len(lat) * 1000) if lat else float("nan"),
        "client_cpu_s": cpu_s,
        "client_cpu_pct": 100.0 * cpu_s / (duration + warmup),
    }


def _retry_after(value: str | None) -> float:
    """Seconds a 503/429 asks the client to wait; -1 when it does not say (the request is then lost)."""
    try:
        return max(0.0, float(value)) if value is not None else -1.0
    except ValueError:
        return -1.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="resnet_serving.bench.loadgen")
    p.add_argument("--url", required=True)
    p.add_argument("--payload", type=Path, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--ok-text", default=OK_TEXT.decode(), help="what a 200 body must contain to count as answered")
    p.add_argument(
        "--honour-retry-after", action="store_true", help="wait as a 503/429's Retry-After says before the next request"
    )
    a = p.parse_args(argv)
    result = run(
        a.url,
        a.payload.read_bytes(),
        a.concurrency,
        a.duration,
        a.warmup,
        a.timeout,
        a.ok_text.encode(),
        honour_retry_after=a.honour_retry_after,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
