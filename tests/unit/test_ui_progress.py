"""ui.counting_progress: the bar for work whose total is learnt while it runs (batch run's images), shown on a
terminal only, like every bar of the package (ui.terminal_progress)."""

from __future__ import annotations

import pytest

from resnet_serving import ui


def test_the_bar_shows_done_of_total_and_the_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with ui.counting_progress("batch 0/1", rate_unit="img/s", enabled=True) as bar:
        bar.set_total(10)
        bar.start_at(2)  # a resumed shard starts where its checkpoint left off
        bar.advance(3, 4.5)
    err = capsys.readouterr().err
    assert "batch 0/1" in err and "5/10" in err and "4.5 img/s" in err


def test_off_a_terminal_it_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with ui.counting_progress("batch 0/1", rate_unit="img/s", enabled=False) as bar:
        bar.set_total(10)
        bar.start_at(2)
        bar.advance(3, 4.5)
    assert capsys.readouterr() == ("", "")
