"""Fuzzing the hostile-input entries: the image decode/validate entry and request parsing (raw, JSON, multipart).

The smoke runs are bounded (a fixed libFuzzer seed, so `make test` is reproducible); `make fuzz` runs the same
targets longer with fresh seeds. A crash, a hang over 2 s, or an exception that is not a ResnetServingError
fails the run, and libFuzzer saves the input under fuzz-artifacts/<target>/. Every committed corpus file (the
seeds and the found-* inputs of fixed defects) is also replayed in-process, so a regression fails without atheris.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fuzz.fuzzing import CORPUS, RSS_LIMIT_MB, FuzzResult, findings
from tests.fuzz.targets import TARGETS
from tests.helpers import REPO

#: Inputs per target in the smoke run: 40,000 in all, a few seconds each.
SMOKE_RUNS = {"imaging": 20_000, "protocol": 20_000}
CORPUS_FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file())


def test_the_corpus_covers_each_target_and_each_request_form() -> None:
    names = {p.parent.name: [] for p in CORPUS_FILES}
    for p in CORPUS_FILES:
        names[p.parent.name].append(p.name)
    assert set(names) == set(TARGETS)
    assert {n.split("-")[1] for n in names["protocol"] if n.startswith("seed-")} >= {"raw", "json", "multipart"}


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[f"{p.parent.name}/{p.name}" for p in CORPUS_FILES])
def test_corpus_input_meets_the_contract(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())


@pytest.mark.parametrize("target", sorted(SMOKE_RUNS))
def test_fuzz_smoke(fuzz_runner: Callable[..., FuzzResult], target: str) -> None:
    result = fuzz_runner(target, SMOKE_RUNS[target], seed=1, max_time=120)
    print(result.summary())
    assert result.returncode == 0 and not result.artifacts, findings(result)
    assert result.runs >= SMOKE_RUNS[target], f"{result.summary()}; expected {SMOKE_RUNS[target]}"


@pytest.mark.parametrize(("seed_input", "kind"), [(b"crash", "crash-"), (b"hang", "timeout-")])
def test_a_crash_or_a_hang_fails_the_run_and_saves_the_input(
    fuzz_runner: Callable[..., FuzzResult], tmp_path: Path, seed_input: bytes, kind: str
) -> None:
    """The harness itself: a target that raises, or runs past 2 s, must end the run non-zero with the input saved."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "input").write_bytes(seed_input)
    result = fuzz_runner("selftest", 10, corpus=corpus, artifacts=tmp_path / "artifacts", max_time=30)
    assert result.returncode != 0
    assert [p.name.startswith(kind) for p in result.artifacts] == [True], findings(result)
    assert result.artifacts[0].read_bytes() == seed_input


def test_a_parent_holding_more_than_the_rss_cap_does_not_trip_it(fuzz_runner: Callable[..., FuzzResult]) -> None:
    """Linux seeds a forked child's peak RSS with the parent's resident size and keeps it across exec, and
    libFuzzer's -rss_limit_mb reads that peak (once a second): a pytest process that has grown past the cap, as it
    does when the imaging tests run first, must still get a clean run of a few seconds."""
    held = bytearray((RSS_LIMIT_MB + 256) * 2**20)
    held[::4096] = b"\x01" * len(range(0, len(held), 4096))  # touch every page: resident, not just reserved
    try:
        result = fuzz_runner("protocol", SMOKE_RUNS["protocol"], seed=1, max_time=120)
    finally:
        del held
    assert "out-of-memory" not in result.output, findings(result)
    assert result.returncode == 0 and not result.artifacts, findings(result)
    assert result.seconds > 1.5, f"{result.summary()}: too short for libFuzzer's once-a-second RSS check"


def test_one_saved_input_replays_from_the_command_line() -> None:
    """The README's replay command: libFuzzer given a file runs that input alone."""
    pytest.importorskip("atheris")
    found = CORPUS / "protocol" / "found-deep-json-bytes"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "protocol", str(found.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Running: {found.relative_to(REPO)}" in proc.stderr
