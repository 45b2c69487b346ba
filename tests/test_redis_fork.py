"""Fork safety: a channel made before ``fork()`` serves the child with its own connection and
reader thread, and the parent's subscriptions never notice the child.

The children are ``forking.Child`` processes that report through a pipe.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import TYPE_CHECKING, Any

import pytest

from localservers import RedisServer

from .channel_helpers import engine_threads
from .forking import Report, forked
from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory

pytestmark = pytest.mark.parametrize("backend", ["redis-resp2", "redis-resp3"])


def test_the_child_subscribes_with_its_own_connection_and_thread(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    before = set(threading.enumerate())
    channel = channel_factory(server=server)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as parent_sub:
        topic.publish(b"before the fork")
        assert parent_sub.receive(WAIT) == b"before the fork"
        parent_connection = server.subscriber_ids()

        def child_body(report: Report) -> None:
            with topic.subscribe() as sub:
                report(threads=engine_threads())
                report(received=(sub.receive(WAIT) or b"").decode())
            topic.publish(b"from the child")
            report(published=True)

        with forked(child_body) as child:
            assert child.next_report()["threads"] == ["broadcast_app-redis-reader"]
            # The parent's connection plus one of the child's own.
            assert server.numsub(name) == 2
            topic.publish(b"from the parent")
            assert child.next_report()["received"] == "from the parent"
            assert parent_sub.receive(WAIT) == b"from the parent"
            assert child.next_report() == {"published": True}
            assert parent_sub.receive(WAIT) == b"from the child"
            assert child.wait() == 0

        assert wait_until(lambda: server.numsub(name) == 1, WAIT)
        assert server.subscriber_ids() == parent_connection
        topic.publish(b"after the child exited")
        assert parent_sub.receive(WAIT) == b"after the child exited"
        assert parent_sub.gaps == 0
        assert engine_threads(before) == ["broadcast_app-redis-reader"]


def test_a_child_closing_what_it_inherited_leaves_the_parent_alone(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as parent_sub:
        topic.publish(b"before the fork")
        assert parent_sub.receive(WAIT) == b"before the fork"

        def child_body(report: Report) -> None:
            # What a framework's shutdown in a worker process may do.
            parent_sub.close()
            channel.close()
            channel.client.close()
            report(closed=True)

        with forked(child_body) as child:
            assert child.next_report() == {"closed": True}
            assert child.wait() == 0
        assert server.numsub(name) == 1
        topic.publish(b"after the child exited")
        assert parent_sub.receive(WAIT) == b"after the child exited"
        assert parent_sub.gaps == 0


def _publish_in_child(channel: Any, name: str) -> None:
    channel.topic(name).publish(b"from a multiprocessing child")


def test_a_multiprocessing_fork_child_publishes(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    channel = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()
    with channel.topic(name).subscribe() as parent_sub:
        process = multiprocessing.get_context("fork").Process(
            target=_publish_in_child, args=(channel, name)
        )
        process.start()
        try:
            process.join(WAIT)
            assert process.exitcode == 0
        finally:
            if process.exitcode is None:
                process.kill()
                process.join()
        assert parent_sub.receive(WAIT) == b"from a multiprocessing child"
        channel.topic(name).publish(b"parent still subscribed")
        assert parent_sub.receive(WAIT) == b"parent still subscribed"
        assert parent_sub.gaps == 0
