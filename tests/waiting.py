"""Time bounds and waits shared by every test module.

A test waits for the condition it needs (``wait_until``), never for a fixed time. The only
fixed waits are the behaviour under test, and they say so: ``holds_for`` (a condition stays
true for a while: nothing arrives, nothing reconnects) and ``blocked``/``ablocked`` (a
call does not return without a reason to).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from localservers import wait_until

__all__ = ["PROMPTLY", "QUIET", "WAIT", "ablocked", "blocked", "holds_for", "wait_until"]

#: Generous bound for anything that must happen: a message, a report, a recovery, a process
#: answering. It only matters when a test fails (the machine running the tests is loaded).
WAIT = 10.0
#: Generous bound for "promptly" (the target is well under 100 ms).
PROMPTLY = 1.0
#: Seconds a test gives what must not happen to happen anyway: a wrong wake-up, a stray
#: message, a command the engine should not send.
QUIET = 0.2


def holds_for(predicate: Callable[[], object], seconds: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` for ``seconds``; True if it was truthy every time.

    A fixed wait on purpose: for a test that something does *not* happen.
    """
    deadline = time.monotonic() + seconds
    while predicate():
        if time.monotonic() >= deadline:
            return True
        time.sleep(interval)
    return False


def blocked(*calls: threading.Thread, seconds: float = QUIET) -> None:
    """Assert that the threads ``calls`` (e.g. ``background`` tasks making a blocking call)
    are all still running ``seconds`` from now."""

    def returned() -> list[str]:
        return [call.name for call in calls if not call.is_alive()]

    assert holds_for(lambda: not returned(), seconds), f"returned without a reason: {returned()}"


async def ablocked(*tasks: asyncio.Task[Any], seconds: float = QUIET) -> None:
    """Assert that the asyncio ``tasks`` are all still pending ``seconds`` from now."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        done = [task.get_name() for task in tasks if task.done()]
        assert not done, f"finished without a reason: {done}"
