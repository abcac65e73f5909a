"""The bench's reading of serve's histograms: real prometheus_client exposition text in, the window's split out."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from resnet_serving.bench import scrape
from resnet_serving.inference.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, STAGE_BUCKETS, STAGES


def _registry() -> tuple[CollectorRegistry, Histogram, Histogram, Histogram]:
    reg = CollectorRegistry()
    labels = ["model", "version"]
    request = Histogram(scrape.REQUEST, "t", [*labels, "code"], buckets=LATENCY_BUCKETS, registry=reg)
    stage = Histogram(scrape.STAGE, "t", [*labels, "stage"], buckets=STAGE_BUCKETS, registry=reg)
    batch = Histogram(scrape.BATCH, "t", labels, buckets=BATCH_BUCKETS, registry=reg)
    return reg, request, stage, batch


def test_window_is_the_difference_of_two_scrapes_summed_over_versions() -> None:
    reg, request, stage, batch = _registry()
    # before the window: traffic that must not count
    request.labels("resnet50", "1", "200").observe(9.0)
    stage.labels("resnet50", "1", "forward").observe(9.0)
    batch.labels("resnet50", "1").observe(32)
    before = scrape.parse(generate_latest(reg).decode())
    # the window: two versions (a switch), 4 batches of 2, and one 400 that the latency quantiles leave out
    for version in ("1", "2"):
        for _ in range(2):
            batch.labels("resnet50", version).observe(2)
            for s, seconds in zip(STAGES, (0.004, 0.002, 0.1, 0.001), strict=True):
                stage.labels("resnet50", version, s).observe(seconds)
            for _ in range(2):
                request.labels("resnet50", version, "200").observe(0.12)
    request.labels("resnet50", "2", "400").observe(0.001)
    w = scrape.window(before, scrape.parse(generate_latest(reg).decode()))
    assert w["batches"] == 4 and w["requests_ok"] == 8
    assert w["mean_batch_size"] == pytest.approx(2.0)
    assert w["stage_ms_per_batch"] == pytest.approx(
        {"decode": 4.0, "preprocess": 2.0, "forward": 100.0, "postprocess": 1.0}
    )
    assert w["handler_mean_ms"] == pytest.approx(120.0)
    # every observation sits in the (0.1, 0.15] bucket: the estimate interpolates inside it, as Prometheus does
    assert w["handler_p50_ms"] == pytest.approx(125.0)
    assert w["handler_p99_ms"] == pytest.approx(149.5)


def test_histogram_quantile_matches_prometheus_semantics() -> None:
    buckets = {0.1: 10.0, 0.2: 20.0, math.inf: 20.0}
    assert scrape.histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert scrape.histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    # a rank in the +Inf bucket: the largest finite bound
    assert scrape.histogram_quantile(0.99, {0.1: 1.0, math.inf: 5.0}) == pytest.approx(0.1)
    assert math.isnan(scrape.histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}))
    assert math.isnan(scrape.histogram_quantile(0.5, {}))


def test_an_idle_window_reports_no_numbers_rather_than_zeros() -> None:
    reg, *_ = _registry()
    snap = scrape.parse(generate_latest(reg).decode())
    w = scrape.window(snap, snap)
    assert w["batches"] == 0
    assert math.isnan(w["mean_batch_size"]) and math.isnan(w["handler_p99_ms"])
    assert all(math.isnan(v) for v in w["stage_ms_per_batch"].values())
