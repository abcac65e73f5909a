"""``resnet-serving batch run`` against a moto S3 server (a real S3 HTTP endpoint on loopback) with a real
ResNet50 archive (random weights) from a ``file://`` model store: one result line per input, bad images as error
lines, a re-run that skips finished shards, a SIGKILLed shard that resumes without a duplicate, and the fail-fast
errors that name what is missing before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from resnet_serving.cli import main
from tests.fixtures.archives import file_store
from tests.fixtures.images import jpeg, png, png_huge_header
from tests.fixtures.moto_server import MotoS3

#: Good images in the shared input; with the bad ones below, a few hundred inputs in all.
GOOD = 96
#: Each bad input and the error code its line must carry.
BAD = {
    "bad/truncated.jpg": "bad_request",
    "bad/not-an-image.jpg": "unsupported_media_type",
    "bad/empty.jpg": "bad_request",
    "bad/huge.png": "payload_too_large",
}


def _bad_bytes() -> dict[str, bytes]:
    whole = jpeg(96, 64)
    return {
        "bad/truncated.jpg": whole[: len(whole) // 3],
        "bad/not-an-image.jpg": b"%PDF-1.4 this is not an image\n" * 4,
        "bad/empty.jpg": b"",
        "bad/huge.png": png_huge_header(100_000, 100_000),
    }


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory, archive_dir: Path) -> str:
    """A ``file://`` store holding the session's archive as resnet50 v1."""
    return file_store(tmp_path_factory.mktemp("batch-store"), archive_dir, "1")


@pytest.fixture(scope="module")
def images(moto_s3: MotoS3) -> tuple[str, set[str]]:
    """(``s3://bucket/in/``, every key under it relative to it): good JPEGs and PNGs plus the bad ones."""
    bucket = moto_s3.create_bucket("batch-in")
    client = moto_s3.client()
    objects = {
        f"good/{n:04d}.{'png' if n % 10 == 0 else 'jpg'}": (png(80, 60) if n % 10 == 0 else jpeg(96, 64))
        for n in range(GOOD)
    }
    objects.update(_bad_bytes())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=f"in/{kv[0]}", Body=kv[1]), objects.items()))
    return f"s3://{bucket}/in/", set(objects)


def _args(source: str, output: str, store: str, version: str, moto: MotoS3) -> list[str]:
    """`batch run`'s flags every test passes: the input, the output, the model and moto's endpoint."""
    return ["--input", source, "--output", output, "--store", store, "--version", version, "--endpoint-url", moto.url]


def _run(*argv: str) -> int:
    return main(["batch", "run", *argv])


def _lines(root: Path) -> list[dict[str, object]]:
    """Every result line of every finished shard under ``root``, read through the shards' summaries."""
    out = []
    for summary in sorted(root.glob("shard-*/summary.json")):
        for part in json.loads(summary.read_text())["parts"]:
            out.extend(json.loads(line) for line in (summary.parent / part).read_text().splitlines())
    return out


def _s3_lines(moto_s3: MotoS3, bucket: str, prefix: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(result lines, summaries) of every shard under ``s3://bucket/prefix``."""
    client = moto_s3.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    summaries = [
        json.loads(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        for o in listed
        if o["Key"].endswith("/summary.json")
    ]
    lines = []
    for o in listed:
        if o["Key"].endswith(".jsonl"):
            body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
            lines.extend(json.loads(line) for line in body.splitlines())
    return lines, summaries


def test_every_input_gets_one_line_and_bad_ones_are_errors(
    moto_s3: MotoS3, images: tuple[str, set[str]], model_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, keys = images
    out_bucket = moto_s3.create_bucket("batch-out")
    common = [
        *_args(source, f"s3://{out_bucket}/results/", model_store, "1", moto_s3),
        "--checkpoint-every",
        "16",
    ]
    started = time.monotonic()
    for shard in ("0/2", "1/2"):
        assert _run(*common, "--shard", shard) == 0
    elapsed = time.monotonic() - started
    lines, summaries = _s3_lines(moto_s3, out_bucket, "results/")

    assert sorted(str(line["key"]) for line in lines) == sorted(keys)  # every input once, none twice
    for line in lines:
        assert line["model_version"] == "1" and line["version"] == "1"
        if line["key"] in BAD:
            assert line["error"] == BAD[str(line["key"])], line
            assert "predictions" not in line
        else:
            preds = line["predictions"]
            assert isinstance(preds, list) and len(preds) == 5 and {"label", "index", "score"} <= set(preds[0])
            assert isinstance(line["etag"], str) and line["size"]
    assert sorted(s["shard"] for s in summaries) == ["0/2", "1/2"]
    assert sum(s["images"] for s in summaries) == len(keys)
    assert sum(s["errors"] for s in summaries) == len(BAD)
    assert sum(s["ok"] for s in summaries) == GOOD
    assert all(0 < s["images"] < len(keys) for s in summaries)  # both shards did work
    first = {e["key"]: e["error"] for s in summaries for e in s["first_errors"]}
    assert first == BAD
    print(f"batch run: {len(keys)} images in {elapsed:.1f}s")  # reported by -s, not asserted

    # a re-run finds the summaries and does nothing, writing nothing
    capsys.readouterr()
    before = moto_s3.client().list_objects_v2(Bucket=out_bucket)["Contents"]
    assert _run(*common, "--shard", "0/2") == 0
    assert json.loads(capsys.readouterr().out)["skipped"] is True
    assert moto_s3.client().list_objects_v2(Bucket=out_bucket)["Contents"] == before


#: The issue's "Done when" count: inputs under one prefix, the bad ones among them.
THOUSAND = 1000


def test_a_thousand_images_give_a_thousand_lines(
    moto_s3: MotoS3, model_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 inputs in moto S3, the bad ones among them, in two shards: exactly 1,000 result lines, one per key,
    the bad ones as errors."""
    bucket = moto_s3.create_bucket("batch-1000")
    client = moto_s3.client()
    good = jpeg(48, 32)  # small: the forward pass, not the decode, is what 1,000 inputs cost here
    objects = {f"in/{n:05d}.jpg": good for n in range(THOUSAND - len(BAD))}
    objects.update({f"in/{key}": data for key, data in _bad_bytes().items()})
    assert len(objects) == THOUSAND
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects.items()))
    common = _args(f"s3://{bucket}/in/", f"s3://{bucket}/out/", model_store, "1", moto_s3)
    for shard in ("0/2", "1/2"):
        assert _run(*common, "--shard", shard) == 0
    lines, summaries = _s3_lines(moto_s3, bucket, "out/")
    assert len(lines) == THOUSAND
    assert sorted(str(line["key"]) for line in lines) == sorted(k.removeprefix("in/") for k in objects)
    errors = {str(line["key"]): line["error"] for line in lines if "error" in line}
    assert errors == BAD
    assert sum(s["images"] for s in summaries) == THOUSAND and sum(s["ok"] for s in summaries) == THOUSAND - len(BAD)
    print(f"batch run: {THOUSAND} images, {sum(s['duration_s'] for s in summaries):.1f}s in the shards")


def test_a_manifest_names_the_keys_and_a_missing_one_is_an_error_line(
    moto_s3: MotoS3, images: tuple[str, set[str]], model_store: str, tmp_path: Path
) -> None:
    source, _ = images
    manifest = tmp_path / "keys.txt"
    manifest.write_text("# three keys\ngood/0001.jpg\n\nbad/truncated.jpg\ngood/9999.jpg\n")
    out = tmp_path / "out"
    assert (
        _run(
            *_args(source, out.as_uri(), model_store, "1", moto_s3),
            "--manifest",
            str(manifest),
        )
        == 0
    )
    by_key = {line["key"]: line for line in _lines(out)}
    assert set(by_key) == {"good/0001.jpg", "bad/truncated.jpg", "good/9999.jpg"}
    assert "predictions" in by_key["good/0001.jpg"]
    assert by_key["bad/truncated.jpg"]["error"] == "bad_request"
    assert by_key["good/9999.jpg"]["error"] == "not_found"


def _batch_process(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # a file, not a pipe: a killed child leaves no pipe to drain or close
        return subprocess.Popen(
            [sys.executable, "-m", "resnet_serving", "batch", "run", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )


def _wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"batch run ended (rc {proc.returncode}) before {path.name}: {log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path} after {timeout}s")
        time.sleep(0.02)


def test_a_sigkilled_shard_resumes_with_exactly_one_line_per_input(
    moto_s3: MotoS3, images: tuple[str, set[str]], model_store: str, tmp_path: Path
) -> None:
    source, keys = images
    out = tmp_path / "out"
    argv = [
        *_args(source, out.as_uri(), model_store, "1", moto_s3),
        "--checkpoint-every",
        "8",
        "--batch-size",
        "4",
    ]
    shard_dir = out / "shard-00000-of-00001"
    log = tmp_path / "killed.log"
    proc = _batch_process(argv, log)
    try:
        _wait_for(shard_dir / "part-00001.jsonl", proc, log, timeout=180)  # at least one checkpoint behind it
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (shard_dir / "summary.json").exists(), "the shard finished before the kill: nothing was resumed"
    checkpoint = json.loads((shard_dir / "checkpoint.json").read_text())
    assert 0 < checkpoint["done"] < len(keys)

    rerun = subprocess.run(
        [sys.executable, "-m", "resnet_serving", "batch", "run", *argv], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["images"] == len(keys)
    lines = _lines(out)
    seen = [str(line["key"]) for line in lines]
    assert len(seen) == len(set(seen)), "a key has two result lines"
    assert sorted(seen) == sorted(keys)
    assert {k for k in seen if "error" in next(line for line in lines if line["key"] == k)} == set(BAD)
    # no stray part or checkpoint left; a temp file the kill cut off (.name.<hex>.tmp) is hidden, as in the store
    visible = sorted(p.name for p in shard_dir.iterdir() if not p.name.startswith("."))
    assert visible == sorted([*json.loads((shard_dir / "summary.json").read_text())["parts"], "summary.json"])


@pytest.fixture
def empty_output(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "out"
    out.mkdir()
    yield out
    assert list(out.iterdir()) == [], "a run that failed fast wrote something"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("no-bucket", "--input s3://batch-nonexistent-bucket/in: bucket"),
        ("empty-prefix", "no objects there"),
        ("no-version", "--version 9"),
        ("no-manifest", "--manifest"),
    ],
)
def test_fails_fast_naming_what_is_missing(
    case: str,
    needle: str,
    moto_s3: MotoS3,
    images: tuple[str, set[str]],
    model_store: str,
    empty_output: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, _ = images
    version = "1"
    extra: list[str] = []
    if case == "no-bucket":
        source = "s3://batch-nonexistent-bucket/in/"
    elif case == "empty-prefix":
        source = source.replace("/in/", "/nothing-here/")
    elif case == "no-version":
        version = "9"
    else:
        extra = ["--manifest", str(empty_output.parent / "missing.txt")]
    rc = _run(
        *_args(source, empty_output.as_uri(), model_store, version, moto_s3),
        *extra,
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err and "Traceback" not in err, err
    assert err.startswith("resnet-serving batch: error:"), err
