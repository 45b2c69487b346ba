"""Shared fixtures: private Redis servers, channels of every backend, leak checks.

Backends are listed in ``BACKENDS``; every test that uses ``channel_factory``,
``channel`` or ``topic_name`` runs once per entry. To add a backend, add an entry.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broadcast_app.backends.base import BaseBroadcastChannel
from broadcast_app.backends.memory import InMemoryBroadcastChannel
from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from broadcast_app.backends.streams import StreamsBroadcastChannel
from localservers import LocalCluster, RedisServer

from .waiting import wait_until

#: Fixtures of the Django and demo tests, kept beside their helpers.
pytest_plugins = ["tests.django_fixtures", "tests.demo_fixtures"]

#: Seconds resources may take to go away once their owner closed them.
LEAK_GRACE = 2.0


class ChannelFactory:
    """Creates channels of one backend for one test, and closes them after it.

    Call it with channel keyword arguments (``buffer_size=...``) and optionally
    ``server=`` (a ``RedisServer``; default: the session server) for Redis backends.
    At teardown the test fails if a name from ``topic_name()`` still has Redis
    subscribers (the test must close its subscriptions); then every channel and client
    is closed, and the test fails if a Redis connection it opened is still connected.
    """

    def __init__(self, backend: str, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self._request = request
        self._closers: list[Callable[[], object]] = []
        self._baselines: dict[RedisServer, int] = {}
        self._topic_names: list[str] = []

    def __call__(self, *, server: RedisServer | None = None, **options: Any) -> Any:
        channel = BACKENDS[self.backend](self, server, **options)
        self.add_closer(channel.close)
        return channel

    def add_closer(self, closer: Callable[[], object]) -> None:
        """Run ``closer`` at teardown (closers run newest first)."""
        self._closers.append(closer)

    def redis_server(self, server: RedisServer | None = None) -> RedisServer:
        """Return ``server`` or the session server; note its connections for the leak check."""
        if server is None:
            server = self._request.getfixturevalue("redis_server")
        if server not in self._baselines:
            self._baselines[server] = server.connected_clients()
        return server

    def topic_name(self, label: str = "topic") -> str:
        """Return a topic name no other test uses (the session server is shared)."""
        name = f"{label}:{uuid.uuid4().hex[:12]}"
        self._topic_names.append(name)
        return name

    def finish(self) -> None:
        errors: list[str] = []
        # Subscriptions are the test's to close: once they are, Redis must have unsubscribed
        # while the channel is still open.
        for server in self._inspectable_servers():
            for name in self._topic_names:
                if not self._settles(errors, server, lambda: not self._subs(server, name)):
                    errors.append(
                        f"{name!r} still has {self._subs(server, name)} Redis subscribers"
                    )
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:
                errors.append(f"{closer!r} raised {exc!r}")
        for server in self._inspectable_servers():
            baseline = self._baselines[server]
            if not self._settles(errors, server, lambda: server.connected_clients() <= baseline):
                errors.append(
                    f"{server!r} has {server.connected_clients()} connections after close, "
                    f"{baseline} before the test: {server.clients()}"
                )
        if errors:
            pytest.fail("Resources left after the test:\n" + "\n".join(errors), pytrace=False)

    def _subs(self, server: RedisServer, name: str) -> int:
        shard_subscribers = server.shardnumsub(name) if self.backend in SHARDED_BACKENDS else 0
        return server.numsub(name) + shard_subscribers

    def _inspectable_servers(self) -> list[RedisServer]:
        # A test may leave its own server killed or paused; there is nothing to inspect.
        return [s for s in self._baselines if s.running and not s.paused]

    @staticmethod
    def _settles(errors: list[str], server: RedisServer, check: Callable[[], bool]) -> bool:
        """Wait up to LEAK_GRACE for ``check``; a failing inspection counts as settled."""
        try:
            return wait_until(check, LEAK_GRACE)
        except Exception as exc:
            errors.append(f"could not inspect {server!r}: {exc!r}")
            return True


BackendFactory = Callable[..., BaseBroadcastChannel]


def _memory(factory: ChannelFactory, server: RedisServer | None, **options: Any) -> Any:
    return InMemoryBroadcastChannel(**options)


def _on_one_server(channel_class: type[Any], protocol: int) -> BackendFactory:
    """Channels of ``channel_class`` on a client of one server, speaking RESP ``protocol``."""

    def make(factory: ChannelFactory, server: RedisServer | None, **options: Any) -> Any:
        client = factory.redis_server(server).client(protocol=protocol)
        factory.add_closer(client.close)
        return channel_class(client, **options)

    return make


def _sharded_cluster(factory: ChannelFactory, server: RedisServer | None, **options: Any) -> Any:
    if server is not None:
        # A test's own plain server can only seed a cluster client that is never built.
        factory.redis_server(server)
        return ShardedRedisBroadcastChannel.from_url([server.url], **options)
    cluster: LocalCluster = factory._request.getfixturevalue("redis_cluster")
    for node in cluster.running():
        factory.redis_server(node)
    client = cluster.client()
    factory.add_closer(client.close)
    return ShardedRedisBroadcastChannel(client, **options)


#: Backend name -> ``factory(channel_factory, server, **channel_options) -> channel``.
#: Register closers with ``channel_factory.add_closer``; the channel itself is closed for you.
BACKENDS: dict[str, BackendFactory] = {
    "memory": _memory,
    "redis-resp2": _on_one_server(RedisBroadcastChannel, 2),
    "redis-resp3": _on_one_server(RedisBroadcastChannel, 3),
    # RESP2; the cluster runs redis-py's default, RESP3.
    "sharded": _on_one_server(ShardedRedisBroadcastChannel, 2),
    "sharded-cluster": _sharded_cluster,
    "streams": _on_one_server(StreamsBroadcastChannel, 3),
    "streams-resp2": _on_one_server(StreamsBroadcastChannel, 2),
}
#: Backends whose subscribers ``PUBSUB SHARDNUMSUB`` counts.
SHARDED_BACKENDS = frozenset({"sharded", "sharded-cluster"})


class Task(threading.Thread):
    """Runs ``function(*args)`` in a daemon thread; ``result()`` joins it and re-raises."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True, name=f"test-{function.__name__}")
        self._call = (function, args)
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        function, args = self._call
        try:
            self._value = function(*args)
        except BaseException as exc:
            self._error = exc

    def result(self, timeout: float = 5.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still running after {timeout} s"
        if self._error is not None:
            raise self._error
        return self._value


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fail the test if threads it started are still alive at teardown (after a grace period).

    Fixtures that depend on this one are torn down first, so channels they close may
    stop their threads in time.
    """
    before = set(threading.enumerate())
    yield
    if not wait_until(lambda: not _new_threads(before), LEAK_GRACE):
        names = ", ".join(repr(t.name) for t in _new_threads(before))
        pytest.fail(f"Threads left running after the test: {names}", pytrace=False)


@pytest.fixture
def background(no_thread_leaks: None) -> type[Task]:
    """``background(function, *args)`` runs it in a thread; ``.result(timeout)`` joins it.

    A thread still running at teardown fails the test (see ``no_thread_leaks``).
    """
    return Task


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server shared by the session; do not kill or pause it."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A private Redis Cluster (3 primaries, 1 replica each) shared by the session; do not
    kill, pause or reshard its nodes."""
    with LocalCluster() as cluster:
        yield cluster


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    """A private redis-server for this test only: kill, restart or pause it at will."""
    with RedisServer() as server:
        yield server


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def channel_factory(
    backend: str, request: pytest.FixtureRequest, no_thread_leaks: None
) -> Iterator[ChannelFactory]:
    if "restartable_redis" in request.fixturenames:
        # Set the test's own server up first, so that it is stopped only after the
        # factory's leak checks, whatever order the test names its fixtures in.
        request.getfixturevalue("restartable_redis")
    factory = ChannelFactory(backend, request)
    yield factory
    factory.finish()


@pytest.fixture
def channel(channel_factory: ChannelFactory) -> Any:
    """A channel of the backend under test, with default options."""
    return channel_factory()


@pytest.fixture
def topic_name(channel_factory: ChannelFactory) -> str:
    """A topic name unique to this test."""
    return channel_factory.topic_name()
