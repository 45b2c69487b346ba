"""Settings of the benchmark's server: testproject's, open to every stream, without a limit.

The benchmark measures the stream paths, not an authorizer: every topic is allowed.
"""

from testproject.settings import *  # noqa: F403

BROADCAST_STREAM_AUTHORIZER = "bench.sse.authorizer.allow_all"
# The largest runs open 20,000 streams; a default limit below that would refuse them.
BROADCAST_STREAM_MAX_STREAMS = 1_000_000
