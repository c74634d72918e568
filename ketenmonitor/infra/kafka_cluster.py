"""A local Kafka cluster of a few KRaft nodes on loopback, for tests of replication and failover.

    with LocalKafkaCluster(base_port=19300, data_dir=tmp) as cluster:   # 3 nodes, RF 3, min ISR 2
        KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all")
        cluster.node(2).kill()        # kill -9 of node 2's JVM
        cluster.node(2).start()       # it rejoins with its own data dir

Every node is a combined broker + controller (LocalKafkaBroker, deploy/kafka/kafka.sh) and a voter
of the static quorum: node i (1-based) listens on base_port + 2(i-1) for clients and the next port
for the controller, and keeps its storage in <data_dir>/node-<i>. The cluster's defaults
(default.replication.factor, min.insync.replicas) are also the internal topics' replication
(offsets, transaction and share state). A node only reports ready once the quorum has a leader,
which needs a majority of the voters: `start()` therefore starts all nodes at once, in threads.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.script_server import StartStopContext

__all__ = ["LocalKafkaCluster"]

# Small heaps: a test machine runs three of these beside the workers (a node of a test cluster
# stays far below 384 MiB of heap).
DEFAULT_HEAP = "-Xmx384m -Xms128m"
# C1 only: three nodes started together used 21 CPU-seconds to be ready instead of 38 with the
# default tiered JIT (one measurement each, on the 2-core test machine); a test cluster carries far
# too little traffic for C2's faster code to pay that back.
DEFAULT_JVM_OPTS = "-XX:TieredStopAtLevel=1"


class LocalKafkaCluster(StartStopContext):
    def __init__(
        self,
        base_port: int,
        data_dir: Path,
        nodes: int = 3,
        replication_factor: int = 3,
        min_insync_replicas: int = 2,
        heap: str = DEFAULT_HEAP,
        jvm_opts: str = DEFAULT_JVM_OPTS,
        start_timeout: int = 180,
        stop_timeout: int = 10,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        if not 1 <= min_insync_replicas <= replication_factor <= nodes:
            raise ValueError(
                f"need 1 <= min_insync_replicas ({min_insync_replicas}) <= replication_factor "
                f"({replication_factor}) <= nodes ({nodes})"
            )
        self.data_dir = Path(data_dir).resolve()
        # One id for every node's storage (what StorageTool random-uuid prints: a UUID in
        # base64url without padding); a node formatted before keeps its own.
        cluster_id = "-"
        while cluster_id.startswith("-"):  # a leading "-" reads as a flag to some tools
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # Node i: clients on base_port + 2(i-1), its controller on the port after that.
        ports = {i: (base_port + 2 * i - 2, base_port + 2 * i - 1) for i in range(1, nodes + 1)}
        voters = ",".join(f"{i}@127.0.0.1:{controller}" for i, (_, controller) in ports.items())
        self.brokers = [
            LocalKafkaBroker(
                port=ports[i][0],
                controller_port=ports[i][1],
                data_dir=self.data_dir / f"node-{i}",
                node_id=i,
                quorum_voters=voters,
                cluster_id=cluster_id,
                replication_factor=replication_factor,
                min_insync_replicas=min_insync_replicas,
                heap=heap,
                jvm_opts=jvm_opts,
                start_timeout=start_timeout,
                stop_timeout=stop_timeout,
                extra_config=extra_config,
            )
            for i in range(1, nodes + 1)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.bootstrap_servers for b in self.brokers)

    def node(self, node_id: int) -> LocalKafkaBroker:
        """The node with this id (1-based, as Kafka numbers them in replica lists)."""
        return self.brokers[node_id - 1]

    def start(self) -> Self:
        """Start every node that is not running, together; stop them all if one fails."""
        try:
            self._each(lambda b: b.start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (SIGTERM, together); raises the first failure after trying all.

        The nodes that go last lose the quorum their controlled shutdown waits for: they are
        killed after `stop_timeout` seconds, and their next start recovers their logs as after
        a crash."""
        self._each(lambda b: b.stop())

    def log_tail(self, chars: int = 2000) -> str:
        return "\n".join(f"-- node {b.node_id}:\n{b.log_tail(chars)}" for b in self.brokers)

    def _each(self, action: Callable[[LocalKafkaBroker], object]) -> None:
        with ThreadPoolExecutor(max_workers=len(self.brokers)) as pool:
            futures = [pool.submit(action, b) for b in self.brokers]
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return (
            f"LocalKafkaCluster(bootstrap_servers={self.bootstrap_servers!r}, "
            f"data_dir={str(self.data_dir)!r})"
        )
