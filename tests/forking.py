"""Forked children for the fork-safety tests, reporting to the parent through a pipe.

Children report as JSON lines and always end with ``os._exit``; an alarm kills a child
that hangs, and the parent kills any child still alive at the end.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from .waiting import WAIT

#: Seconds after which a child that is still running kills itself.
CHILD_ALARM = 30

Report = Callable[..., None]


class Child:
    """A forked child running ``body(report)``; the parent reads its reports."""

    def __init__(self, body: Callable[[Report], None]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            self._run_child(body, write_end)
        os.close(write_end)
        self.pid = pid
        self.exit_code: int | None = None
        self._reader = os.fdopen(read_end, "rb")

    @staticmethod
    def _run_child(body: Callable[[Report], None], write_end: int) -> None:
        code = 1
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(CHILD_ALARM)

            def report(**fields: Any) -> None:
                os.write(write_end, json.dumps(fields).encode() + b"\n")

            body(report)
            code = 0
        except BaseException:
            with suppress(BaseException):
                os.write(write_end, json.dumps({"error": traceback.format_exc()}).encode() + b"\n")
        finally:
            os._exit(code)

    def next_report(self, timeout: float = WAIT) -> dict[str, Any]:
        """Return the child's next report; fail if it reports an error or nothing in time."""
        ready, _, _ = select.select([self._reader], [], [], timeout)
        assert ready, f"the child reported nothing within {timeout} s"
        line = self._reader.readline()
        assert line, f"the child ended without reporting (exit code {self.wait()})"
        fields: dict[str, Any] = json.loads(line)
        assert "error" not in fields, f"the child failed:\n{fields['error']}"
        return fields

    def wait(self, timeout: float = WAIT) -> int:
        """Return the child's exit code once it has ended."""
        if self.exit_code is None:
            deadline = time.monotonic() + timeout
            while (reaped := os.waitpid(self.pid, os.WNOHANG))[0] == 0:
                assert time.monotonic() < deadline, f"the child still runs after {timeout} s"
                time.sleep(0.01)
            self.exit_code = os.waitstatus_to_exitcode(reaped[1])
        return self.exit_code

    def kill(self) -> None:
        if self.exit_code is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()
        self._reader.close()


@contextmanager
def forked(body: Callable[[Report], None]) -> Iterator[Child]:
    child = Child(body)
    try:
        yield child
    finally:
        child.kill()
