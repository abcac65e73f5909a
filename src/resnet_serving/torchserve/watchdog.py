"""Kill a TorchServe process group when the process that started it dies, however it dies (SIGKILL included).

``python -m resnet_serving.torchserve.watchdog FD`` reads the group's id as one line from the pipe ``FD``, then
waits for the pipe's end of file: the kernel closes the starter's end when the starter exits, for any reason.
Then it stops whatever is left of the group (SIGTERM, then SIGKILL) and exits. The launcher's parent-death
signal alone is not enough: Java and the workers are the launcher's children, and a parent-death signal is
not inherited. Standard library only, so it starts in milliseconds and holds little memory.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

#: Seconds between SIGTERM and SIGKILL once the starter is gone: nobody is left to drain, so be quick.
GRACE_S = 3.0
#: How often the watchdog checks that the group still exists, so it does not outlive it.
POLL_S = 1.0


def group_pids(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are still running (zombies excluded), from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                stat = f.read()
            # fields after the ")" of the command name: state ppid pgrp ...
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(pgid: int, grace: float = GRACE_S) -> None:
    signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and group_pids(pgid):
        time.sleep(0.05)
    if group_pids(pgid):
        signal_group(pgid, signal.SIGKILL)


def _read_line(fd: int) -> str | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            return None
        data += chunk
    return data.decode("ascii").strip()


def watch(fd: int) -> None:
    line = _read_line(fd)
    if not line:
        return  # the starter died before it started the group, or gave up
    pgid = int(line)
    while True:
        readable, _, _ = select.select([fd], [], [], POLL_S)
        if readable and not os.read(fd, 64):
            break  # end of file: the starter has exited
        if not group_pids(pgid):
            return  # the group ended (a clean stop): nothing to guard any more
    if group_pids(pgid):
        stop_group(pgid)


def main(argv: list[str]) -> int:
    # Terminal signals belong to the starter: this process only ever acts on the pipe's end of file.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    watch(int(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
