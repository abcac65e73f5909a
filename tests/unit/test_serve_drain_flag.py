"""`serve --drain-timeout`: a negative value is the caller's mistake (exit 2, named), refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_serving.cli import main


def test_negative_drain_timeout_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    rc = main(["serve", "--model-dir", str(tmp_path), "--run-dir", str(run_dir), "--drain-timeout", "-1"])
    assert rc == 2
    assert "--drain-timeout -1: must be ≥ 0 seconds" in capsys.readouterr().err
    assert not run_dir.exists(), "refused before creating anything"


def test_drain_timeout_default_fits_sagemakers_stop() -> None:
    from resnet_serving.cli.serve import DRAIN_TIMEOUT_S, STOP_TIMEOUT_S

    assert DRAIN_TIMEOUT_S + STOP_TIMEOUT_S < 30, "SageMaker SIGKILLs 30 s after its SIGTERM"


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_a_ready_timeout_below_one_second_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """`--ready-timeout` is also how long TorchServe lets a worker load the model: it must be a real duration."""
    run_dir = tmp_path / "run"
    rc = main(["serve", "--model-dir", str(tmp_path), "--run-dir", str(run_dir), "--ready-timeout", value])
    assert rc == 2
    assert f"--ready-timeout {value}: must be ≥ 1 second" in capsys.readouterr().err
    assert not run_dir.exists(), "refused before creating anything"
