"""Start, wait for, and stop a TorchServe process tree, leaving no orphan Java or Python process.

TorchServe is started in its own session (process group): the launcher, the Java front end and every
Python worker share one group, so stopping signals the whole group, waits, then kills what is left.

The group must not outlive the process that started it, even when that process is SIGKILLed (no clean-up
runs then). Two guards: the launcher gets a parent-death signal (Linux), and a watchdog process
(:mod:`~resnet_serving.torchserve.watchdog`) stops the rest of the group, Java and the workers, when its pipe
from the starter closes.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from resnet_serving.errors import Stopped, TorchServeError
from resnet_serving.settings import ENV_TORCH_THREADS, environment
from resnet_serving.torchserve import config as ts_config
from resnet_serving.torchserve.java import find_java_home
from resnet_serving.torchserve.probe import model_answers
from resnet_serving.torchserve.requestlog import MARK
from resnet_serving.torchserve.watchdog import group_pids as _group_pids
from resnet_serving.torchserve.watchdog import signal_group as _signal_group

#: The front end's log4j2 configuration (see the comment in the file for how it differs from TorchServe's).
LOG_CONFIG = Path(__file__).with_name("log4j2.xml")


def _torchserve_bin() -> str:
    cand = Path(sys.executable).parent / "torchserve"
    if cand.exists():
        return str(cand)
    raise TorchServeError(f"torchserve not found next to {sys.executable}: pip install 'resnet-serving[serve]'")


class TorchServe:
    """One TorchServe instance rendered from a :class:`ServeConfig`, run from ``run_dir``."""

    def __init__(
        self,
        cfg: ts_config.ServeConfig,
        run_dir: Path,
        *,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
        request_sink: Callable[[str], None] | None = None,
    ) -> None:
        """``request_sink``: called with each request line (:mod:`~resnet_serving.torchserve.requestlog`) the front
        end prints; without one, those lines stay in ``log_file`` with the rest of its output."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.extra_env = dict(env or {})
        self.log_file = log_file or self.run_dir / "torchserve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.started_at: float | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watch_fd: int | None = None
        self.request_sink = request_sink
        self._forwarder: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.proc is not None:
            raise TorchServeError("already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / "tmp"
        logs = self.run_dir / "logs"
        tmp.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        if self.cfg.tmp_dir is None:
            self.cfg = dataclasses.replace(self.cfg, tmp_dir=tmp)
        cfg_path = self.run_dir / "config.properties"
        cfg_path.write_text(ts_config.render(self.cfg), encoding="utf-8")
        java_home = find_java_home()
        threads = str(self.cfg.torch_threads)
        env = dict(environment())
        env.update(
            {
                "JAVA_HOME": str(java_home),
                "PATH": os.pathsep.join(
                    [str(java_home / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")]
                ),
                # Per-instance temp dir: TorchServe keeps its pid file in $TMPDIR and refuses to start a second
                # instance that shares it.
                "TMPDIR": str(tmp),
                "LOG_LOCATION": str(logs),
                "METRICS_LOCATION": str(logs),
                ENV_TORCH_THREADS: threads,
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        cmd = [
            _torchserve_bin(),
            "--start",
            "--foreground",
            "--ncs",
            "--ts-config", str(cfg_path),
            "--model-store", str(self.cfg.model_store.resolve()),
            "--log-config", str(LOG_CONFIG),
        ]  # fmt: skip
        self._log = open(self.log_file, "ab")
        self._start_watchdog()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log if self.request_sink is None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
        if self.request_sink is not None:
            assert self.proc.stdout is not None
            self._forwarder = threading.Thread(
                target=self._forward, args=(self.proc.stdout, self.request_sink), name="torchserve-stdout", daemon=True
            )
            self._forwarder.start()
        assert self._watch_fd is not None
        os.write(self._watch_fd, f"{self.proc.pid}\n".encode("ascii"))  # the group's id: the launcher's pid

    def _forward(self, pipe: IO[bytes], sink: Callable[[str], None]) -> None:
        """Until the front end's stdout closes: request lines to ``sink``, every other line to the log file."""
        mark = MARK.encode("ascii")
        log = self._log
        assert log is not None
        with pipe:
            for raw in iter(pipe.readline, b""):
                if raw.startswith(mark):
                    try:
                        sink(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                        continue
                    except (OSError, ValueError):  # our stdout is gone (a closed pipe): keep the line in the file
                        pass
                try:
                    log.write(raw)
                    log.flush()
                except ValueError:  # stop() closed the file after giving up on this thread
                    return

    def _start_watchdog(self) -> None:
        """Start the watchdog before the launcher, so that no moment exists when the group runs unguarded."""
        read_fd, write_fd = os.pipe()  # both ends close-on-exec: only the watchdog gets the read end
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-m", "resnet_serving.torchserve.watchdog", str(read_fd)],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # out of the terminal's group: Ctrl-C is for serve, not for the watchdog
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._watch_fd = write_fd

    def _stop_watchdog(self) -> None:
        if self._watch_fd is not None:
            os.close(self._watch_fd)  # end of file: the watchdog sees the group gone and exits
            self._watch_fd = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait(timeout=5)
            self._watchdog = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 180.0, poll: float = 0.5, stop: threading.Event | None = None) -> float:
        """Block until the model answers a real prediction. Returns seconds since start; raises
        :class:`Stopped` as soon as ``stop`` is set (Ctrl-C while waiting)."""
        stop = stop or threading.Event()
        if self.proc is None or self.started_at is None:
            raise TorchServeError("not started")
        deadline = time.monotonic() + timeout
        detail = "not polled yet"
        while time.monotonic() < deadline:
            if not self.alive():
                raise TorchServeError(
                    f"TorchServe exited with code {self.proc.returncode} before the model was ready; "
                    f"last log lines:\n{self.tail_log()}"
                )
            ok, detail = model_answers(self.cfg.inference_url, model=self.cfg.model_name, timeout=10)
            if ok:
                return time.monotonic() - self.started_at
            if stop.wait(poll):  # poll interval between readiness checks, bounded by the deadline above
                raise Stopped("stopped while waiting for the model")
        raise TorchServeError(
            f"model not ready after {timeout:.0f}s (last probe: {detail}); last log lines:\n{self.tail_log()}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the whole process group, wait, then SIGKILL whatever is left. Idempotent."""
        proc = self.proc
        if proc is None:
            self._stop_watchdog()
            return
        pgid = proc.pid  # start_new_session=True: the launcher leads its own group
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pgid):
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is not None and _group_alive(pgid):
                time.sleep(0.1)  # launcher gone; give Java and the workers a moment to follow
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
            end = time.monotonic() + 10
            while time.monotonic() < end and _group_alive(pgid):
                time.sleep(0.05)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._stop_watchdog()
        if self._forwarder is not None:
            self._forwarder.join(timeout=5)  # the group is gone: its stdout is at end of file
            self._forwarder = None
        if self._log:
            self._log.close()
            self._log = None
        self.proc = None
        if os.getpid() == 1:
            _reap_orphans()  # as a container's PID 1 we inherit Java/workers whose launcher exited first

    def tail_log(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def group_pids(self) -> list[int]:
        return _group_pids(self.proc.pid) if self.proc else []

    def __enter__(self) -> TorchServe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when its parent dies (Linux; None elsewhere).

    The kernel sends it when the *thread* that forked the child exits, so it is set only when starting from the
    main thread; from another thread the watchdog alone guards the group."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: the child only makes the call
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _group_alive(pgid: int) -> bool:
    return bool(_group_pids(pgid))
