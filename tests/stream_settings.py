"""testproject's settings, plus stream settings given as JSON in the environment.

Each of ``BROADCAST_STREAM_BUFFER_BYTES``, ``BROADCAST_STREAM_MAX_STREAMS``,
``BROADCAST_STREAM_SLOW_CLIENT``, ``BROADCAST_STREAM_STALL_TIMEOUT`` and
``SECRET_KEY_FALLBACKS`` is read as JSON from the variable of that name when it is set.
"""

import json
import os

from testproject.settings import *  # noqa: F403

for _name in (
    "BROADCAST_STREAM_BUFFER_BYTES",
    "BROADCAST_STREAM_MAX_STREAMS",
    "BROADCAST_STREAM_SLOW_CLIENT",
    "BROADCAST_STREAM_STALL_TIMEOUT",
    "SECRET_KEY_FALLBACKS",
):
    if _name in os.environ:
        globals()[_name] = json.loads(os.environ[_name])

SECRET_KEY = os.environ.get("STREAM_TEST_SECRET_KEY", SECRET_KEY)  # noqa: F405
