"""``python -m bench.sse.serve <uvicorn options>``: uvicorn with the open-files limit raised.

A server holding 20,000 streams needs more descriptors than a shell's default limit.
"""

import sys

import uvicorn.main

from .clients import raise_fd_limit

if __name__ == "__main__":
    raise_fd_limit()
    uvicorn.main.main(sys.argv[1:], prog_name="uvicorn")
