"""The one atomic write (a target is its old content or its complete new content) and the one signal handling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnet_serving.files import atomic_write, atomic_write_bytes, place_file


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(target.parent) == ["f.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def half(f) -> None:
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_before_replace_can_refuse_the_complete_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    seen: list[bytes] = []

    def refuse(tmp: Path) -> None:
        seen.append(tmp.read_bytes())
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum"):
        atomic_write(target, lambda f: f.write(b"complete"), before_replace=refuse)
    assert seen == [b"complete"] and not target.exists() and os.listdir(tmp_path) == []


def test_place_file_links_and_replaces(tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.write_bytes(b"v2")
    dest = tmp_path / "m.mar"
    dest.write_bytes(b"v1")
    place_file(src, dest)
    assert dest.read_bytes() == b"v2" and os.stat(dest).st_ino == os.stat(src).st_ino
    assert sorted(os.listdir(tmp_path)) == ["a", "m.mar"]


def test_stop_signals_set_the_event_and_restore_the_previous_handlers() -> None:
    import signal

    from resnet_serving.signals import stop_event_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with stop_event_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before
