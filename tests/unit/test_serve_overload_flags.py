"""`serve --job-queue-size` and `--retry-after`: a negative value is the caller's mistake (exit 2, named), refused
before any work; and the bench's own queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_serving.cli import main


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--job-queue-size", "--job-queue-size -1: must be ≥ 0 (0: 4 batches per worker)"),
        ("--retry-after", "--retry-after -1: must be ≥ 0 seconds"),
    ],
)
def test_negative_values_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    run_dir = tmp_path / "run"
    rc = main(["serve", "--model-dir", str(tmp_path), "--run-dir", str(run_dir), flag, "-1"])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists(), "refused before creating anything"


@pytest.mark.parametrize("argv", [["serve", "--model-dir", "."], ["bench", "--quick"]])
def test_a_zero_batch_delay_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """TorchServe 0.12 replaces a maxBatchDelay of 0 with its default of 100 ms (its management API then
    describes the model with 100), so a lone request would wait 100 ms: refused as the caller's mistake."""
    from resnet_serving.torchserve.config import ServeConfig

    with pytest.raises(Exception, match=r"--max-batch-delay-ms must be ≥ 1, got 0 \(TorchServe 0.12 reads 0 as"):
        ServeConfig(model_store=tmp_path, max_batch_delay_ms=0)
    rc = main([*argv, "--max-batch-delay-ms", "0"] + (["--out", str(tmp_path / "b")] if argv[0] == "bench" else []))
    assert rc == 2
    assert "--max-batch-delay-ms must be ≥ 1, got 0 (TorchServe 0.12 reads 0 as its default of 100 ms)" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "b").exists()


def test_the_bench_measures_serves_own_queue_whatever_its_levels(tmp_path: Path) -> None:
    """The bench measures serve as it comes, overload included (its levels 64 and 256 go beyond what TorchServe
    holds): its queue is serve's default, not sized to its highest level (which hid the overload users meet)."""
    from resnet_serving.bench.runner import BenchOptions, _serve_config
    from resnet_serving.torchserve.config import ServeConfig

    cfg = _serve_config(BenchOptions(out=tmp_path, concurrency=[1, 4, 16, 64, 256]), tmp_path, "1")
    serves = ServeConfig(model_store=tmp_path, workers=cfg.workers)
    assert cfg.queue_size == serves.queue_size < 64
