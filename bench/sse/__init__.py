"""Browser streams at scale: the stream view and the ASGI fast path under load, and the soak."""
