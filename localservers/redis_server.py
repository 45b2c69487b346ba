"""Private redis-server processes for tests and benchmarks.

Each ``RedisServer`` runs its own ``redis-server`` on a free loopback port, in its own
temporary directory, with persistence off. Tests can kill, restart and freeze it.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Self

import redis

from .processes import Service, end_process, free_port, wait_until

#: Seconds a server may take to answer PING after it was launched.
START_TIMEOUT = 10.0
#: Seconds a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: Log lines quoted when a server fails to start.
LOG_TAIL_LINES = 30
#: The state of a listening socket in /proc/net/tcp.
_TCP_LISTEN = "0A"

_INSTALL_HINT = (
    "redis-server was not found on PATH. The tests start their own private Redis: install "
    "Debian's redis-server package (apt-get install redis-server), or run `make test`, "
    "which installs it when run as root."
)


class RedisServerError(RuntimeError):
    """A private redis-server could not be started or stopped."""


def _answers_ping(port: int) -> bool:
    # A raw socket, not redis-py: its retry policy would add seconds of backoff.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# Servers still running at interpreter exit (a crashed or interrupted run) are killed.
_running: weakref.WeakSet[RedisServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_running):
        server.stop()


class RedisServer(Service):
    """One private ``redis-server`` process on ``127.0.0.1:port``.

    The port is chosen once and kept across ``restart()``. The temporary directory
    lives until ``stop()``, so a killed server restarts with its files (e.g. a cluster
    ``nodes.conf``). Drive a server from one thread; ``stop()`` is idempotent.

    Raises:
        RedisServerError: ``redis-server`` is missing, or does not start or stop in time.
    """

    def __init__(self, *extra_args: str, executable: str | None = None) -> None:
        self.extra_args = extra_args
        self.executable = executable or shutil.which("redis-server")
        self.port = free_port()
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._started = False
        self._admin: redis.Redis | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer 127.0.0.1:{self.port} {state}>"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Launch the server and return once it answers PING."""
        if self.running:
            raise RedisServerError(f"{self!r} is already running.")
        if self.executable is None:
            raise RedisServerError(_INSTALL_HINT)
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="redis-test-"))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            process = self._launch()
            wait_until(functools.partial(self._answers_or_exited, process), 5.0)
            if process.poll() is None and _answers_ping(self.port) and self._serves(process):
                self._process = process
                self._started = True
                _running.add(self)
                return self
            self._reap(process, signal.SIGKILL)
            log_tail = self._log_tail()
            port_taken = "Address already in use" in log_tail or _answers_ping(self.port)
            if not port_taken or time.monotonic() > deadline:
                self.stop()
                raise RedisServerError(
                    f"redis-server on port {self.port} did not start; log tail:\n{log_tail}"
                )
            if not self._started:
                # Someone took the port between free_port() and bind(); any port will do.
                self.port = free_port()
            else:
                # restart(): the port must stay; wait for whoever holds it to let go.
                time.sleep(0.1)

    def _answers_or_exited(self, process: subprocess.Popen[bytes]) -> bool:
        return _answers_ping(self.port) or process.poll() is not None

    def _serves(self, process: subprocess.Popen[bytes]) -> bool:
        # Another test run's server may have taken the port and answered the PING.
        with self.client(socket_timeout=5) as client:
            return int(client.info("server")["process_id"]) == process.pid

    def _launch(self) -> subprocess.Popen[bytes]:
        assert self.executable is not None
        assert self.directory is not None
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        # Each launch starts fresh logs, so a failure quotes only its own. Config errors
        # are printed to the console before the log file is opened.
        (self.directory / "redis.log").unlink(missing_ok=True)
        with open(self.directory / "console.log", "wb") as console:
            return subprocess.Popen(
                args, cwd=self.directory, stdout=console, stderr=subprocess.STDOUT
            )

    def _log_tail(self) -> str:
        if self.directory is None:
            return ""
        lines: list[str] = []
        for name in ("console.log", "redis.log"):
            path = self.directory / name
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return "\n".join(lines)

    def _reap(self, process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if self._paused and sig != signal.SIGKILL and process.poll() is None:
            process.send_signal(signal.SIGCONT)
        end_process(process, sig, STOP_TIMEOUT)
        self._paused = False

    def _end(self, sig: signal.Signals) -> None:
        self._close_admin()
        process, self._process = self._process, None
        _running.discard(self)
        if process is not None:
            self._reap(process, sig)

    def stop(self) -> None:
        """Shut the server down gracefully (killing it after STOP_TIMEOUT); remove its files.

        Idempotent, and also the final clean-up of a killed server.
        """
        self._end(signal.SIGTERM)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def kill(self) -> None:
        """SIGKILL the server and wait for it to die; its files are kept for ``restart()``."""
        self._end(signal.SIGKILL)

    def restart(self) -> Self:
        """Stop the server if it runs, then start it again on the same port."""
        self._end(signal.SIGTERM)
        return self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): its sockets stay open but nothing answers."""
        if self._process is None:
            raise RedisServerError(f"{self!r} is not running.")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Undo ``pause()`` (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    # -- inspection ------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new ``redis.Redis`` for this server; the caller closes it."""
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def _admin_client(self) -> redis.Redis:
        if self._admin is None:
            self._admin = self.client(
                protocol=2, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
            )
        return self._admin

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()

    def numsub(self, channel: str | bytes) -> int:
        """Return the number of subscribers of ``channel`` (``PUBSUB NUMSUB``)."""
        ((_, count),) = self._admin_client().pubsub_numsub(channel)
        return int(count)

    def shardnumsub(self, channel: str | bytes) -> int:
        """Return the number of subscribers of shard ``channel`` (``PUBSUB SHARDNUMSUB``)."""
        ((_, count),) = self._admin_client().pubsub_shardnumsub(channel)
        return int(count)

    def clients(self) -> list[dict[str, str]]:
        """Return ``CLIENT LIST`` entries, without this helper's own connection."""
        pipe = self._admin_client().pipeline(transaction=False)
        # One pipeline runs on one connection, so CLIENT ID names the one to leave out.
        pipe.client_id()
        pipe.client_list()
        own_id, entries = pipe.execute()
        return [entry for entry in entries if int(entry["id"]) != own_id]

    def connected_clients(self) -> int:
        """Return the number of client connections, without this helper's own."""
        return len(self.clients())

    def subscribers(self) -> list[dict[str, str]]:
        """Return ``CLIENT LIST`` entries of the connections subscribed to a channel or more."""
        return [entry for entry in self.clients() if int(entry["sub"]) > 0]

    def subscriber_ids(self) -> list[str]:
        """Return the client ids of ``subscribers()``."""
        return [entry["id"] for entry in self.subscribers()]

    def command_calls(self, command: str) -> int:
        """Return how often the server has run ``command`` (``INFO commandstats``)."""
        stats = self._admin_client().info("commandstats").get(f"cmdstat_{command}", {})
        return int(stats.get("calls", 0))

    def stream_ids(self, key: str, after: str = "0-0") -> list[str]:
        """Return the IDs of the entries of stream ``key`` after ``after``, oldest first."""
        ids: list[str] = []
        with self.client() as client:  # Not decoding: the entries may hold any bytes.
            while page := client.xrange(key, f"({after}", "+", count=1000):
                ids += [entry_id.decode() for entry_id, _ in page]
                after = ids[-1]
        return ids

    def error_replies(self, code: str) -> int:
        """Return how many error replies with the code ``code`` (``NOAUTH``, ``WRONGTYPE``...)
        the server has sent (``INFO errorstats``)."""
        stats = self._admin_client().info("errorstats").get(f"errorstat_{code}", {})
        return int(stats.get("count", 0))

    def unaccepted_connections(self) -> int:
        """Return the connections the kernel completed but the server has not accepted yet:
        while it is paused, the clients that are trying to connect. Linux only."""
        backlog = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                next(lines)  # The header.
                for line in lines:
                    _, local, _, state, queues, *_ = line.split()
                    # A listening socket's receive queue is its accept backlog.
                    if state == _TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == self.port:
                        backlog += int(queues.split(":")[1], 16)
        return backlog
