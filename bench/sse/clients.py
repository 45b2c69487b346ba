"""A load-generating process holding thousands of SSE streams: ``python -m bench.sse.clients``.

Raw asyncio sockets, one ``asyncio.Protocol`` per stream (no HTTP library: its per-stream
cost would be measured instead of the server's). The controller drives the process with
one JSON command per line on stdin; each command gets one JSON reply line on stdout.

Messages are recognised by their payload, ``t=<publish time>;s=<sequence>;`` (padding
may follow): each stream records the latency of every message (receive time minus
``t``, both ``time.time()`` on the same machine), the ``gap`` events, and every jump in
the sequence (for the soak). The HTTP chunk framing is not decoded: events are short
lines sent whole, so the markers are searched in the raw bytes.

Commands (``op``): ``open`` (count, port, path, concurrency, timeout, group, rcvbuf,
stall), ``drop`` (group: hang up), ``latencies`` (group; returns and forgets them),
``state`` (group, min_seq: how many streams live, ended, caught up to ``min_seq``),
``jumps`` (group; returns and forgets them), ``wait_ended`` (group, timeout), ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import sys
import time
from typing import Any, cast

try:
    import uvloop
except ImportError:
    uvloop = None  # type: ignore[assignment]

#: Open files wanted: enough for 20,000 streams in one process, with room to spare.
FDS_WANTED = 65536
#: Seconds without a stream answering after which an ``open`` gives up.
NO_PROGRESS_TIMEOUT = 20.0
#: Bytes of an unfinished line kept between reads before the stream is judged broken.
MAX_TAIL = 1 << 20

_DATA = b"data: t="
_GAP = b"event: gap"


def raise_fd_limit(wanted: int = FDS_WANTED) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (the hard limit too when allowed, e.g. as
    root); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((wanted, max(wanted, hard)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return limits[0]
        except (ValueError, OSError):
            continue
    return soft


class Group:
    """The streams opened by one ``open`` command, and what they received."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.streams: list[Stream] = []
        self.latencies: list[float] = []
        self.jumps: list[tuple[int, int, int, float]] = []  # (stream, expected, got, at)


class Stream(asyncio.Protocol):
    """One SSE stream: the response status, then the messages, gaps and the end."""

    def __init__(self, group: Group, index: int, request: bytes, stall: bool) -> None:
        self.group = group
        self.index = index
        self.request = request
        self.stall = stall
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.status: int | None = None
        self.tail = b""
        self.next_seq = -1
        self.gaps = 0
        self.messages = 0
        self.ended_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no subclass of asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.tail + data
        if self.status is None:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                self.tail = buffer
                return
            self.status = int(buffer[9:12])
            buffer = buffer[head_end + 4 :]
            if not self.opened.done():
                self.opened.set_result(self.status)
            if self.stall and self.transport is not None:
                self.transport.pause_reading()
        end = buffer.rfind(b"\n")
        if end < 0:
            self.tail = buffer if len(buffer) < MAX_TAIL else b""
            return
        self.tail = buffer[end + 1 :]
        self._scan(buffer, end, now)

    def _scan(self, buffer: bytes, end: int, now: float) -> None:
        self.gaps += buffer.count(_GAP, 0, end)
        position = buffer.find(_DATA, 0, end)
        while position >= 0:
            start = position + len(_DATA)
            stop = buffer.find(b";s=", start, end)
            seq_stop = buffer.find(b";", stop + 3, end + 1) if stop >= 0 else -1
            if seq_stop < 0:
                break
            self.group.latencies.append(now - float(buffer[start:stop]))
            seq = int(buffer[stop + 3 : seq_stop])
            if seq != self.next_seq and self.next_seq >= 0:
                self.group.jumps.append((self.index, self.next_seq, seq, now))
            self.next_seq = seq + 1
            self.messages += 1
            position = buffer.find(_DATA, seq_stop, end)

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the headers"))

    def _end(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.time()


class Clients:
    """The groups of this process and the commands that act on them."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    async def open(
        self,
        group: str,
        count: int,
        port: int,
        path: str,
        concurrency: int,
        timeout: float,
        rcvbuf: int | None = None,
        stall: bool = False,
    ) -> dict[str, Any]:
        """Open ``count`` streams, at most ``concurrency`` connecting at once; return when
        every one has its response headers or failed, or after ``timeout`` s, or when
        none has for ``NO_PROGRESS_TIMEOUT`` s."""
        loop = asyncio.get_running_loop()
        target = self.groups.setdefault(group, Group(group))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        gate = asyncio.Semaphore(concurrency)
        statuses: dict[str, int] = {}
        started = time.monotonic()

        async def one(index: int) -> None:
            stream = Stream(target, index, request, stall)
            async with gate:
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    if rcvbuf is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                    sock.setblocking(False)
                    await loop.sock_connect(sock, ("127.0.0.1", port))
                    await loop.create_connection(lambda: stream, sock=sock)
                    status = await stream.opened
                except (OSError, ConnectionError) as exc:
                    key = type(exc).__name__
                    statuses[key] = statuses.get(key, 0) + 1
                    return
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            target.streams.append(stream)

        first = len(target.streams)
        pending = {asyncio.ensure_future(one(first + index)) for index in range(count)}
        progress = started
        while pending:
            done, pending = await asyncio.wait(pending, timeout=1.0)
            now = time.monotonic()
            progress = now if done else progress
            # A server out of descriptors leaves connections in its accept queue forever.
            if now - started >= timeout or now - progress >= NO_PROGRESS_TIMEOUT:
                break
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        seconds = time.monotonic() - started
        return {"seconds": seconds, "statuses": statuses, "timed_out": len(pending)}

    def drop(self, group: str) -> dict[str, Any]:
        """Hang up every stream of ``group`` at once."""
        target = self.groups.pop(group, None)
        streams = target.streams if target is not None else []
        for stream in streams:
            if stream.transport is not None:
                stream.transport.abort()
        return {"dropped": len(streams), "at": time.time()}

    def latencies(self, group: str) -> dict[str, Any]:
        target = self.groups[group]
        latencies, target.latencies = target.latencies, []
        return {"latencies": latencies}

    def jumps(self, group: str) -> dict[str, Any]:
        target = self.groups[group]
        jumps, target.jumps = target.jumps, []
        return {"jumps": jumps}

    def state(self, group: str, min_seq: int = 0) -> dict[str, Any]:
        streams = self.groups[group].streams
        return {
            "streams": len(streams),
            "ended": sum(stream.ended_at is not None for stream in streams),
            "caught_up": sum(stream.next_seq > min_seq for stream in streams),
            "gaps": sum(stream.gaps for stream in streams),
            "messages": sum(stream.messages for stream in streams),
        }

    async def wait_ended(self, group: str, timeout: float) -> dict[str, Any]:
        """Wait until every stream of ``group`` has ended; report the last end time."""
        streams = self.groups[group].streams
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(stream.ended_at is not None for stream in streams):
                break
            await asyncio.sleep(0.01)
        ended = [stream.ended_at for stream in streams if stream.ended_at is not None]
        return {"ended": len(ended), "streams": len(streams), "last": max(ended, default=None)}


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    clients = Clients()
    reply({"ready": True, "fd_limit": raise_fd_limit()})
    while line := await reader.readline():
        command = json.loads(line)
        op = command.pop("op")
        if op == "quit":
            break
        try:
            handler = getattr(clients, op)
            answer = handler(**command)
            if asyncio.iscoroutine(answer):
                answer = await answer
        except Exception as exc:  # Reported to the controller, which decides.
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        reply(answer)
    for name in list(clients.groups):
        clients.drop(name)


def reply(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main() -> None:
    raise_fd_limit()
    # The clients' own overhead is not what is measured: keep it low where uvloop exists.
    runner: Any = asyncio.run if uvloop is None else uvloop.run
    runner(serve())


if __name__ == "__main__":
    main()
