"""Prometheus metrics of one proxy, in a registry of its own (several proxies can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "keychain_proxy_requests",
            "Client requests answered, by API, operation and outcome code",
            ["api", "op", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "keychain_proxy_request_seconds",
            "Time to answer a key-value request",
            ["op"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.batch_ops = Histogram(
            "keychain_proxy_write_batch_ops",
            "Writes carried by one WriteRequest to the head",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "keychain_proxy_write_batch_seconds",
            "Time a WriteRequest is out at the head: the chain's round trip for its batch",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.read_batch_ops = Histogram(
            "keychain_proxy_read_batch_ops",
            "Reads carried by one ReadBatch to a chain member",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.retries = Counter(
            "keychain_proxy_retries",
            "Attempts retried, by operation and reason",
            ["op", "reason"],
            registry=self.registry,
        )
        self.member_reads = Counter(
            "keychain_proxy_member_reads",
            "Reads sent to each chain member",
            ["member"],
            registry=self.registry,
        )
        self.epoch = Gauge(
            "keychain_proxy_topology_epoch", "Epoch of the chain configuration in use", registry=self.registry
        )
        self.topology_changes = Counter(
            "keychain_proxy_topology_changes", "Chain configurations adopted", registry=self.registry
        )

        self.unreachable_reports = Counter(
            "keychain_proxy_unreachable_reports",
            "Nodes reported to the coordinator as leaving this proxy's requests unanswered, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.silence_probes = Counter(
            "keychain_proxy_silence_probes",
            "Status probes of nodes that left this proxy's requests unanswered, by outcome "
            "(answered: reachable, waiting on the chain; unanswered: reported)",
            ["outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
