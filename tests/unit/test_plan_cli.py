"""`resnet-serving plan` through the real CLI entry point: every bad input is a clear error (exit 2), no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resnet_serving.cli import main
from resnet_serving.plan import prices as prices_mod
from tests.helpers.plan import tiny_bench


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    p = tmp_path / "bench.json"
    p.write_text(json.dumps(tiny_bench()))
    return p


def _packaged_prices() -> dict[str, Any]:
    return json.loads(prices_mod._default_path().read_text(encoding="utf-8"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["plan", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_plan_prints_the_table_and_the_users_assumption(bench_file: Path, capsys, tmp_path: Path) -> None:
    rc, out, _ = run(
        capsys, "--users", "2800", "--think-time", "10", "--p99-ms", "2000", "--bench", str(bench_file),
        "--json", str(tmp_path / "plan.json"), "--plot", str(tmp_path / "plan.png"),
    )  # fmt: skip
    assert rc == 0
    assert "2800 concurrent users × one request every 10 s of think time = 280 requests/s" in out
    for option in ("EKS on-demand", "EKS on-demand base + spot headroom", "SageMaker real-time ml.m5.xlarge",
                   "SageMaker serverless", "API Gateway (REST)", "Data transfer out", "CloudWatch"):  # fmt: skip
        assert option in out
    assert "(estimated)" in out and "EXTRAPOLATED" in out
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["load"]["rps"] == 280 and doc["p99_target_ms"] == 2000
    eks = doc["rows"][0]
    assert (eks["option"], eks["base_units"], eks["total_units"]) == ("EKS on-demand", 10, 15)
    target = doc["sagemaker_targets"]["ml.m5.xlarge"]
    # 20 req/s per vCPU × 4 vCPUs × 60 s × 0.7
    assert target["invocations_per_minute"] == 3360 and "EXTRAPOLATED" in target["how"]
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_bench_says_how_to_make_one(tmp_path: Path, capsys) -> None:
    rc, _, err = run(capsys, "--rps", "10", "--p99-ms", "500", "--bench", str(tmp_path / "none.json"))
    assert rc == 2
    assert "run `resnet-serving bench --out bench-results` to make one" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--rps", "0"], "--rps must be a positive"),
        (["--rps", "-5"], "--rps must be a positive"),
        (["--users", "0", "--think-time", "10"], "--users must be a positive"),
        (["--users", "100", "--think-time", "0"], "--think-time must be a positive"),
        (["--users", "100"], "--users needs --think-time"),
        (["--rps", "10", "--think-time", "3"], "--think-time goes with --users"),
        (["--rps", "10", "--p99-ms", "20"], "impossible: the model's own forward pass takes 50.0 ms"),
        (["--rps", "10", "--p99-ms", "55"], "below the p99 of a single request with nothing queued (60.0 ms"),
        (["--rps", "10", "--instance-type", "ml.z9.huge"], "unknown instance type 'ml.z9.huge'"),
        (["--rps", "10", "--node-type", "t9.nano"], "unknown instance type 't9.nano'"),
        (["--rps", "10", "--region", "mars-north-1"], "no prices for region 'mars-north-1'"),
        (["--rps", "10", "--utilisation", "1.5"], "--utilisation must be in (0, 1]"),
    ],
)
def test_bad_input_is_exit_2_with_a_clear_message(bench_file: Path, capsys, argv: list[str], needle: str) -> None:
    if "--p99-ms" not in argv:
        argv = [*argv, "--p99-ms", "1000"]
    rc, _, err = run(capsys, *argv, "--bench", str(bench_file))
    assert rc == 2, err
    assert needle in err and "Traceback" not in err


def test_load_flags_are_mutually_exclusive(bench_file: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["plan", "--rps", "10", "--users", "5", "--think-time", "1", "--p99-ms", "500"])
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def _mutated(mutate: Any) -> dict[str, Any]:
    doc = _packaged_prices()
    mutate(doc["regions"]["us-east-1"])
    return doc


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not a readable JSON prices file"),
        (json.dumps({"regions": []}), "expected an object with 'regions'"),
        (json.dumps(_mutated(lambda r: r["lambda"].pop("source"))), "lambda has no source"),
        (json.dumps(_mutated(lambda r: r["eks_cluster"].update(as_of="last week"))), "eks_cluster has no as_of"),
        (json.dumps(_mutated(lambda r: r["s3"].update(usd_per_gb_month=-1))), "s3 usd_per_gb_month is missing"),
        (json.dumps(_mutated(lambda r: r["ec2_on_demand"]["c5.2xlarge"].pop("vcpus"))), "c5.2xlarge vcpus"),
        (json.dumps(_mutated(lambda r: r["api_gateway_rest"].update(tiers=[[1, 2]]))), "ending with null"),
        (json.dumps(_mutated(lambda r: r["cloudwatch"].update(estimated="maybe"))), "estimated must be true"),
    ],
)
def test_malformed_prices_file(bench_file: Path, tmp_path: Path, capsys, content: str, needle: str) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(content)
    rc, _, err = run(capsys, "--rps", "10", "--p99-ms", "1000", "--bench", str(bench_file), "--prices", str(prices))
    assert rc == 2, err
    assert needle in err and str(prices) in err


def test_prices_override_changes_the_cost(bench_file: Path, tmp_path: Path, capsys) -> None:
    doc = _packaged_prices()
    doc["regions"]["us-east-1"]["sagemaker_realtime"] = {
        "ml.m5.xlarge": {"usd_per_hour": 1.0, "vcpus": 2, "memory_gib": 16, "source": "test", "as_of": "2026-01-01"}
    }
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(doc))
    out_json = tmp_path / "plan.json"
    rc, _, _ = run(
        capsys, "--rps", "28", "--p99-ms", "10000", "--bench", str(bench_file), "--prices", str(prices),
        "--json", str(out_json),
    )  # fmt: skip
    assert rc == 0
    sm = [r for r in json.loads(out_json.read_text())["rows"] if r["option"].startswith("SageMaker real-time")]
    # one 2-vCPU instance carries 28 req/s at 0.7 of 40; three across the zones, $1/h, 730 h
    assert len(sm) == 1 and sm[0]["total_units"] == 3 and sm[0]["usd_month"] == pytest.approx(3 * 730)
    assert sm[0]["estimated"] is False


def test_every_packaged_price_has_a_source_and_a_date() -> None:
    doc = _packaged_prices()
    for region in doc["regions"].values():
        for name, entry in region.items():
            entries = entry.values() if name in ("ec2_on_demand", "sagemaker_realtime") else [entry]
            for e in entries:
                assert e["source"].strip() and len(e["as_of"]) == 10 and isinstance(e.get("estimated"), bool), name
