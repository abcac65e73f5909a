"""Store behaviour, identical on both backends: every test runs against moto's S3 server and a file:// tree.

Through the API (`open_store`) and through the CLI (`resnet_serving.cli.main`), as the init container and
users call it. Fake archives are random bytes with a real manifest (tests/fixtures/archives.py).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import pytest

from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
from resnet_serving.artifact.manifest import Manifest
from resnet_serving.cli import main
from resnet_serving.errors import IntegrityError, NotFound
from resnet_serving.store import archive_key, manifest_key, open_store
from tests.fixtures.archives import fake_archive

MiB = 1 << 20


@pytest.fixture(params=["s3", "file"])
def backend_kind(request):
    return request.param


@pytest.fixture
def endpoint(request, backend_kind):
    return request.getfixturevalue("moto_s3").url if backend_kind == "s3" else None


@pytest.fixture
def store_uri(request, backend_kind, tmp_path):
    if backend_kind == "s3":
        return request.getfixturevalue("s3_store_uri")
    root = tmp_path / "store"
    root.mkdir()  # like the bucket: the store exists, empty
    return root.as_uri()


@pytest.fixture
def store(store_uri, endpoint):
    return open_store(store_uri, endpoint_url=endpoint)


@pytest.fixture
def cli(capsys, store_uri, endpoint):
    """Run `resnet-serving CMD --store <store> [--endpoint-url <moto>] ARGS...`; return (rc, stdout, stderr)."""

    def run(command, *args, store=True):
        argv = [command, *map(str, args)]
        if store:
            argv += ["--store", store_uri]
            if endpoint:
                argv += ["--endpoint-url", endpoint]
        rc = main(argv)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def src(tmp_path, version, size=4096, name="src"):
    # labelled pretrained: push refuses random weights for s3:// (tests/integration/test_push_random_weights.py)
    return fake_archive(tmp_path / f"{name}-{version}", version, size, source="imagenet")


def test_api_round_trip(store, tmp_path):
    archive, manifest = src(tmp_path, "1")
    assert store.list_versions() == []
    store.push(archive, manifest)
    assert store.list_versions() == ["1"]
    assert store.read_manifest("resnet50", "1") == manifest
    assert store.resolve_channel("resnet50", "stable") is None
    store.set_channel("resnet50", "stable", "1")
    assert store.resolve_channel("resnet50", "stable") == "1"
    assert store.channels("resnet50") == {"stable": "1"}

    dest = tmp_path / "dest"
    path = store.fetch("resnet50", "1", dest)
    assert path == dest / ARCHIVE_NAME
    assert path.read_bytes() == archive.read_bytes()
    assert Manifest.load(dest / MANIFEST_NAME) == manifest
    assert sorted(os.listdir(dest)) == [MANIFEST_NAME, ARCHIVE_NAME]  # flat, no temp files left


def test_cli_round_trip(cli, tmp_path):
    archive, manifest = src(tmp_path, "1")
    rc, out, err = cli("push", archive, "--version", "1")
    assert (rc, err) == (0, "")
    assert "pushed resnet50 v1" in out and manifest.sha256[:12] in out

    rc, out, _ = cli("promote", "--version", "1")
    assert rc == 0 and "stable: unset -> v1" in out

    rc, out, _ = cli("versions", "--json")
    listing = json.loads(out)
    assert listing["channels"] == {"stable": "1"}
    assert [(v["version"], v["channels"], v["sha256"], v["size"]) for v in listing["versions"]] == [
        ("1", ["stable"], manifest.sha256, manifest.size)
    ]
    assert listing["versions"][0]["weights_source"] == "imagenet"

    rc, out, _ = cli("versions")
    row = next(line for line in out.splitlines() if manifest.sha256[:12] in line)
    assert "stable" in row and "imagenet" in row

    dest = tmp_path / "dest"
    rc, out, _ = cli("fetch", "--channel", "stable", "--dest", dest)
    assert rc == 0 and "fetched resnet50 v1 (channel stable)" in out
    assert (dest / ARCHIVE_NAME).read_bytes() == archive.read_bytes()
    assert Manifest.load(dest / MANIFEST_NAME) == manifest


def test_versions_order_numerically(store, cli, tmp_path):
    for version in ("10", "2", "1", "1.5"):
        store.push(*src(tmp_path, version))
    assert store.list_versions() == ["1", "1.5", "2", "10"]
    rc, out, _ = cli("versions", "--json")
    assert rc == 0
    assert [v["version"] for v in json.loads(out)["versions"]] == ["1", "1.5", "2", "10"]


def test_push_refuses_overwrite_without_force(store, cli, tmp_path):
    first, _ = src(tmp_path, "1", name="first")
    second, _ = src(tmp_path, "1", name="second")  # same version, different bytes
    assert cli("push", first)[0] == 0

    rc, _, err = cli("push", second, "--version", "1")
    assert rc == 2
    assert "resnet50 version 1 already exists" in err and "--force" in err
    assert store.fetch("resnet50", "1", tmp_path / "a").read_bytes() == first.read_bytes()

    rc, _, err = cli("push", second, "--version", "1", "--force")
    assert (rc, err) == (0, "")
    assert store.fetch("resnet50", "1", tmp_path / "b").read_bytes() == second.read_bytes()
    assert store.list_versions() == ["1"]


def test_push_refuses_a_version_other_than_the_manifests(store, cli, tmp_path):
    archive, _ = src(tmp_path, "1")
    rc, _, err = cli("push", archive, "--version", "2")
    assert rc == 2
    assert "manifest says version 1, not 2" in err and "resnet-serving archive --version 2" in err
    assert store.list_versions() == []


def test_push_refuses_an_archive_that_does_not_match_its_manifest(store, cli, tmp_path):
    archive, _ = src(tmp_path, "1")
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    rc, _, err = cli("push", archive)
    assert rc == 1 and "does not match its manifest" in err
    assert store.list_versions() == []


def test_promote_refuses_a_missing_version(store, cli, tmp_path):
    store.push(*src(tmp_path, "1"))
    rc, _, err = cli("promote", "--version", "7", "--channel", "canary")
    assert rc == 2
    assert "resnet50 version 7 is not in" in err and "versions there: 1" in err
    assert store.resolve_channel("resnet50", "canary") is None


def test_promote_moves_the_channel_back(store, cli, tmp_path):
    for version in ("1", "2"):
        store.push(*src(tmp_path, version))
    assert cli("promote", "--version", "2")[0] == 0
    rc, out, _ = cli("promote", "--version", "1")
    assert rc == 0 and "stable: v2 -> v1" in out
    assert store.resolve_channel("resnet50", "stable") == "1"


@pytest.mark.parametrize("tamper", ["same-size", "truncated"])
def test_fetch_refuses_a_tampered_archive(store, cli, tmp_path, tamper):
    archive, manifest = src(tmp_path, "1")
    store.push(archive, manifest)
    store.set_channel("resnet50", "stable", "1")
    data = bytearray(archive.read_bytes())
    if tamper == "same-size":
        data[-1] ^= 0x01
    else:
        del data[-10:]
    store.backend.put_bytes(archive_key("resnet50", "1"), bytes(data))  # changed after the manifest

    dest = tmp_path / "dest"
    rc, out, err = cli("fetch", "--channel", "stable", "--dest", dest)
    assert rc != 0 and "fetched" not in out
    assert "refusing resnet50 v1" in err
    assert ("sha256" in err) if tamper == "same-size" else ("bytes but its manifest says" in err)
    assert os.listdir(dest) == []  # no archive, no manifest, no temp file

    with pytest.raises(IntegrityError):
        store.fetch("resnet50", "1", dest)
    assert os.listdir(dest) == []


def test_failed_fetch_keeps_the_previous_verified_pair(store, tmp_path):
    store.push(*src(tmp_path, "1"))
    archive2, manifest2 = src(tmp_path, "2")
    store.push(archive2, manifest2)
    dest = tmp_path / "dest"
    v1 = store.fetch("resnet50", "1", dest).read_bytes()
    store.backend.put_bytes(archive_key("resnet50", "2"), b"corrupt")
    with pytest.raises(IntegrityError):
        store.fetch("resnet50", "2", dest)
    assert sorted(os.listdir(dest)) == [MANIFEST_NAME, ARCHIVE_NAME]
    assert (dest / ARCHIVE_NAME).read_bytes() == v1
    Manifest.load(dest / MANIFEST_NAME).verify_file(dest / ARCHIVE_NAME)  # still a consistent v1


def test_fetch_replaces_and_then_skips_a_verified_dest(store, tmp_path, monkeypatch):
    archive1, _ = src(tmp_path, "1")
    archive2, manifest2 = src(tmp_path, "2")
    store.push(archive1, Manifest.load(archive1.with_name(MANIFEST_NAME)))
    store.push(archive2, manifest2)
    dest = tmp_path / "dest"
    store.fetch("resnet50", "1", dest)
    store.fetch("resnet50", "2", dest)
    assert (dest / ARCHIVE_NAME).read_bytes() == archive2.read_bytes()
    assert Manifest.load(dest / MANIFEST_NAME) == manifest2

    calls = []
    monkeypatch.setattr(store.backend, "download_file", lambda *a, **k: calls.append(a))
    assert store.fetch("resnet50", "2", dest) == dest / ARCHIVE_NAME
    assert calls == []  # already there and verified: an init container restart downloads nothing


class Crash(Exception):
    """Stands in for the process dying (or Ctrl-C) in the middle of an upload."""


def crash_after(limit):
    """A progress factory that raises :class:`Crash` once ``limit`` bytes have been sent."""

    @contextmanager
    def progress(description, total):
        moved = 0

        def advance(n):
            nonlocal moved
            moved += n
            if moved >= limit:
                raise Crash(f"{moved} of {total} bytes")

        yield advance

    return progress


def test_interrupted_upload_is_never_visible(store, cli, tmp_path):
    archive, manifest = src(tmp_path, "1", size=17 * MiB)  # three 8 MiB parts on S3
    with pytest.raises(Crash):
        store.push(archive, manifest, progress=crash_after(9 * MiB))

    assert store.list_versions() == []
    assert not store.backend.exists(manifest_key("resnet50", "1"))
    assert not store.backend.exists(archive_key("resnet50", "1"))  # S3: the multipart upload was aborted
    rc, out, _ = cli("versions", "--json")
    assert rc == 0 and json.loads(out)["versions"] == []
    with pytest.raises(NotFound):
        store.fetch("resnet50", "1", tmp_path / "dest")
    with pytest.raises(NotFound):
        store.set_channel("resnet50", "stable", "1")

    store.push(archive, manifest)  # the version was not taken by the failed attempt
    assert store.list_versions() == ["1"]


def test_archive_without_manifest_is_not_a_version(store, cli, tmp_path):
    """A crash after the archive upload but before the manifest: nothing lists, fetches or promotes it."""
    archive, _ = src(tmp_path, "1")
    store.push(*src(tmp_path, "2"))
    store.backend.upload_file(archive_key("resnet50", "1"), archive)
    assert store.list_versions() == ["2"]
    rc, _, err = cli("promote", "--version", "1")
    assert rc == 2 and "resnet50 version 1 is not in" in err
    rc, _, err = cli("fetch", "--version", "1", "--dest", tmp_path / "dest")
    assert rc == 2 and "not in" in err


def test_fetch_reads_the_init_container_environment(store, store_uri, endpoint, tmp_path, monkeypatch, capsys):
    for version in ("1", "2"):
        store.push(*src(tmp_path, version))
    store.set_channel("resnet50", "stable", "2")
    monkeypatch.setenv("RESNET_SERVING_STORE", store_uri)
    monkeypatch.setenv("RESNET_SERVING_MODEL_CHANNEL", "stable")
    monkeypatch.setenv("RESNET_SERVING_MODEL_VERSION", "")  # empty: use the channel
    if endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)

    assert main(["fetch", "--dest", str(tmp_path / "by-channel")]) == 0
    assert Manifest.load(tmp_path / "by-channel" / MANIFEST_NAME).version == "2"

    monkeypatch.setenv("RESNET_SERVING_MODEL_VERSION", "1")  # a pinned version wins over the channel
    assert main(["fetch", "--dest", str(tmp_path / "pinned")]) == 0
    assert Manifest.load(tmp_path / "pinned" / MANIFEST_NAME).version == "1"
    capsys.readouterr()


def test_fetch_of_an_unset_channel_says_what_to_do(cli, tmp_path, store):
    store.push(*src(tmp_path, "1"))
    rc, _, err = cli("fetch", "--channel", "canary", "--dest", tmp_path / "dest")
    assert rc == 2
    assert "channel 'canary' of resnet50 is not set" in err and "resnet-serving promote" in err


def test_versions_marks_a_channel_pointing_at_a_missing_version(store, cli, tmp_path):
    store.push(*src(tmp_path, "1"))
    store.set_channel("resnet50", "stable", "1")
    store.backend.delete(manifest_key("resnet50", "1"))
    rc, out, _ = cli("versions")
    assert rc == 0
    assert "channel stable points at v1, which is not in the store" in out


def test_missing_version_message_names_the_store(store):
    with pytest.raises(NotFound) as info:
        store.read_manifest("resnet50", "3")
    assert f"resnet50 version 3 is not in {store.uri}" in info.value.message
