"""The machine, the process limits and the private redis-server a benchmark run uses."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from localservers import RedisServer

#: File descriptors the naive baseline needs at 1,000 subscriptions, with room to spare.
FDS_NEEDED = 4096
#: Clients the private redis-server accepts (its default, 10,000, needs more fds than a
#: container may grant it; the naive baseline needs ~1,000).
MAX_CLIENTS = 4096


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft != resource.RLIM_INFINITY and soft < FDS_NEEDED:
        raise SystemExit(
            f"The open-files limit is {soft} (hard {hard}); the naive baseline needs "
            f"{FDS_NEEDED}. Raise it with `ulimit -n {FDS_NEEDED}` as root."
        )
    return soft, hard


def start_redis() -> RedisServer:
    """Start the private redis-server every measurement of the run talks to."""
    server = RedisServer("--maxclients", str(MAX_CLIENTS)).start()
    with server.client(decode_responses=True) as admin:
        granted = int(admin.config_get("maxclients")["maxclients"])
    if granted < 2048:
        server.stop()
        raise SystemExit(
            f"redis-server accepts only {granted} clients (too few open files allowed); "
            f"the naive baseline needs over 1,000."
        )
    return server


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine(server: RedisServer) -> dict[str, Any]:
    """Describe what the figures were measured on."""
    assert server.executable is not None
    redis_version = subprocess.run(
        [server.executable, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "redis_server": redis_version,
        "load_average_at_start": list(os.getloadavg()),
    }


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    return threading.active_count()


def settle(seconds: float = 0.2) -> None:
    """Let threads that were just stopped finish before the next measurement."""
    time.sleep(seconds)
