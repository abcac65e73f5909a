"""Two `resnet-serving archive` builds at once on one machine. torch-model-archiver stages its files in
``$TMPDIR/<model name>``, deleting that folder first: shared by every build on the machine, so one build deleted
the other's files (``FileNotFoundError: …/resnet50/index_to_name.json``). Each build now stages privately.

The shared ``$TMPDIR`` here holds a decoy ``resnet50/`` folder where the archiver used to stage: it must survive,
which shows deterministically that no build staged there, whatever the timing of the two builds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
from resnet_serving.artifact.manifest import Manifest
from resnet_serving.errors import IntegrityError
from tests.helpers import REPO
from tests.helpers.faults import Row, scale


def test_parallel_archive_builds_stage_privately(tmp_path: Path, fault_table: list[Row]) -> None:
    builds = int(scale(2, 3))
    shared_tmp = tmp_path / "tmp"
    decoy = shared_tmp / "resnet50"
    decoy.mkdir(parents=True)
    (decoy / "keep").write_text("another build's staging", encoding="utf-8")
    store = tmp_path / "store"
    env = {**os.environ, "TMPDIR": str(shared_tmp), "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    started = time.monotonic()
    procs = []
    for v in range(1, builds + 1):
        cmd = [sys.executable, "-m", "resnet_serving", "archive", "--weights", "random", "--version", str(v)]
        cmd += ["--store", f"file://{store}"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
    elapsed = time.monotonic() - started
    failed = [(p.returncode, out[-1500:]) for p, out in zip(procs, outputs, strict=True) if p.returncode != 0]
    corrupt = 0
    for v in range(1, builds + 1):
        d = store / "resnet50" / str(v)
        try:
            Manifest.load(d / MANIFEST_NAME).verify_file(d / ARCHIVE_NAME)
        except (OSError, IntegrityError):
            corrupt += 1
    fault_table.append(
        Row(
            fault="two `archive` builds at once",
            load=f"{builds} builds, one shared $TMPDIR",
            sent=builds,
            failed=len(failed),
            retryable=0,
            recovered=f"all done in {elapsed:.0f} s",
            memory="n/a",
            lost=f"{corrupt} of {builds} archives",
        )
    )
    assert failed == [], failed
    assert corrupt == 0
    assert (decoy / "keep").read_text(encoding="utf-8") == "another build's staging", "a build staged in $TMPDIR"
    assert not any(p.name.startswith(".staging-") for p in store.iterdir()), "staging left behind"
