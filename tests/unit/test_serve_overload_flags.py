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


def test_the_bench_queue_holds_its_highest_concurrency(tmp_path: Path) -> None:
    """The bench measures latency under a closed loop, not overload: none of its clients may meet a full queue."""
    from resnet_serving.bench.runner import BenchOptions, _serve_config

    cfg = _serve_config(BenchOptions(out=tmp_path, concurrency=[1, 4, 16, 64]), tmp_path, "1")
    assert cfg.queue_size == 64
