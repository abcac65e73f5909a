"""The "Results on 2 vCPUs" figures of the 2-vCPU benchmark page (docs/measurements/2026-12-06-bench-2vcpu.md) are
those of ``tests/fixtures/bench-2vcpu.json``, the ``bench.json`` of the run the page presents as its default row
(tests/fixtures/README.md). A refreshed fixture with an unrefreshed page, or the other way round, fails here: the
figures live in the bench's output, and the page quotes them."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import REPO
from tests.helpers.docs_pages import BENCH_PAGE, section

BENCH = json.loads((REPO / "tests" / "fixtures" / "bench-2vcpu.json").read_text(encoding="utf-8"))
LEVELS = {r["concurrency"]: r for r in BENCH["served"]}


def _section(title: str) -> str:
    return section(BENCH_PAGE, title)


def _table_rows(section: str, header_start: str) -> list[list[str]]:
    lines = section[section.index(header_start) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_default_row_is_the_fixture() -> None:
    row = next(r for r in _table_rows(_section("Results on 2 vCPUs"), "| layout |") if r[0].startswith("default"))
    ratios = " / ".join(f"{LEVELS[c]['ratio_to_raw']:.2f}" for c in (1, 4, 16, 64))
    assert row[1].startswith(ratios + " ("), row[1]
    for c in (1, 4, 16, 64):
        rounds = ", ".join(f"{x:.3f}" for x in LEVELS[c]["round_ratios"])
        assert f"c={c} {rounds}" in row[1]
    assert row[2] == " / ".join(f"{LEVELS[c]['img_s']:.1f}" for c in (4, 16, 64))
    p50, raw_b1 = LEVELS[1]["p50_ms"], BENCH["raw"]["batch1_all_cores_ms"]
    assert row[3].startswith(f"{p50:.0f} ms ÷ {raw_b1:.1f} = {p50 / raw_b1:.2f}")
    assert row[4] == f"{LEVELS[16]['p99_ms']:.0f} ms"
    assert row[5] == f"{BENCH['cold_start_s']:.1f} s"


def test_the_server_side_table_is_the_fixture() -> None:
    rows = _table_rows(_section("Where the server's time goes, and the stock TorchServe baseline"), "| concurrency |")
    assert [int(r[0]) for r in rows] == sorted(LEVELS)
    for r in rows:
        level = LEVELS[int(r[0])]
        server, stages = level["server"], level["server"]["stage_ms_per_batch"]
        assert r[1:] == [
            f"{level['p50_ms']:.0f}", f"{level['p99_ms']:.0f}",
            f"{server['handler_p50_ms']:.0f}", f"{server['handler_p99_ms']:.0f}",
            f"{server['mean_batch_size']:.2f}",
            *(f"{stages[s]:.1f}" for s in ("decode", "preprocess", "forward", "postprocess")),
        ], f"concurrency {r[0]}"  # fmt: skip


def test_the_stock_torchserve_figures_are_the_fixture() -> None:
    levels = BENCH["baseline"]["levels"]
    served = " / ".join(f"{x['img_s']:.1f}" for x in levels)
    over = " / ".join(f"{x['served_over_baseline']:.2f}" for x in levels)
    text = re.sub(r"\s+", " ", _section("Results on 2 vCPUs"))
    assert f"served {served} img/s at c=1 / 4 / 16 / 64: `serve` ÷ stock = {over} (" in text


@pytest.mark.parametrize("c", [4, 16, 64])
def test_the_targets_the_readme_calls_met_or_missed(c: int) -> None:
    text = re.sub(r"\s+", " ", _section("Results on 2 vCPUs"))
    verdicts = text[text.index("Against the issue's targets") : text.index("No collapse")]
    met, missed = verdicts.split("missed at")
    quoted = f"c={c} ({LEVELS[c]['ratio_to_raw']:.2f};"
    assert quoted in (met if BENCH["targets"][f"ratio_c{c}_ge_0.90"] else missed), verdicts
