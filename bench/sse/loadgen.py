"""The controller's handle on the client processes (``bench.sse.clients``).

``ClientPool`` starts the processes and sends each command to all of them at once,
splitting stream counts evenly; the replies are combined. Every process is stopped by
``close()`` (the pool is a context manager), killed if it does not quit in time.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from localservers import end_process

from .server import usage

ROOT = Path(__file__).resolve().parent.parent.parent
#: Seconds a reply may take beyond the command's own timeout.
REPLY_MARGIN = 30.0


class ClientError(RuntimeError):
    """A client process failed, or did not answer in time."""


class ClientPool:
    """``processes`` client processes, driven together."""

    def __init__(self, processes: int) -> None:
        self.size = processes
        self.processes: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Self:
        try:
            for _ in range(self.size):
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.sse.clients"],
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            self._replies(30.0)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        processes, self.processes = self.processes, []
        for process in processes:
            try:
                assert process.stdin is not None
                process.stdin.write('{"op": "quit"}\n')
                process.stdin.close()
            except (OSError, ValueError):
                pass
        for process in processes:
            if _waits(process, 10.0):
                end_process(process, signal.SIGTERM, 5.0)  # type: ignore[arg-type]

    def _replies(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        replies: list[dict[str, Any]] = []
        for process in self.processes:
            assert process.stdout is not None
            remaining = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([process.stdout], [], [], remaining)
            line = process.stdout.readline() if ready else ""
            if not line:
                raise ClientError(f"client process {process.pid} did not answer in {timeout} s")
            reply = json.loads(line)
            if "error" in reply:
                raise ClientError(f"client process {process.pid}: {reply['error']}")
            replies.append(reply)
        return replies

    def command(self, op: str, *, within: float = 30.0, **arguments: Any) -> list[dict[str, Any]]:
        """Send one command to every process; return their replies (``within`` s, plus
        a margin)."""
        return self.commands([{"op": op, **arguments}] * len(self.processes), within)

    def commands(self, commands: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        """Send each process its own command; return their replies."""
        for process, command in zip(self.processes, commands, strict=True):
            assert process.stdin is not None
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
        return self._replies(timeout + REPLY_MARGIN)

    def open(self, group: str, count: int, port: int, path: str, **options: Any) -> dict[str, Any]:
        """Open ``count`` streams split over the processes; combined figures."""
        timeout = float(options.pop("timeout"))
        shares = [count // self.size + (index < count % self.size) for index in range(self.size)]
        commands = [
            {"op": "open", "group": group, "count": share, "port": port, "path": path}
            | {"timeout": timeout, **options}
            for share in shares
        ]
        replies = self.commands(commands, timeout)
        statuses: dict[str, int] = {}
        for reply in replies:
            for status, number in reply["statuses"].items():
                statuses[status] = statuses.get(status, 0) + number
        return {
            "seconds": max(reply["seconds"] for reply in replies),
            "statuses": statuses,
            "opened": statuses.get("200", 0),
            "timed_out": sum(reply["timed_out"] for reply in replies),
        }

    def cpu_s(self) -> float:
        """CPU seconds the client processes have used so far."""
        return sum(usage(process.pid).cpu_s for process in self.processes)

    def latencies(self, group: str) -> list[float]:
        return [
            value
            for reply in self.command("latencies", group=group)
            for value in reply["latencies"]
        ]

    def jumps(self, group: str) -> list[list[float]]:
        """Every (stream, expected seq, received seq, time) of the group, stream ids made
        unique across processes."""
        jumps = []
        for number, reply in enumerate(self.command("jumps", group=group)):
            jumps += [[number * 1_000_000 + jump[0], *jump[1:]] for jump in reply["jumps"]]
        return jumps

    def state(self, group: str, min_seq: int = 0) -> dict[str, int]:
        replies = self.command("state", group=group, min_seq=min_seq)
        return {key: sum(reply[key] for reply in replies) for key in replies[0]}

    def drop(self, group: str) -> float:
        """Hang up every stream of the group; return when the last process did (epoch)."""
        return float(max(reply["at"] for reply in self.command("drop", group=group)))

    def wait_ended(self, group: str, timeout: float) -> dict[str, Any]:
        replies = self.command("wait_ended", within=timeout, group=group, timeout=timeout)
        lasts = [reply["last"] for reply in replies if reply["last"] is not None]
        return {
            "ended": sum(reply["ended"] for reply in replies),
            "streams": sum(reply["streams"] for reply in replies),
            "last": max(lasts, default=None),
        }


def _waits(process: subprocess.Popen[str], timeout: float) -> bool:
    """Wait for ``process`` to exit; True if it is still running after ``timeout`` s."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return True
    return False
