"""Private servers for the tests and the benchmarks, started as child processes.

Redis servers and clusters on free loopback ports, and the process lifecycle they share.
Not part of the distribution (``setup.cfg`` packages only ``broadcast_app``), and free of
Django, so that ``bench/`` and ``tests/`` both use it without importing each other.
"""

from .cluster import ClusterNodeServer, LocalCluster
from .processes import LoggedProcess, Service, end_process, free_port, wait_until
from .redis_server import RedisServer, RedisServerError

__all__ = [
    "ClusterNodeServer",
    "LocalCluster",
    "LoggedProcess",
    "RedisServer",
    "RedisServerError",
    "Service",
    "end_process",
    "free_port",
    "wait_until",
]
