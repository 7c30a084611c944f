"""The `GET /v1/cluster` report: chains with their members, and the coordinator.

`render_cluster` is pure: it merges what the coordinator reports (configuration, health,
counters from heartbeats) with what each node says of itself (GetStatus, fresher counters).
When no coordinator answers, the proxy's own topology stands in for the chain list.
"""

from __future__ import annotations

import asyncio
from typing import Any

from keychain.proto import chain_pb2, coordinator_pb2

from .gateway import ChainGateway
from .topology import Topology
from .watcher import CoordinatorWatcher


def render_cluster(
    status: coordinator_pb2.ClusterStatus | None,
    fallback: Topology | None,
    nodes: dict[str, chain_pb2.NodeStatus | None],
) -> dict[str, Any]:
    """The report; `nodes` maps member id to its GetStatus answer (None: it did not answer)."""
    chains: list[dict[str, Any]] = []
    if status is not None:
        for chain in status.chains:
            health = {h.id: h for h in chain.health}
            chains.append(_render_chain(Topology.from_config(chain.config), health, nodes))
        coordinator: dict[str, Any] = {
            "leader": status.leader or None,
            "members": [{"id": m.id, "address": m.address, "role": m.role} for m in status.members],
        }
    else:
        if fallback is not None:
            chains.append(_render_chain(fallback, None, nodes))
        coordinator = {"leader": None, "members": []}
    return {"chains": chains, "coordinator": coordinator}


def _render_chain(
    topology: Topology,
    health: dict[str, coordinator_pb2.MemberHealth] | None,
    nodes: dict[str, chain_pb2.NodeStatus | None],
) -> dict[str, Any]:
    members = []
    storage_alarms: list[str] = []
    for member in topology.members():
        reported = health.get(member.id) if health is not None else None
        own = nodes.get(member.id)
        if own is not None:
            reads, writes = own.reads, own.writes
        elif reported is not None:
            reads, writes = reported.reads, reported.writes
        else:
            reads, writes = 0, 0
        # Healthy: the node answers and holds a lease, and the coordinator (if asked) agrees.
        healthy = own is not None and own.lease_valid and (reported is None or reported.healthy)
        # Its disk is full: by its own word if it answers, else as it last told the coordinator.
        full = own.storage_alarm if own is not None else bool(reported is not None and reported.storage_alarm)
        if full:
            storage_alarms.append(member.id)
        members.append(
            {
                "id": member.id,
                "address": member.address,
                "role": topology.role_of(member),
                "healthy": healthy,
                "reads": reads,
                "writes": writes,
                "storage_alarm": full,
                "disk_free_bytes": own.disk_free_bytes if own is not None else
                (reported.disk_free_bytes if reported is not None else 0),
            }
        )
    # The chain refuses writes (507 insufficient_storage) while this list is not empty.
    return {"name": topology.chain, "epoch": topology.epoch, "members": members, "storage_alarms": storage_alarms}


async def cluster_report(
    watcher: CoordinatorWatcher, gateway: ChainGateway, timeout: float = 1.0
) -> dict[str, Any]:
    """Ask the coordinator and every member (concurrently) and render the report."""
    status = await watcher.cluster_status()
    addresses: dict[str, str] = {}
    if status is not None:
        for chain in status.chains:
            addresses.update({m.id: m.address for m in chain.config.members})
    elif watcher.topology is not None:
        addresses.update({m.id: m.address for m in watcher.topology.members()})
    ids = list(addresses)
    answers = await asyncio.gather(*(gateway.node_status(addresses[i], timeout) for i in ids))
    return render_cluster(status, watcher.topology, dict(zip(ids, answers, strict=True)))
