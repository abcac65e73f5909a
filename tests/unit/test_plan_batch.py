"""`resnet-serving plan --batch-images N --deadline D` (issue #30): the fewest units whose rate × deadline covers
the images, on the checked-in bench; spot below on-demand; the JSON fields; bad flags as clear errors (exit 2, no
traceback); a GPU bench never scaled to CPU types; and the commands docs/how-to/capacity.md shows, run."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import pytest

from resnet_serving.cli import main
from resnet_serving.plan import prices as prices_mod
from resnet_serving.plan.batch import BATCH_EFFICIENCY, parse_duration
from tests.helpers import REPO
from tests.helpers.docs_pages import block
from tests.helpers.plan import tiny_bench

BENCH = REPO / "tests" / "fixtures" / "bench-2vcpu.json"
MILLION_IN_2H = ["--batch-images", "1000000", "--deadline", "2h", "--bench", str(BENCH), "--region", "eu-west-1"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["plan", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def batch_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> tuple[str, dict[str, Any]]:
    out_json = tmp_path / "batch-plan.json"
    rc, out, err = run(capsys, *argv, "--json", str(out_json))
    assert rc == 0, err
    return out, json.loads(out_json.read_text())


def _bench() -> dict[str, Any]:
    return dict(json.loads(BENCH.read_text()))


def _rows(doc: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [r for r in doc["rows"] if r["option"].startswith(prefix)]


def test_units_are_the_fewest_that_cover_the_images_by_the_deadline(capsys, tmp_path: Path) -> None:
    _, doc = batch_json(capsys, tmp_path, *MILLION_IN_2H)
    n, deadline = doc["images"], doc["deadline_s"]
    assert (n, deadline) == (1_000_000, 7200) and doc["needed_img_s"] == pytest.approx(n / deadline)
    assert len(doc["rows"]) > 2
    for r in doc["rows"]:
        units, rate = r["unit_count"], r["per_unit_img_s"]
        assert units * rate * deadline >= n, r["option"]
        assert (units - 1) * rate * deadline < n, r["option"]
        assert r["wall_s"] == pytest.approx(n / (units * rate)) and r["wall_s"] <= deadline
    raw, served, cpus = _bench()["raw"], _bench()["served"], _bench()["environment"]["cpus_available"]
    pod_rate = max(raw["img_s_by_batch"].values()) * BATCH_EFFICIENCY  # a pod has the bench's vCPUs: no scaling
    for r in _rows(doc, "EKS"):
        assert r["per_unit_img_s"] == pytest.approx(pod_rate) and r["rate_source"] == "raw"
        assert r["shards"] == r["unit_count"] and r["instance_type"] == "c5.2xlarge"
        assert r["nodes"] == math.ceil(r["unit_count"] / 3)  # c5.2xlarge: (8 - 0.5) // 2 vCPU pods
        assert r["billed_hours"] == pytest.approx(r["nodes"] * r["wall_s"] / 3600)
    best_served = max(level["img_s"] for level in served if not level["failed"])
    ml_c5 = next(r for r in doc["rows"] if r["option"] == "SageMaker Batch Transform ml.c5.2xlarge")
    assert ml_c5["per_unit_img_s"] == pytest.approx(best_served / cpus * 8) and ml_c5["rate_source"] == "served"
    assert "EXTRAPOLATED from 2 to 8 vCPUs" in ml_c5["note"] and ml_c5["estimated"]


def test_spot_is_cheaper_than_on_demand_for_the_same_pods(capsys, tmp_path: Path) -> None:
    _, doc = batch_json(capsys, tmp_path, *MILLION_IN_2H)
    on_demand, spot = _rows(doc, "EKS Indexed Job, on-demand"), _rows(doc, "EKS Indexed Job, spot")
    assert len(on_demand) == len(spot) == 1
    assert spot[0]["unit_count"] == on_demand[0]["unit_count"] and spot[0]["nodes"] == on_demand[0]["nodes"]
    assert 0 < spot[0]["usd"] < on_demand[0]["usd"] and spot[0]["estimated"]
    prices = prices_mod.load_prices(None, "eu-west-1").data["ec2_on_demand"]["c5.2xlarge"]
    assert on_demand[0]["usd"] == pytest.approx(on_demand[0]["billed_hours"] * prices["usd_per_hour"])
    assert spot[0]["usd"] == pytest.approx(spot[0]["billed_hours"] * prices["spot_usd_per_hour"])


def test_the_table_says_the_rate_is_the_raw_models_and_unverified(capsys) -> None:
    rc, out, err = run(capsys, *MILLION_IN_2H)
    assert rc == 0, err
    flat = " ".join(out.split())
    assert "1,000,000 images within 2h (7,200 s): 138.9 images/s needed" in flat
    assert "raw model at its best batch (8)" in flat and f"× {BATCH_EFFICIENCY:g}" in flat
    assert "UNVERIFIED for batch run" in flat and "`bench --batch`" in flat
    assert "real-time rate, estimated: the prices file has no Batch Transform entry" in flat
    for head in ("option", "units", "shards", "nodes", "img/s/unit", "wall time", "billed h", "$ for the run"):
        assert head in out
    assert "Bench: " in out and "Prices: eu-west-1 from the packaged prices.json" in out
    assert "ec2_on_demand.c5.2xlarge (2026-12-07, estimated)" in out


def test_json_has_the_tables_fields_and_provenance(capsys, tmp_path: Path) -> None:
    _, doc = batch_json(capsys, tmp_path, *MILLION_IN_2H, "--instance-type", "ml.m5.xlarge")
    assert doc["efficiency"] == BATCH_EFFICIENCY and doc["rate_verified"] is False
    assert {"images", "deadline_s", "needed_img_s", "region", "prices_file", "raw_how", "served_how"} <= set(doc)
    fields = {"option", "units", "unit_count", "shards", "nodes", "instance_type", "per_unit_img_s", "rate_source",
              "wall_s", "billed_hours", "usd", "estimated", "note"}  # fmt: skip
    assert all(set(r) == fields for r in doc["rows"])
    assert [r["option"] for r in doc["rows"]] == [
        "EKS Indexed Job, on-demand nodes", "EKS Indexed Job, spot nodes", "SageMaker Batch Transform ml.m5.xlarge",
    ]  # fmt: skip
    assert doc["provenance"]["bench"]["file"] == str(BENCH)
    assert set(doc["provenance"]["prices"]["entries"]) == {
        "ec2_on_demand.c5.2xlarge",
        "sagemaker_realtime.ml.m5.xlarge",
    }


def test_a_batch_transform_entry_in_the_prices_is_used(capsys, tmp_path: Path) -> None:
    doc = json.loads(prices_mod._default_path().read_text(encoding="utf-8"))
    real_time = doc["regions"]["eu-west-1"]["sagemaker_realtime"]["ml.m5.large"]
    doc["regions"]["eu-west-1"]["sagemaker_batch_transform"] = {
        "ml.m5.large": {"usd_per_hour": 0.1, "source": "a test", "as_of": "2026-12-07", "estimated": False}
    }
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(doc))
    _, plan = batch_json(
        capsys, tmp_path, *MILLION_IN_2H, "--prices", str(prices), "--instance-type", "ml.m5.large",
        "--instance-type", "ml.m5.xlarge",
    )  # fmt: skip
    own, fallback = _rows(plan, "SageMaker Batch Transform")
    assert own["usd"] == pytest.approx(own["billed_hours"] * 0.1)
    assert own["usd"] != pytest.approx(own["billed_hours"] * real_time["usd_per_hour"])
    assert "Batch Transform entry" not in own["note"] and "Batch Transform entry" in fallback["note"]
    assert "sagemaker_batch_transform.ml.m5.large" in plan["provenance"]["prices"]["entries"]


def test_a_bad_batch_transform_entry_is_named(capsys, tmp_path: Path) -> None:
    doc = json.loads(prices_mod._default_path().read_text(encoding="utf-8"))
    doc["regions"]["eu-west-1"]["sagemaker_batch_transform"] = {"ml.m5.large": {"usd_per_hour": -1}}
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(doc))
    rc, _, err = run(capsys, *MILLION_IN_2H, "--prices", str(prices))
    assert rc == 2 and "sagemaker_batch_transform.ml.m5.large usd_per_hour is missing or not a positive" in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("7200", 7200), ("1.5h", 5400), (" 2H ", 7200),
     ("1h0m30s", 3630)],
)  # fmt: skip
def test_deadline_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--deadline", "2h"], "--deadline goes with --batch-images"),
        (["--batch-images", "1000"], "--batch-images needs --deadline"),
        (["--batch-images", "0", "--deadline", "2h"], "--batch-images must be a whole number of images above zero"),
        (["--batch-images=-5", "--deadline", "2h"], "--batch-images must be a whole number"),
        (["--batch-images", "1.5", "--deadline", "2h"], "--batch-images must be a whole number"),
        (["--batch-images", "many", "--deadline", "2h"], "got 'many'"),
        (["--batch-images", "1000", "--deadline", "0"], "--deadline must be a duration above zero"),
        (["--batch-images", "1000", "--deadline", "0m"], "--deadline must be a duration above zero"),
        (["--batch-images", "1000", "--deadline=-1h"], "--deadline must be a duration like 90m, 2h, 1h30m"),
        (["--batch-images", "1000", "--deadline", "2x"], "got '2x'"),
        (["--batch-images", "1000", "--deadline", "h"], "--deadline must be a duration"),
        (["--batch-images", "1000", "--deadline", ""], "--deadline must be a duration"),
        (["--batch-images", "1000", "--deadline", "nan"], "--deadline must be a duration above zero"),
        (["--batch-images", "1000", "--deadline", "inf"], "--deadline must be a duration above zero"),
        (["--batch-images", "1000", "--deadline", "2h", "--rps", "10"], "--rps: the serving plan's, not batch mode's"),
        (["--batch-images", "1000", "--deadline", "2h", "--p99-ms", "500", "--azs", "2"], "--p99-ms, --azs: the"),
        (["--batch-images", "1000", "--deadline", "2h", "--node-type", "t9.nano"], "unknown instance type 't9.nano'"),
        (["--rps", "10"], "--p99-ms is needed"),
        (["--p99-ms", "500"], "give the load as --rps R, or as --users U with --think-time S"),
    ],
)
def test_bad_flags_are_exit_2_with_a_clear_message(capsys, argv: list[str], needle: str) -> None:
    rc, out, err = run(capsys, *argv, "--bench", str(BENCH))
    assert rc == 2, (out, err)
    assert needle in err and "Traceback" not in err


def test_a_deadline_shorter_than_one_image_is_not_possible(capsys, tmp_path: Path) -> None:
    _, doc = batch_json(capsys, tmp_path, "--batch-images", "10", "--deadline", "0.005", "--bench", str(BENCH))
    assert all(r["units"] == "not possible" and r["usd"] is None for r in doc["rows"])
    assert all("longer than the deadline" in r["note"] for r in doc["rows"])


def _gpu_bench(tmp_path: Path) -> Path:
    b = tiny_bench()
    b["environment"].update(device="NVIDIA A10G", cpus_available=2)
    p = tmp_path / "bench-gpu.json"
    p.write_text(json.dumps(b))
    return p


def test_a_gpu_bench_is_priced_on_its_own_chip_and_never_scaled_by_vcpus(capsys, tmp_path: Path) -> None:
    _, doc = batch_json(capsys, tmp_path, "--batch-images", "100000", "--deadline", "1h", "--bench",
                        str(_gpu_bench(tmp_path)))  # fmt: skip
    b = tiny_bench()
    raw_best = max(b["raw"]["img_s_by_batch"].values())
    served_best = max(level["img_s"] for level in b["served"] if not level["failed"])
    for r in _rows(doc, "EKS"):
        assert r["instance_type"] == "g5.xlarge" and "(1 pods/node)" in r["units"]  # the cheapest A10G node
        assert r["per_unit_img_s"] == pytest.approx(raw_best * BATCH_EFFICIENCY)
    sm = _rows(doc, "SageMaker Batch Transform")
    assert sm and all(r["instance_type"].startswith("ml.g5.") for r in sm)
    # ml.g5.2xlarge has 8 vCPUs: one chip is one bench host, so the served rate is not multiplied by 8 / 2
    assert all(r["per_unit_img_s"] == pytest.approx(served_best) and "EXTRAPOLATED" not in r["note"] for r in sm)


@pytest.mark.parametrize("argv", [["--node-type", "c5.2xlarge"], ["--instance-type", "ml.m5.xlarge"]])
def test_a_gpu_bench_is_refused_on_cpu_types(capsys, tmp_path: Path, argv: list[str]) -> None:
    rc, _, err = run(capsys, "--batch-images", "1000", "--deadline", "1h", "--bench", str(_gpu_bench(tmp_path)), *argv)
    assert rc == 2 and "never scales a figure measured on one to the other" in err and "Traceback" not in err


def test_the_pages_batch_commands_run(capsys, tmp_path: Path, monkeypatch) -> None:
    commands = block("plan-batch")  # docs/how-to/capacity.md
    assert len(commands) == 2 and all(c.startswith("resnet-serving plan --batch-images ") for c in commands)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "fixtures").symlink_to(REPO / "tests" / "fixtures")
    monkeypatch.chdir(tmp_path)  # the page's --json file lands here, not in the checkout
    for command in commands:
        rc = main(shlex.split(command)[1:])
        out, err = capsys.readouterr()
        assert rc == 0, (command, err)
        assert "EKS Indexed Job, spot nodes" in out and "SageMaker Batch Transform" in out
    doc = json.loads((tmp_path / "batch-plan.json").read_text())
    assert doc["deadline_s"] == 5400 and {r["instance_type"] for r in doc["rows"]} == {"c7i.2xlarge", "ml.c7i.2xlarge"}
