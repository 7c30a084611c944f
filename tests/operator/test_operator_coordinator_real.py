"""The operator's coordinator resize against real coordinator members (in this event loop): a member
started with the command line the operator renders for a new pod (the initial --peers, which do not
name it, and --join-unlisted) is added by the operator's client once the stepping core says so, is a
voter when the add returns, and is removed again the same way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from keychain.coordinator.main import options_of, parse_args
from keychain.coordinator.server import CoordinatorOptions, CoordinatorServer
from keychain.operator.coordinator_client import CoordinatorClient
from keychain.operator.naming import Names
from keychain.operator.stepping import CoordinatorSetState, plan_coordinators

from keychain.testing.ports import free_ports

pytestmark = pytest.mark.timeout(90)

NAMES = Names("kv", "ns1")


async def test_a_member_the_operator_adds_joins_catches_up_and_is_removed_again(tmp_path: Path):
    ids = [NAMES.coordinator_pod(i) for i in range(4)]
    ports = free_ports(8)
    grpc = {m: f"127.0.0.1:{ports[i]}" for i, m in enumerate(ids)}
    http = {m: f"127.0.0.1:{ports[4 + i]}" for i, m in enumerate(ids)}
    initial = ",".join(f"{m}={grpc[m]}" for m in ids[:3])
    servers: list[CoordinatorServer] = []

    def argv(member: str) -> list[str]:
        # The operator's coordinator arguments (rendered with addresses of this machine).
        return ["--id", member, "--listen", grpc[member], "--http", http[member], "--data-dir",
                str(tmp_path / member), "--peers", initial, "--join-unlisted", "--chain", "kv"]  # fmt: skip

    async def start(options: CoordinatorOptions) -> None:
        server = CoordinatorServer(options)
        await server.start()
        servers.append(server)

    client = CoordinatorClient([f"http://{http[m]}" for m in ids])
    try:
        for member in ids[:3]:
            await start(options_of(parse_args(argv(member))))
        newcomer = parse_args(argv(ids[3]))
        assert newcomer.peers is None and newcomer.join == [grpc[m] for m in ids[:3]]

        async def status():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while True:
                try:
                    view = await asyncio.to_thread(client.status)
                    if view.leader:
                        return view
                except Exception:
                    if loop.time() > deadline:
                        raise
                await asyncio.sleep(0.1)

        view = await status()
        assert {m.id for m in view.members if m.voter} == set(ids[:3])
        # The fourth pod was started by the previous step and is ready: the core adds it.
        step = plan_coordinators(5, CoordinatorSetState(4, 4, True), view.members, NAMES)
        assert step.add_member == ids[3]
        await start(options_of(newcomer))
        await asyncio.to_thread(client.add_coordinator, ids[3], grpc[ids[3]])
        view = await status()
        assert {m.id: m.voter for m in view.members} == dict.fromkeys(ids, True)
        assert plan_coordinators(5, CoordinatorSetState(4, 4, True), view.members, NAMES).replicas == 5

        # Back to 3: the core removes the highest member before its pod stops.
        step = plan_coordinators(3, CoordinatorSetState(4, 4, True), view.members, NAMES)
        assert step.remove_member == ids[3]
        assert await asyncio.to_thread(client.remove_coordinator, ids[3]) is True
        view = await status()
        assert {m.id for m in view.members} == set(ids[:3])
        assert plan_coordinators(3, CoordinatorSetState(4, 4, True), view.members, NAMES).replicas == 3
        assert await asyncio.to_thread(client.remove_coordinator, ids[3]) is False
    finally:
        client.close()
        for server in reversed(servers):
            await server.shutdown()
