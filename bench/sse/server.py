"""The web server under test (uvicorn serving ``bench.sse.app``) and what /proc says of it."""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from localservers import LoggedProcess, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
#: Pending connections the listening socket queues: opens come thousands at a time.
BACKLOG = 8192
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: uvicorn's event loop and HTTP parser: "asyncio" is the plain install (asyncio, h11),
#: "uvloop" is what ``uvicorn[standard]`` brings (uvloop, httptools).
FLAVOURS = {"asyncio": ("asyncio", "h11"), "uvloop": ("uvloop", "httptools")}


@dataclass(frozen=True)
class Usage:
    """What a process holds at one moment."""

    threads: int
    rss_kib: int
    fds: int
    cpu_s: float


def usage(pid: int) -> Usage:
    """Read ``pid``'s threads, resident memory, descriptors and CPU time from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    # Fields after the command name (which may hold spaces): utime and stime are 14, 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return Usage(
        threads=len(os.listdir(f"/proc/{pid}/task")),
        rss_kib=int(rss.split()[1]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        cpu_s=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
    )


class StreamServer(LoggedProcess):
    """One uvicorn worker serving ``bench.sse.app`` on a free port, its channel on
    ``redis`` with ``backend`` (testproject's BROADCAST_BACKEND: "pubsub" or "streams").

    No ``--timeout-graceful-shutdown``: how SIGTERM ends the streams is measured.
    """

    start_timeout = 60.0
    stop_timeout = 15.0

    def __init__(
        self,
        redis: RedisServer,
        secret_key: str,
        flavour: str = "asyncio",
        backend: str = "pubsub",
        heartbeat: float = 15,
    ) -> None:
        super().__init__(
            f"uvicorn ({flavour})",
            "bench-uvicorn",
            ROOT,
            {
                "DJANGO_SETTINGS_MODULE": "bench.sse.settings",
                "DJANGO_SECRET_KEY": secret_key,
                "REDIS_URL": redis.url,
                "BROADCAST_BACKEND": backend,
                "BROADCAST_STREAM_HEARTBEAT": str(heartbeat),
                "PYTHONUNBUFFERED": "1",
            },
        )
        self.flavour = flavour
        self.port = free_port()

    def command(self) -> list[str]:
        loop, http = FLAVOURS[self.flavour]
        return [sys.executable, "-m", "bench.sse.serve", "bench.sse.app:application",
                "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "off",
                "--no-access-log", "--backlog", str(BACKLOG),
                "--loop", loop, "--http", http]  # fmt: skip

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def usage(self) -> Usage:
        return usage(self.pid)

    def terminate(self) -> None:
        """Send SIGTERM, as a process manager does to stop it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
