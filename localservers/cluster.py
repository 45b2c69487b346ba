"""A private Redis Cluster for tests and benchmarks: primaries with one replica each.

Each node is a ``RedisServer`` in cluster mode on free loopback ports (client and bus),
in its own temporary directory; the cluster is formed with ``redis-cli --cluster create``.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any, Self

import redis
from redis.cluster import ClusterNode as SeedNode
from redis.cluster import RedisCluster
from redis.crc import key_slot

from .processes import Service, free_port, wait_until
from .redis_server import RedisServer, RedisServerError

#: Milliseconds after which an unreachable primary is failed over.
NODE_TIMEOUT_MS = 1000
#: Seconds the cluster may take to be formed and to agree on its topology.
FORM_TIMEOUT = 15.0


class ClusterNodeServer(RedisServer):
    """A ``RedisServer`` in cluster mode; its bus port is chosen once, like its port."""

    def __init__(self, *extra_args: str) -> None:
        self.bus_port = free_port()
        super().__init__(
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-port", str(self.bus_port),
            # A replica's first sync must not wait for more replicas to join it.
            "--repl-diskless-sync-delay", "0",
            # CLUSTER SLOTS lists a replica once its replication offset moves past 0.
            "--repl-ping-replica-period", "1",
            *extra_args,
        )  # fmt: skip

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def info(self, section: str) -> dict[str, Any]:
        info: dict[str, Any] = self._admin_client().info(section)
        return info

    def cluster(self, subcommand: str, *args: str | int) -> Any:
        """Run ``CLUSTER <subcommand>`` on this node and return redis-py's parsed reply."""
        admin = self._admin_client()
        return admin.execute_command(f"CLUSTER {subcommand}", *args)  # type: ignore[no-untyped-call]

    def slot_ranges(self) -> list[tuple[int, int, str, int]]:
        """``(first slot, last slot, primary address, replica count)`` as this node sees it."""
        return sorted(
            (int(first), int(last), f"{primary[0]}:{primary[1]}", len(replicas))
            for first, last, primary, *replicas in self.cluster("SLOTS")
        )


class LocalCluster(Service):
    """``primaries`` primaries with ``replicas`` replicas each, all on 127.0.0.1.

    Starts in a few seconds (the tests need well under 15). Drive it from one thread;
    ``stop()`` is idempotent and stops every node, and interpreter exit kills any left.

    Raises:
        RedisServerError: a node or ``redis-cli`` is missing, or the cluster does not form.
    """

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        self.primary_count = primaries
        self.replica_count = replicas
        self.nodes = [ClusterNodeServer() for _ in range(primaries * (1 + replicas))]

    def __repr__(self) -> str:
        return f"<LocalCluster {' '.join(node.address for node in self.nodes)}>"

    @property
    def seed_urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> Self:
        """Start every node, form the cluster and wait until every node agrees on it."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RedisServerError("redis-cli was not found on PATH (Debian's redis-tools).")
        try:
            for node in self.nodes:
                node.start()
            create = subprocess.run(
                [
                    cli, "--cluster", "create",
                    *(node.address for node in self.nodes),
                    "--cluster-replicas", str(self.replica_count),
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=FORM_TIMEOUT,
                check=False,
            )  # fmt: skip
            if create.returncode != 0:
                raise RedisServerError(
                    "redis-cli --cluster create failed:\n"
                    + create.stdout.decode(errors="replace")
                    + create.stderr.decode(errors="replace")
                )
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # -- topology ----------------------------------------------------------------------------

    def running(self) -> list[ClusterNodeServer]:
        return [node for node in self.nodes if node.running and not node.paused]

    def node_at(self, address: str) -> ClusterNodeServer:
        """The node listening on ``host:port``."""
        for node in self.nodes:
            if node.address == address:
                return node
        raise LookupError(f"{address} is not a node of {self!r}")

    def primaries(self) -> list[ClusterNodeServer]:
        """The nodes that serve slots now, as the first running node sees it."""
        addresses = {primary for _, _, primary, _ in self.running()[0].slot_ranges()}
        return [self.node_at(address) for address in sorted(addresses)]

    def owner(self, slot: int) -> ClusterNodeServer:
        """The primary that serves ``slot``, as the first running node sees it."""
        for first, last, primary, _ in self.running()[0].slot_ranges():
            if first <= slot <= last:
                return self.node_at(primary)
        raise LookupError(f"no node serves slot {slot}")

    def owner_of(self, channel: str) -> ClusterNodeServer:
        """The primary that serves the slot of ``channel``."""
        return self.owner(key_slot(channel.encode()))

    def hash_tags_on(self, node: ClusterNodeServer, count: int) -> list[str]:
        """``count`` hash tags (``"{t7}"``) of distinct slots that ``node`` serves now."""
        ranges = [
            (first, last)
            for first, last, owner, _ in self.running()[0].slot_ranges()
            if owner == node.address
        ]
        if not ranges:
            raise LookupError(f"{node!r} serves no slot")
        tags: dict[int, str] = {}
        candidate = 0
        while len(tags) < count:
            slot = key_slot(f"t{candidate}".encode())
            if slot not in tags and any(first <= slot <= last for first, last in ranges):
                tags[slot] = f"{{t{candidate}}}"
            candidate += 1
        return list(tags.values())

    def replica_of(self, primary: ClusterNodeServer) -> ClusterNodeServer:
        replica = primary.info("replication")["slave0"]
        return self.node_at(f"{replica['ip']}:{replica['port']}")

    def agreed(self, replicas: int | None = None) -> bool:
        """Every running node says cluster_state:ok, their replicas' links are up, and all
        see the same slot owners (each with ``replicas`` replicas, unless None)."""
        try:
            views = []
            for node in self.running():
                if node.cluster("INFO")["cluster_state"] != "ok":
                    return False
                replication = node.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
                views.append(node.slot_ranges())
        except redis.RedisError:
            return False
        return (
            bool(views)
            and all(view == views[0] for view in views)
            and (replicas is None or all(count == replicas for *_, count in views[0]))
        )

    def healthy(self) -> bool:
        """Every node runs and ``agreed()`` on the full set of replicas."""
        return len(self.running()) == len(self.nodes) and self.agreed(self.replica_count)

    def wait_healthy(self, timeout: float = FORM_TIMEOUT) -> None:
        if not wait_until(self.healthy, timeout, interval=0.05):
            raise RedisServerError(f"{self!r} is not healthy after {timeout} s.")

    def client(self, **options: Any) -> RedisCluster:
        """A new ``RedisCluster`` seeded with every running node; the caller closes it."""
        seeds = [
            SeedNode("127.0.0.1", node.port)  # type: ignore[no-untyped-call]
            for node in self.running()
        ]
        return RedisCluster(startup_nodes=seeds, **options)

    def shardnumsub(self, channel: str) -> int:
        """Shard subscribers of ``channel`` on every running node together."""
        return sum(node.shardnumsub(channel) for node in self.running())

    def wait_failed_over(self, primary: ClusterNodeServer, timeout: float = 15.0) -> None:
        """Wait until the running nodes agree on slot owners without ``primary``."""

        def replaced() -> bool:
            owners = {owner for _, _, owner, _ in self.running()[0].slot_ranges()}
            return self.agreed() and primary.address not in owners

        if not wait_until(replaced, timeout, interval=0.05):
            raise RedisServerError(f"{primary!r} was not failed over within {timeout} s.")
