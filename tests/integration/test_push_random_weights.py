"""``push`` keeps archives built with random weights out of ``s3://`` stores unless ``--allow-random-weights``.

Against moto in server mode (a real S3 HTTP endpoint on loopback), through the CLI. The archives are fake (random
bytes) with manifests labelled the way ``resnet-serving archive`` labels its weights (inference/model.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from resnet_serving.artifact.layout import MANIFEST_NAME
from resnet_serving.artifact.manifest import Manifest
from resnet_serving.cli import main
from resnet_serving.store import open_store
from resnet_serving.store.weights import has_random_weights
from tests.fixtures.archives import fake_archive
from tests.fixtures.moto_server import MotoS3

#: What `archive --weights auto` writes when the pretrained weights are neither cached nor downloadable.
FALLBACK = {
    "source": "random",
    "id": "random-seed-0",
    "pretrained": False,
    "seed": 0,
    "warning": "random weights: predictions are meaningless",
    "fallback_reason": "pretrained ImageNet weights unavailable (offline and not cached)",
}
IMAGENET = {"source": "imagenet", "id": "ResNet50_Weights.IMAGENET1K_V2", "pretrained": True}


def _archive(directory: Path, weights: dict[str, object]) -> Path:
    archive, manifest = fake_archive(directory, "1")
    labelled = dataclasses.replace(manifest, weights=weights)
    (directory / MANIFEST_NAME).write_text(labelled.to_json(), encoding="utf-8")
    return archive


def _push(archive: Path, store: str, moto_s3: MotoS3, *more: str) -> int:
    return main(["push", str(archive), "--store", store, "--endpoint-url", moto_s3.url, *more])


def test_random_weights_are_refused_for_s3_and_nothing_is_uploaded(moto_s3, s3_store_uri, tmp_path, capsys):
    archive = _archive(tmp_path / "a", FALLBACK)
    assert _push(archive, s3_store_uri, moto_s3) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("resnet-serving push: error: resnet50 v1 has RANDOM weights (pretrained ImageNet weights")
    assert "--allow-random-weights to push it anyway" in err and "--weights imagenet" in err
    assert "Traceback" not in err
    assert open_store(s3_store_uri, endpoint_url=moto_s3.url).list_versions() == []
    bucket = s3_store_uri.removeprefix("s3://").split("/")[0]
    assert moto_s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_allow_random_weights_pushes_with_a_warning(moto_s3, s3_store_uri, tmp_path, capsys):
    archive = _archive(tmp_path / "a", FALLBACK)
    assert _push(archive, s3_store_uri, moto_s3, "--allow-random-weights") == 0
    out, err = capsys.readouterr()
    assert "RANDOM weights" in err and "--allow-random-weights" in err
    assert "pushed resnet50 v1" in out
    assert open_store(s3_store_uri, endpoint_url=moto_s3.url).list_versions() == ["1"]


def test_weights_random_without_a_fallback_is_refused_too(moto_s3, s3_store_uri, tmp_path, capsys):
    archive, _ = fake_archive(tmp_path / "a", "1")  # `archive --weights random`: no fallback_reason
    assert _push(archive, s3_store_uri, moto_s3) == 2
    assert "has RANDOM weights (built with --weights random)" in " ".join(capsys.readouterr().err.split())


def test_pretrained_weights_go_to_s3_without_a_word(moto_s3, s3_store_uri, tmp_path, capsys):
    archive = _archive(tmp_path / "a", IMAGENET)
    assert _push(archive, s3_store_uri, moto_s3) == 0
    assert "RANDOM" not in capsys.readouterr().err
    assert open_store(s3_store_uri, endpoint_url=moto_s3.url).list_versions() == ["1"]


@pytest.mark.parametrize("form", ["file", "path"])
def test_local_stores_take_random_weights(tmp_path, form, capsys):
    archive = _archive(tmp_path / "a", FALLBACK)
    store = f"file://{tmp_path / 'store'}" if form == "file" else str(tmp_path / "store")
    assert main(["push", str(archive), "--store", store]) == 0
    assert "RANDOM" not in capsys.readouterr().err
    assert open_store(store).list_versions() == ["1"]


@pytest.mark.parametrize(
    ("weights", "random"),
    [(FALLBACK, True), ({"source": "random"}, True), ({"pretrained": False}, True), (IMAGENET, False), ({}, False)],
)
def test_what_counts_as_random(tmp_path, weights, random):
    _archive(tmp_path, weights)
    assert has_random_weights(Manifest.load(tmp_path / MANIFEST_NAME)) is random
