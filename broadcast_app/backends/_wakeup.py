"""A wake-up call for a reader thread that waits in ``select()`` on its connection's socket."""

from __future__ import annotations

import contextlib
import select
import socket


class WakeUp:
    """A socket pair: any thread calls ``wake()``, the reader waits on it beside its socket.

    ``wake()`` never blocks and may be called from any thread; ``wait()`` and ``clear()``
    belong to the one reader thread. Closing twice is harmless. Raises nothing of its own.
    """

    __slots__ = ("_alarm", "_waker")

    def __init__(self) -> None:
        self._waker, self._alarm = socket.socketpair()
        self._waker.setblocking(False)
        self._alarm.setblocking(False)

    def wake(self) -> None:
        """Make the reader's ``wait()`` return at once (now, or the next time it waits)."""
        # A full buffer means a wake-up is pending anyway; a closed pair has no reader.
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")

    def clear(self) -> None:
        """Forget the wake-ups received so far."""
        try:
            while self._alarm.recv(4096):
                pass
        except BlockingIOError:
            pass

    def wait(self, sock: socket.socket, timeout: float) -> tuple[bool, bool]:
        """Wait up to ``timeout`` seconds for ``sock`` to be readable or for a wake-up.

        Returns ``(readable, woken)``; both False after the timeout. Leaves the wake-up
        pending: call ``clear()`` once it is handled.
        """
        readable, _, _ = select.select([sock, self._alarm], [], [], timeout)
        return sock in readable, self._alarm in readable

    def close(self) -> None:
        self._waker.close()
        self._alarm.close()
