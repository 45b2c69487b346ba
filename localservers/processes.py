"""Child processes for tests and benchmarks: free ports, polling, and a lifecycle.

``Service`` is anything started by ``with``; ``LoggedProcess`` is a child process whose
output goes to a log that is quoted when it fails. No Django imports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is truthy; return False if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def end_process(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` to ``process`` if it runs and wait for it; SIGKILL it after ``timeout`` s."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class Service:
    """Something started by ``with`` (``start()``) and stopped when the block ends."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class LoggedProcess(Service):
    """A child process whose output goes to a temporary log file, quoted when it fails.

    Subclasses give ``command()`` and ``ready()``; ``start()`` returns once ``ready()`` is
    true, and raises RuntimeError with the log if the process exits or is not ready within
    ``start_timeout``. ``stop()`` sends ``stop_signal``, kills it after ``stop_timeout``,
    and deletes the log; it is idempotent, but the object cannot be started again.
    """

    start_timeout = 20.0
    poll_interval = 0.05
    stop_signal = signal.SIGTERM
    stop_timeout = 5.0

    def __init__(self, label: str, log_prefix: str, cwd: Path, environ: dict[str, str]) -> None:
        self.label = label
        self.cwd = cwd
        self.environ = environ
        self._log = tempfile.NamedTemporaryFile(prefix=f"{log_prefix}-", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the running process is ready; polled until ``start_timeout``."""
        raise NotImplementedError

    def base_environ(self) -> dict[str, str]:
        """The environment ``environ`` is laid over: this process's, by default."""
        return dict(os.environ)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> Self:
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env={**self.base_environ(), **self.environ},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if not wait_until(self._ready, self.start_timeout, interval=self.poll_interval):
            self.stop()
            raise RuntimeError(f"{self.label} did not start; its log:\n{self.log()}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited; its log:\n{self.log()}")
        return self.ready()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            end_process(process, self.stop_signal, self.stop_timeout)
        self._log.close()
