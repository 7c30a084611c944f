"""Prometheus metrics of a chain node, served on an optional address (`--metrics-listen`).

Counters the core already keeps (reads and writes served, version queries, seqs, epoch, lease) are
read from its status at scrape time, so they can never drift from what GetStatus reports. The shell
adds what only it sees: fsync latency, writes per fsync (the group-commit factor), link reconnects.
Each node has its own registry, so several nodes can live in one test process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Protocol

from keychain.node.messages import NodeStatus
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

ROLES = ("head", "middle", "tail", "syncing", "none")


class _Stoppable(Protocol):
    def shutdown(self) -> None: ...


class _StatusCollector(Collector):
    def __init__(self, status: Callable[[], NodeStatus], wal_syncs: Callable[[], int]) -> None:
        self._status = status
        self._wal_syncs = wal_syncs

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._status()
        labels = {"node": s.id, "chain": s.chain}
        names, values = list(labels), list(labels.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            m = CounterMetricFamily(name, doc, labels=names)
            m.add_metric(values, value)
            return m

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            m = GaugeMetricFamily(name, doc, labels=names)
            m.add_metric(values, value)
            return m

        yield counter("keychain_node_reads", "Reads served by this node", s.reads)
        yield counter("keychain_node_writes", "Writes applied by this node", s.writes)
        yield counter("keychain_node_version_queries", "Version queries this node sent to the tail",
                      s.version_queries)
        yield counter("keychain_node_wal_syncs", "Write-ahead log syncs (fsyncs) of the store", self._wal_syncs())
        yield gauge("keychain_node_epoch", "Chain configuration epoch the node follows", s.epoch)
        yield gauge("keychain_node_last_seq", "Highest seq the node holds", s.last_seq)
        yield gauge("keychain_node_committed_seq", "Highest seq the node knows committed", s.committed_seq)
        yield gauge("keychain_node_keys", "Keys with a live committed value", s.keys)
        yield gauge("keychain_node_lease_valid", "1 while the coordinator lease is valid", int(s.lease_valid))
        yield gauge("keychain_node_storage_alarm",
                    "1 while the node's disk is over its high-water mark (the chain refuses writes)", int(s.storage_alarm))
        yield gauge("keychain_node_chain_storage_alarms",
                    "Members of the chain whose storage alarm this node knows raised", len(s.storage_alarms))
        yield gauge("keychain_node_disk_free_bytes", "Free bytes on the volume of the node's data directory",
                    s.disk_free_bytes)
        role = GaugeMetricFamily("keychain_node_role", "1 for the node's current role", labels=[*names, "role"])
        for r in ROLES:
            role.add_metric([*values, r], int(s.role == r))
        yield role


class NodeMetrics:
    """The node's metrics. `observe_sync` is called by the shell after each group commit."""

    def __init__(self, status: Callable[[], NodeStatus], wal_syncs: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StatusCollector(status, wal_syncs))
        self.sync_seconds = Histogram(
            "keychain_node_sync_seconds", "Time to make one batch of records durable (one fsync)",
            registry=self.registry, buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
        )
        self.entries_per_sync = Histogram(
            "keychain_node_entries_per_sync", "Log entries made durable by one fsync (group commit)",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
        )
        self.link_failures = Counter(
            "keychain_node_link_failures", "Link streams to a successor that broke or could not be opened",
            registry=self.registry,
        )
        self.transfer_failures = Counter(
            "keychain_node_transfer_failures", "State transfers received that broke before their last chunk",
            registry=self.registry,
        )
        self.transfer_sent_bytes = Counter(
            "keychain_node_transfer_sent_bytes", "Bytes of state transfer chunks sent to successors",
            registry=self.registry,
        )
        self.transfer_paced_seconds = Counter(
            "keychain_node_transfer_paced_seconds",
            "Time state transfers we send waited for their rate limit (--transfer-rate-mb)", registry=self.registry,
        )
        self.persist_held = Counter(
            "keychain_node_persist_held", "Times a Ready was held because the disk had no room for it",
            registry=self.registry,
        )
        self._server: _Stoppable | None = None

    def observe_sync(self, seconds: float, entries: int) -> None:
        self.sync_seconds.observe(seconds)
        if entries:
            self.entries_per_sync.observe(entries)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP on host:port (port 0: any free port); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        bound = int(server.server_address[1])
        log.info("metrics listening addr=%s:%d", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
