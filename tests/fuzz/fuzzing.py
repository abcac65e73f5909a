"""Runs a fuzz target in a subprocess and reads libFuzzer's verdict (used by tests/fuzz and ``make fuzz``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO

FUZZ_DIR = REPO / "tests" / "fuzz"
CORPUS = FUZZ_DIR / "corpus"
#: Inputs that crashed or hung are saved here (git-ignored), named crash-<sha1> or timeout-<sha1>.
ARTIFACTS = REPO / "fuzz-artifacts"
DICTS = {"protocol": FUZZ_DIR / "protocol.dict"}
HANG_SECONDS = 2
#: libFuzzer's RSS cap (MB) for a finding: room for torch's own footprint plus one image at the pixel limit, which
#: the decoder may legitimately allocate; a leak or an unbounded allocation still exceeds it.
RSS_LIMIT_MB = 4096
MAX_LEN = 4096
#: libFuzzer checks RSS_LIMIT_MB against getrusage's peak, which Linux seeds at fork with the parent's resident
#: size and keeps across exec: started straight from a pytest process that holds gigabytes, the fuzzer would "run
#: out of memory" on its first input. A shell in between forks it from a small process instead.
LAUNCHER = ["/bin/sh", "-c", '"$@"; exit $?', "fuzz-launcher"]


@dataclass(frozen=True)
class FuzzResult:
    target: str
    returncode: int
    runs: int
    seconds: float
    artifacts: list[Path]
    output: str

    def summary(self) -> str:
        return f"{self.target}: {self.runs} inputs in {self.seconds:.1f} s"


def run_target(
    target: str,
    runs: int,
    scratch: Path,
    *,
    seed: int | None = None,
    max_time: int = 600,
    corpus: Path | None = None,
    artifacts: Path | None = None,
) -> FuzzResult:
    """``runs`` inputs (seeds first, then mutations) through ``target``; a crash or a hang stops the run."""
    corpus = corpus if corpus is not None else CORPUS / target
    out = (artifacts or ARTIFACTS) / target
    out.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz.run",
        target,
        f"-runs={runs}",
        f"-timeout={HANG_SECONDS}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN}",
        f"-max_total_time={max_time}",
        f"-artifact_prefix={out}/",
        "-print_final_stats=1",
        *([f"-seed={seed}"] if seed is not None else []),
        *([f"-dict={DICTS[target]}"] if target in DICTS else []),
        str(scratch),
        *([str(corpus)] if corpus.is_dir() else []),
    ]
    start = time.monotonic()
    with subprocess.Popen(
        [*LAUNCHER, *cmd], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=max_time + 120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and the fuzzer it started
            proc.communicate()
            raise
    seconds = time.monotonic() - start
    output = stdout + stderr
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    saved = sorted(set(out.iterdir()) - before)
    return FuzzResult(target, proc.returncode, int(execs.group(1)) if execs else 0, seconds, saved, output)


def findings(result: FuzzResult) -> str:
    """What a failing run says: the saved inputs and the Python traceback, without libjpeg's chatter."""
    lines = [ln for ln in result.output.splitlines() if not ln.startswith(("Corrupt JPEG", "Premature end", "#"))]
    keep = [ln for ln in lines if "Uncaught" in ln or "Error" in ln or "Traceback" in ln or ln.startswith("  ")]
    saved = ", ".join(str(p) for p in result.artifacts) or "none"
    return f"{result.target}: exit {result.returncode}; input saved: {saved}\n" + "\n".join(keep[-40:])


def main(argv: list[str] | None = None) -> int:
    """``make fuzz``: every target for ``--time`` seconds (or ``--runs`` inputs), fresh seeds, one line each."""
    import argparse

    from tests.fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.fuzzing", description=main.__doc__)
    parser.add_argument("--time", type=int, default=300, help="seconds per target (default 300)")
    parser.add_argument("--runs", type=int, default=-1, help="inputs per target (default: until --time)")
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(sorted(TARGETS))}")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}: choose from {', '.join(sorted(TARGETS))}")
    failed = 0
    for target in args.targets or sorted(TARGETS):
        # The scratch corpus persists (git-ignored), so each long run starts where the last one stopped.
        result = run_target(target, args.runs, ARTIFACTS / f"corpus-{target}", max_time=args.time)
        ok = result.returncode == 0 and not result.artifacts
        print(f"{result.summary()}: {'ok' if ok else 'FOUND'}", flush=True)
        if not ok:
            failed += 1
            print(findings(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
