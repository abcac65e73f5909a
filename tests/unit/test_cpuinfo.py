"""CPU flags for reduced precision: the bench's record, serve's bf16 warning, and its figure on the bf16 page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet_serving.cli import main
from resnet_serving.inference import cpuinfo
from tests.helpers.cpuinfo import ICE_LAKE, SAPPHIRE_RAPIDS, cpuinfo_file
from tests.helpers.docs_pages import BF16_PAGE, section


def _cpuinfo(tmp_path: Path, text: str) -> Path:
    return cpuinfo_file(tmp_path, text)


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


def test_auto_follows_the_cpus_bf16(tmp_path: Path) -> None:
    """RESNET_SERVING_AMP=auto on a CPU: bf16 where either flag gives native bf16, fp32 where it would be emulated
    or nothing is known, each with its reason."""
    chosen, why = cpuinfo.auto_cpu_precision(_cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    assert chosen == "bf16" and "avx512_bf16 and amx_bf16" in why and "RESNET_SERVING_AMP=off" in why
    one_flag = _cpuinfo(tmp_path, ICE_LAKE.replace("avx512_vnni", "avx512_vnni avx512_bf16"))
    assert cpuinfo.auto_cpu_precision(one_flag)[0] == "bf16"
    chosen, why = cpuinfo.auto_cpu_precision(_cpuinfo(tmp_path, ICE_LAKE))
    assert chosen == "fp32" and "8375C CPU @ 2.90GHz has neither avx512_bf16 nor amx_bf16" in why and "emulated" in why
    assert cpuinfo.auto_cpu_precision(tmp_path / "absent") == (
        "fp32",
        "the CPU's flags cannot be read (no /proc/cpuinfo), so fp32",
    )


def test_the_classifier_runs_autos_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU, auto builds the frozen bf16 graph where bf16 is native and the fp32 one elsewhere; off is fp32
    everywhere. (This CPU may emulate bf16: only the choice is checked here, not its speed.)"""
    import torch

    from resnet_serving.inference.model import Classifier, resolve_weights

    state, _ = resolve_weights("random")
    monkeypatch.setattr(cpuinfo, "CPUINFO", _cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    bf16 = Classifier(state, amp="auto")
    assert (bf16.amp_dtype, bf16.graph, bf16.precision) == (torch.bfloat16, "torchscript-frozen-bf16", "bf16")
    assert Classifier(state, amp="off", freeze=False).amp_dtype is None
    monkeypatch.setattr(cpuinfo, "CPUINFO", _cpuinfo(tmp_path, ICE_LAKE))
    fp32 = Classifier(state, amp="auto", freeze=False)
    assert (fp32.amp_dtype, fp32.precision) == (None, "fp32")


@pytest.mark.parametrize(("text", "expected"), [(SAPPHIRE_RAPIDS, "bf16"), (ICE_LAKE, "fp32")], ids=["bf16", "fp32"])
def test_serve_says_which_precision_auto_chose(
    text: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """serve's own start-up path, stopped by a missing --model-dir before Java starts (exit 2); the suite pins
    RESNET_SERVING_AMP=off (tests/conftest.py), so auto is set here."""
    monkeypatch.setattr(cpuinfo, "CPUINFO", _cpuinfo(tmp_path, text))
    monkeypatch.setenv("RESNET_SERVING_AMP", "auto")
    assert main(["serve", "--model-dir", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "run")]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert f"precision on CPU workers: {expected}: Intel(R) Xeon(R) Platinum 8375C" in out
    monkeypatch.setenv("RESNET_SERVING_AMP", "off")
    assert main(["serve", "--model-dir", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "precision on CPU workers" not in capsys.readouterr().err
