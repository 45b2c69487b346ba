"""``manage.py serve_demo``: serve the project under uvicorn until Ctrl-C.

The port is bound before anything is printed: a busy port is one clear error, and
"Open http://…" appears only once the server can be opened.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import uvicorn
from django.core.management.base import BaseCommand, CommandError, CommandParser

#: Seconds uvicorn waits for open responses before it cancels them. Streams end sooner:
#: ``with_streams`` (testproject/asgi.py) drains them when the server is told to stop.
GRACEFUL_SHUTDOWN_SECONDS = 2


class Command(BaseCommand):
    help = "Serve the project under uvicorn (ASGI) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="The address to listen on.")
        parser.add_argument("--port", type=int, default=8000, help="The port to listen on.")
        parser.add_argument("--no-access-log", action="store_true", help="Do not log each request.")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        listener = listen(host, port)
        config = uvicorn.Config(
            "testproject.asgi:application",
            host=host,
            port=port,
            lifespan="off",
            access_log=not options["no_access_log"],
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        address = f"[{host}]" if ":" in host else host
        self.stdout.write(f"Open http://{address}:{listener.getsockname()[1]}/ (Ctrl-C stops it)")
        # uvicorn shuts down on Ctrl-C, then raises it again for its caller: we are done.
        with listener, contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[listener])


def listen(host: str, port: int) -> socket.socket:
    """Return a socket listening on ``host``:``port``.

    Raises:
        CommandError: the address cannot be bound, e.g. another server uses the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise CommandError(
            f"Cannot listen on {host} port {port}: {exc.strerror or exc}. Stop what uses it, "
            "or choose another port (--port; make demo reads DEMO_PORT and DEMO_HOST)."
        ) from None
