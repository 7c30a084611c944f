"""Helpers for the coordinator shell tests: free ports, and members run in this test's event loop.

`main_chain_cluster` is a pytest fixture named `cluster`; a test module gets it by importing it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from keychain.coordinator.server import CoordinatorOptions, CoordinatorServer


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class InProcessCluster:
    """Coordinator members as CoordinatorServers in the current event loop (no processes)."""

    def __init__(self, root: Path, size: int = 3, chains: list[str] | None = None, **options: object) -> None:
        ports = free_ports(2 * size)
        self.ids = [f"coord-{i}" for i in range(1, size + 1)]
        self.addresses = {m: f"127.0.0.1:{ports[i]}" for i, m in enumerate(self.ids)}
        self.http = {m: f"127.0.0.1:{ports[size + i]}" for i, m in enumerate(self.ids)}
        self.root = root
        self.chains = chains or []
        self.options = options
        self.servers: dict[str, CoordinatorServer] = {}

    def options_for(self, member: str) -> CoordinatorOptions:
        return CoordinatorOptions(
            id=member, listen=self.addresses[member], data_dir=self.root / member, peers=self.addresses,
            http=self.http[member], chains=self.chains, **self.options,  # type: ignore[arg-type]
        )

    async def start(self, member: str) -> CoordinatorServer:
        server = CoordinatorServer(self.options_for(member))
        await server.start()
        self.servers[member] = server
        return server

    async def start_all(self) -> None:
        for m in self.ids:
            await self.start(m)

    async def stop(self, member: str) -> None:
        server = self.servers.pop(member)
        await server.shutdown()

    async def stop_all(self) -> None:
        for m in list(self.servers):
            await self.stop(m)

    async def leader(self, timeout: float = 5.0, exclude: tuple[str, ...] = ()) -> CoordinatorServer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for s in self.servers.values():
                if s.member and s.member.is_leader and s.member.leader_committed and s.options.id not in exclude:
                    return s
            await asyncio.sleep(0.02)
        raise AssertionError("no coordinator leader")

    async def ready_leader(self, timeout: float = 5.0) -> CoordinatorServer:
        """The committed leader, once it has created this cluster's chains."""
        leader = await self.leader(timeout)
        await leader.service.ensure_chains(self.chains)
        return leader

    def follower(self, leader: CoordinatorServer) -> CoordinatorServer:
        return next(s for s in self.servers.values() if s is not leader)


@pytest.fixture(name="cluster")
async def main_chain_cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    """Three started members configured with the chain "main"; all stopped after the test."""
    c = InProcessCluster(tmp_path, chains=["main"])
    await c.start_all()
    try:
        yield c
    finally:
        await c.stop_all()
