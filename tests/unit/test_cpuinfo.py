"""CPU flags for reduced precision: the bench's record, serve's bf16 warning, and its figure on the bf16 page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet_serving.cli import main
from resnet_serving.inference import cpuinfo
from tests.helpers.docs_pages import BF16_PAGE, section

ICE_LAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512_vnni
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512_vnni
"""
SAPPHIRE_RAPIDS = ICE_LAKE.replace("avx512_vnni", "avx512_vnni avx512_bf16 amx_bf16 amx_tile")


def _cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_report_names_model_and_flags(tmp_path: Path) -> None:
    report = cpuinfo.cpu_report(_cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    assert report["model"] == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert report["flags"] == {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_bf16": True, "amx_tile": True}
    assert report["bf16_native"] is True
    ice = cpuinfo.cpu_report(_cpuinfo(tmp_path, ICE_LAKE))
    assert ice["flags"]["avx512f"] and not ice["flags"]["avx512_bf16"] and ice["bf16_native"] is False


def test_bf16_warning_only_where_bf16_is_emulated(tmp_path: Path) -> None:
    ice = _cpuinfo(tmp_path, ICE_LAKE)
    warning = cpuinfo.bf16_warning("bf16", ice)
    assert warning is not None
    assert "avx512_bf16" in warning and "amx_bf16" in warning and "8375C" in warning
    assert f"{cpuinfo.BF16_EMULATED_SPEED:.2f}×" in warning
    assert cpuinfo.bf16_warning("auto", ice) is None
    assert cpuinfo.bf16_warning("bf16", _cpuinfo(tmp_path, SAPPHIRE_RAPIDS)) is None
    assert cpuinfo.bf16_warning("bf16", tmp_path / "absent") is None  # nothing known: no claim


def test_serve_warns_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """serve's own start-up path, stopped by a missing --model-dir before Java starts (exit 2)."""
    monkeypatch.setattr(cpuinfo, "CPUINFO", _cpuinfo(tmp_path, ICE_LAKE))
    monkeypatch.setenv("RESNET_SERVING_AMP", "bf16")
    assert main(["serve", "--model-dir", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "run")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "RESNET_SERVING_AMP=bf16 on a CPU without bf16 instructions" in err
    assert f"{cpuinfo.BF16_EMULATED_SPEED:.2f}×" in err


def test_the_readme_states_the_figure_the_warning_quotes() -> None:
    """The figure lives in the bf16 measurement page's table; the warning quotes it (one value, checked here)."""
    table = section(BF16_PAGE, "Reduced precision: where bf16 pays")
    row = next(line for line in table.splitlines() if line.startswith("|") and cpuinfo.BF16_EMULATED_CPU in line)
    assert re.search(rf"\b{cpuinfo.BF16_EMULATED_SPEED:.2f}×", row), row
