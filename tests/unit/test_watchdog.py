"""The guards that stop a TorchServe process group from outliving its starter, on real processes (`sleep` and
`sh` stand in for the launcher, Java and the workers): the watchdog and the launcher's parent-death signal."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from resnet_serving.torchserve import watchdog

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux's")


def wait_until(cond, timeout: float) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - t0


def start_watchdog() -> tuple[subprocess.Popen[bytes], int]:
    read_fd, write_fd = os.pipe()
    dog = subprocess.Popen(
        [sys.executable, "-m", "resnet_serving.torchserve.watchdog", str(read_fd)],
        pass_fds=(read_fd,),
        start_new_session=True,
    )
    os.close(read_fd)
    return dog, write_fd


def start_group(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", script], start_new_session=True)


def test_watchdog_stops_the_group_when_the_starter_goes() -> None:
    dog, fd = start_watchdog()
    group = start_group("sleep 60 & sleep 60 & wait")
    try:
        os.write(fd, f"{group.pid}\n".encode())
        wait_until(lambda: len(watchdog.group_pids(group.pid)) == 3, 10)
        os.close(fd)  # what the kernel does when the starter dies, SIGKILL included
        wait_until(lambda: not watchdog.group_pids(group.pid), 10)
        assert dog.wait(timeout=10) == 0
    finally:
        watchdog.signal_group(group.pid, 9)
        group.wait(timeout=10)


def test_watchdog_kills_what_ignores_sigterm() -> None:
    dog, fd = start_watchdog()
    group = start_group("trap '' TERM; sleep 60 & wait; wait")
    try:
        os.write(fd, f"{group.pid}\n".encode())
        wait_until(lambda: len(watchdog.group_pids(group.pid)) == 2, 10)
        time.sleep(0.2)  # let sh install its trap
        os.close(fd)
        took = wait_until(lambda: not watchdog.group_pids(group.pid), watchdog.GRACE_S + 10)
        assert took >= watchdog.GRACE_S - 0.5, "the shell ignores SIGTERM: only SIGKILL ends it"
        assert dog.wait(timeout=10) == 0
    finally:
        watchdog.signal_group(group.pid, 9)
        group.wait(timeout=10)


def test_watchdog_exits_with_the_group_and_leaves_the_starter_alone() -> None:
    dog, fd = start_watchdog()
    group = start_group("sleep 0.3")
    try:
        os.write(fd, f"{group.pid}\n".encode())
        group.wait(timeout=10)
        assert dog.wait(timeout=watchdog.POLL_S + 10) == 0  # the pipe is still open: it left on its own
    finally:
        os.close(fd)


def test_watchdog_without_a_group_exits_at_once() -> None:
    dog, fd = start_watchdog()
    os.close(fd)  # the starter died before it started anything
    assert dog.wait(timeout=10) == 0


def test_launcher_dies_with_its_starter() -> None:
    """A middle process starts `sleep` the way TorchServe.start starts the launcher, then is SIGKILLed."""
    code = textwrap.dedent(
        """
        import subprocess, sys, time
        from resnet_serving.torchserve.server import _parent_death_signal
        child = subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn=_parent_death_signal())
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as middle:
        assert middle.stdout is not None
        child = int(middle.stdout.readline())
        assert watchdog.group_pids(child) == [child]
        middle.kill()
    wait_until(lambda: not watchdog.group_pids(child), 10)
