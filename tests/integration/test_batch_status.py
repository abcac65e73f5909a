"""``resnet-serving batch status``: one table of the shards under a ``batch run`` output.

Real runs first (``file://`` input, output and store, a real archive with random weights): one shard of two
finished reads as incomplete (exit 3), both as complete (exit 0) with totals equal to the inputs. Then the
states a real run leaves behind and a table must still show: a killed shard's checkpoint, a corrupt summary,
two runs with different shard counts in one output, an empty output, and the same on a moto S3 server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_serving.cli import main
from resnet_serving.cli.batch import EXIT_INCOMPLETE
from tests.fixtures.archives import file_store
from tests.fixtures.images import jpeg, png
from tests.fixtures.moto_server import MotoS3
from tests.helpers.docs_pages import block


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory, archive_dir: Path) -> str:
    return file_store(tmp_path_factory.mktemp("status-store"), archive_dir, "1")


def _status(output: str, *extra: str) -> int:
    return main(["batch", "status", "--output", output, *extra])


def _json(output: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = _status(output, "--json", *extra)
    return code, json.loads(capsys.readouterr().out)


def test_status_follows_real_shards_to_completion(
    tmp_path: Path, model_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for n in range(5):
        (source / f"{n}.jpg").write_bytes(jpeg(96, 64))
    (source / "x.png").write_bytes(png(80, 60))
    (source / "broken.jpg").write_bytes(b"not an image")
    output = (tmp_path / "out").as_uri()
    run = ["batch", "run", "--input", source.as_uri(), "--output", output, "--store", model_store, "--version", "1"]

    assert main([*run, "--shard", "0/2"]) == 0
    code, first = _json(output, capsys)
    assert code == EXIT_INCOMPLETE and first["complete"] is False and first["finished"] == 1
    assert [(s["shard"], s["state"]) for s in first["shards"]] == [
        ("shard-00000-of-00002", "finished"),
        ("shard-00001-of-00002", "not started"),
    ]

    assert main([*run, "--shard", "1/2"]) == 0
    code, done = _json(output, capsys)
    assert code == 0 and done["complete"] is True and done["shard_counts"] == [2]
    assert done["totals"] == {"images": 7, "ok": 6, "errors": 1}
    assert {s["model_version"] for s in done["shards"]} == {"1"}
    assert all(s["images_per_s"] and s["images_per_s"] > 0 for s in done["shards"])

    capsys.readouterr()
    assert _status(output) == 0
    table = " ".join(capsys.readouterr().out.split())
    assert "shard-00001-of-00002 │ finished" in table
    assert "2 of 2 shards finished; 7 images, 6 ok, 1 errors" in table


def _write(root: Path, key: str, body: object) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else json.dumps(body))


def test_stopped_corrupt_and_mixed_shards_are_rows_not_crashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The files as batch run writes them (its checkpoint and summary fields), in the states a kill, a bad copy
    and a second run with another --shards leave."""
    out = tmp_path / "out"
    _write(out, "shard-00000-of-00003/summary.json", {"images": 10, "ok": 9, "errors": 1, "model_version": "4",
                                                      "images_per_s": 5.0, "duration_s": "slow"})  # fmt: skip
    _write(out, "shard-00001-of-00003/checkpoint.json", {"parts": 1, "done": 4, "ok": 4, "errors": 0, "elapsed": 2.0})
    _write(out, "shard-00001-of-00003/part-00000.jsonl", "{}\n")
    _write(out, "shard-00002-of-00003/summary.json", "{not json")
    _write(out, "shard-00000-of-00001/summary.json", ["a list"])
    code, status = _json(out.as_uri(), capsys)
    assert code == EXIT_INCOMPLETE and status["shard_counts"] == [1, 3] and status["complete"] is False
    rows = {s["shard"]: s for s in status["shards"]}
    assert list(rows) == ["shard-00000-of-00001", "shard-00000-of-00003", "shard-00001-of-00003",
                          "shard-00002-of-00003"]  # fmt: skip
    assert rows["shard-00000-of-00003"]["state"] == "finished" and rows["shard-00000-of-00003"]["errors"] == 1
    assert (rows["shard-00000-of-00003"]["images_per_s"], rows["shard-00000-of-00003"]["duration_s"]) == (5.0, None)
    stopped = rows["shard-00001-of-00003"]
    assert (stopped["state"], stopped["images"], stopped["images_per_s"]) == ("running or stopped", 4, 2.0)
    assert rows["shard-00002-of-00003"]["state"] == "unreadable"
    assert "shard-00002-of-00003/summary.json is not JSON" in rows["shard-00002-of-00003"]["problem"]
    assert rows["shard-00000-of-00001"]["problem"] == "shard-00000-of-00001/summary.json is not a JSON object"

    capsys.readouterr()
    assert _status(out.as_uri()) == EXIT_INCOMPLETE
    text = " ".join(capsys.readouterr().out.split())
    assert "runs with different shard counts (1, 3) share this output" in text


def test_nothing_there_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "unrelated.txt").write_text("x")
    assert _status((tmp_path / "empty").as_uri()) == 2  # the caller named a place with no run
    err = " ".join(capsys.readouterr().err.split())
    assert "--output file://" in err and "no batch run has written a shard there" in err
    assert "Traceback" not in err


def test_the_pages_command_reads_s3(moto_s3: MotoS3, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/how-to/batch.md's command, as shown, against a moto S3 server holding its bucket."""
    import shlex

    (command,) = block("batch-status")
    argv = shlex.split(command)
    assert argv[:3] == ["resnet-serving", "batch", "status"]
    output = argv[argv.index("--output") + 1]
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    moto_s3.client().create_bucket(Bucket=bucket)  # the page's own name; no other test uses it
    summary = {"images": 3, "ok": 3, "errors": 0, "model_version": "2", "images_per_s": 1.5, "duration_s": 2.0}
    moto_s3.client().put_object(
        Bucket=bucket, Key=f"{prefix}shard-00000-of-00001/summary.json", Body=json.dumps(summary)
    )
    capsys.readouterr()
    assert main([*argv[1:], "--endpoint-url", moto_s3.url]) == 0
    assert "1 of 1 shards finished; 3 images, 3 ok, 0 errors" in " ".join(capsys.readouterr().out.split())
    code, status = _json(output, capsys, "--endpoint-url", moto_s3.url)
    assert code == 0 and status["totals"] == {"images": 3, "ok": 3, "errors": 0}
    assert _status("s3://no-such-bucket-here/r/", "--endpoint-url", moto_s3.url) == 2  # the caller's URI
    err = " ".join(capsys.readouterr().err.split())
    assert "--output s3://no-such-bucket-here/r" in err and "does not exist" in err and "Traceback" not in err
