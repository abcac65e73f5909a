"""Store URIs, names, flag/env precedence and the file:// backend's own edges (no server needed)."""

from __future__ import annotations

import json
import os

import pytest

from resnet_serving.artifact.manifest import Manifest
from resnet_serving.cli import main
from resnet_serving.cli.store import fetch_target
from resnet_serving.errors import InputError, IntegrityError, NoSuchBucket, StoreError
from resnet_serving.store import channel_key, manifest_key, open_store
from resnet_serving.store.local import FileBackend
from resnet_serving.store.s3 import S3Backend
from resnet_serving.ui import no_progress, terminal_progress
from tests.fixtures.archives import fake_archive


@pytest.fixture
def store(tmp_path):
    (tmp_path / "store").mkdir()
    return open_store((tmp_path / "store").as_uri())


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [("s3://models", "models", ""), ("s3://models/prod/", "models", "prod"), ("s3://m/a/b", "m", "a/b")],
)
def test_s3_uris(uri, bucket, prefix, monkeypatch):
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    backend = open_store(uri, endpoint_url="http://127.0.0.1:1").backend
    assert isinstance(backend, S3Backend)
    assert (backend.bucket, backend.prefix) == (bucket, prefix)
    assert (
        backend.key_uri("resnet50/1/model.mar") == f"s3://{bucket}/{prefix + '/' if prefix else ''}resnet50/1/model.mar"
    )


def test_file_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for uri in (f"file://{tmp_path}/s", str(tmp_path / "s"), "file://s", "s", "file://localhost" + str(tmp_path / "s")):
        backend = open_store(uri).backend
        assert isinstance(backend, FileBackend)
        assert backend.root == tmp_path / "s", uri


@pytest.mark.parametrize("uri", ["", "s3://", "gs://bucket/x", "http://example.com/models"])
def test_bad_uris(uri):
    with pytest.raises(InputError):
        open_store(uri)


def test_missing_store_directory(tmp_path):
    store = open_store((tmp_path / "nope").as_uri())
    with pytest.raises(NoSuchBucket, match=r"store directory .*nope does not exist"):
        store.list_versions()
    with pytest.raises(NoSuchBucket):
        store.read_manifest("resnet50", "1")


def test_push_creates_the_store_directory(tmp_path):
    store = open_store(tmp_path / "new" / "store")
    store.push(*fake_archive(tmp_path / "src", "1"))
    assert store.list_versions() == ["1"]


def test_names_are_validated(store, tmp_path):
    with pytest.raises(InputError, match="invalid channel"):
        store.resolve_channel("resnet50", "Stable!")
    with pytest.raises(InputError, match="invalid model name"):
        store.list_versions("channels")
    with pytest.raises(InputError, match="invalid version"):
        store.read_manifest("resnet50", "v1")
    with pytest.raises(StoreError, match="invalid store key"):
        store.backend.get_bytes("../outside")


def test_kms_is_refused_on_file_stores(store, tmp_path):
    with pytest.raises(InputError, match="s3:// stores only"):
        store.push(*fake_archive(tmp_path / "src", "1"), kms_key_id="alias/models")
    assert store.list_versions() == []


def test_malformed_channel_pointer(store, tmp_path):
    store.push(*fake_archive(tmp_path / "src", "1"))
    store.set_channel("resnet50", "stable", "1")
    store.backend.put_bytes(channel_key("resnet50", "canary"), b"latest\n")
    with pytest.raises(IntegrityError, match="malformed channel pointer"):
        store.resolve_channel("resnet50", "canary")
    assert store.channels("resnet50") == {"stable": "1"}  # skipped, not fatal


def test_channel_pointer_format(store, tmp_path):
    store.push(*fake_archive(tmp_path / "src", "3"))
    store.set_channel("resnet50", "stable", "3")
    assert json.loads(store.backend.get_bytes(channel_key("resnet50", "stable"))) == {"version": "3"}


def test_manifest_stored_under_the_wrong_version_is_refused(store, tmp_path, capsys):
    archive, manifest = fake_archive(tmp_path / "src", "1")
    store.push(archive, manifest)
    store.backend.put_bytes(manifest_key("resnet50", "2"), manifest.to_json().encode())  # copied by hand
    assert store.list_versions() == ["1", "2"]
    with pytest.raises(IntegrityError, match="describes resnet50 v1 but is stored as resnet50 v2"):
        store.fetch("resnet50", "2", tmp_path / "dest")
    assert not (tmp_path / "dest" / "model.mar").exists()

    assert main(["versions", "--store", store.uri]) == 0
    out = capsys.readouterr().out
    assert "unreadable manifest" in out and manifest.sha256[:12] in out


def test_push_of_a_missing_archive(store, tmp_path, capsys):
    assert main(["push", str(tmp_path / "nothing.mar"), "--store", store.uri]) == 2
    assert "no such archive" in capsys.readouterr().err


def test_push_takes_a_directory(store, tmp_path, capsys):
    archive, manifest = fake_archive(tmp_path / "resnet50" / "4", "4")
    assert main(["push", str(archive.parent), "--store", store.uri]) == 0
    assert store.read_manifest("resnet50", "4") == manifest
    assert "promote it with: resnet-serving promote" in capsys.readouterr().out


def test_fetch_dest_is_flat_and_verified(store, tmp_path):
    archive, manifest = fake_archive(tmp_path / "src", "1")
    store.push(archive, manifest)
    dest = tmp_path / "models"
    store.fetch("resnet50", "1", dest)
    assert sorted(os.listdir(dest)) == ["manifest.json", "model.mar"]
    Manifest.load(dest / "manifest.json").verify_file(dest / "model.mar")


@pytest.mark.parametrize(
    ("flag_version", "flag_channel", "env", "expected"),
    [
        ("3", None, {"RESNET_SERVING_MODEL_CHANNEL": "stable"}, ("3", None)),
        (None, "canary", {"RESNET_SERVING_MODEL_VERSION": "3"}, (None, "canary")),  # a flag beats the env
        (None, None, {"RESNET_SERVING_MODEL_VERSION": "3", "RESNET_SERVING_MODEL_CHANNEL": "stable"}, ("3", None)),
        (None, None, {"RESNET_SERVING_MODEL_VERSION": "", "RESNET_SERVING_MODEL_CHANNEL": "stable"}, (None, "stable")),
    ],
)
def test_fetch_target_precedence(flag_version, flag_channel, env, expected):
    assert fetch_target(flag_version, flag_channel, env) == expected


def test_fetch_target_needs_something():
    with pytest.raises(InputError, match="--version or --channel"):
        fetch_target(None, None, {"RESNET_SERVING_MODEL_VERSION": "", "RESNET_SERVING_MODEL_CHANNEL": ""})


def test_store_flag_falls_back_to_the_environment(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESNET_SERVING_STORE", store.uri)
    assert main(["versions", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["store"] == store.uri
    monkeypatch.delenv("RESNET_SERVING_STORE")
    assert main(["versions"]) == 2
    assert "--store" in capsys.readouterr().err


def test_progress_is_quiet_off_a_terminal(capsys):
    assert terminal_progress() is no_progress  # pytest's stderr is not a TTY
    with terminal_progress(enabled=True)("push resnet50 v1", 10) as advance:
        advance(10)
    assert "push resnet50 v1" in capsys.readouterr().err
