"""Internal channels come back quickly after a healed fault: every component's channels reconnect
with bounded waits and ping their connections, and a path that starts taking connections again is
used again within about a second."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from keychain.node.coordinator_link import CoordinatorLink
from keychain.node.server import ChainNode
from keychain.node.storage import RocksVersionStore
from keychain.proxy.channels import ChannelPool

from keychain import timing
from keychain.proto import chain_pb2_grpc

ADDRESS = "127.0.0.1:9"  # never dialled: channels connect lazily


@pytest.fixture
def built_channels(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The options of every plaintext channel created while the test runs."""
    seen: list[dict[str, Any]] = []
    real = grpc.aio.insecure_channel

    def recording(target: str, options: Any = None, **kwargs: Any) -> grpc.aio.Channel:
        seen.append(dict(options or ()))
        return real(target, options=options, **kwargs)

    monkeypatch.setattr(grpc.aio, "insecure_channel", recording)
    return seen


def assert_bounded(options: dict[str, Any]) -> None:
    # gRPC's defaults: a connection attempt may take 20 s, waits between attempts grow to 120 s,
    # and a silent connection is never given up.
    assert options["grpc.min_reconnect_backoff_ms"] <= 1000
    assert options["grpc.max_reconnect_backoff_ms"] <= 1000
    assert options["grpc.initial_reconnect_backoff_ms"] <= options["grpc.max_reconnect_backoff_ms"]
    assert options["grpc.keepalive_time_ms"] + options["grpc.keepalive_timeout_ms"] <= 3000


async def test_node_links_and_coordinator_link_reconnect_within_a_second(tmp_path: Path,
                                                                        built_channels: list[dict[str, Any]]):
    node = ChainNode("n1", RocksVersionStore(tmp_path / "n1", "n1", "main"))
    try:
        node._channel(ADDRESS)  # the channel a link, a version query or a transfer to a peer runs on
        CoordinatorLink(node, "main", "127.0.0.1:7101", [ADDRESS])._stub()
        assert len(built_channels) == 2
        for options in built_channels:
            assert_bounded(options)
        # The peer channel keeps the size limit the core needs on top of the policy.
        assert built_channels[0]["grpc.max_receive_message_length"] > 4 << 20
    finally:
        for ch in node._channels.values():
            await ch.close()
        node.store.close()


async def test_proxy_channels_to_nodes_and_coordinators_reconnect_within_a_second(
        built_channels: list[dict[str, Any]]):
    pool = ChannelPool()
    try:
        pool.stub(ADDRESS, chain_pb2_grpc.ChainNodeStub)
        assert len(built_channels) == 1
        assert_bounded(built_channels[0])
        assert built_channels[0]["grpc.max_send_message_length"] == 64 << 20
    finally:
        await pool.close()


def test_stream_retries_of_nodes_and_proxies_stay_under_a_second():
    from keychain.node.server import RECONNECT_BACKOFF
    from keychain.proxy.watcher import WATCH_BACKOFF

    for policy in (RECONNECT_BACKOFF, WATCH_BACKOFF):
        assert policy.bound(1000) <= timing.STREAM_RETRY_MAX <= 1.0


class SilentPath:
    """A TCP relay that stands for a partitioned path: until `heal`, every connection made to it is
    accepted and then swallowed (nothing comes back, as when a partition drops the replies), and
    connections made after `heal` are carried to the real server."""

    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None
        self.swallowed = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    def heal(self, port: int) -> None:
        self.target = ("127.0.0.1", port)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.target is None:
                self.swallowed += 1
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            pipes = [asyncio.ensure_future(_pipe(reader, up_writer)), asyncio.ensure_future(_pipe(up_reader, writer))]
            self._pipes.update(pipes)
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            up_writer.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        for task in self._pipes:
            task.cancel()
        if self._server is not None:
            self._server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


@pytest.mark.timeout(30)
async def test_a_channel_whose_connection_attempt_got_no_answer_connects_soon_after_the_path_heals():
    # gRPC's default gives one connection attempt 20 s: a path healed a few seconds into it would be
    # used only when it times out. Bounded attempts start over, and the next one goes through.
    path = SilentPath()
    relay_port = await path.start()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    pool = ChannelPool()
    try:
        stub = pool.stub(f"127.0.0.1:{relay_port}", health_pb2_grpc.HealthStub)
        ready = asyncio.ensure_future(stub.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=20.0))
        await asyncio.sleep(3.0)
        assert not ready.done() and path.swallowed >= 1, "the silent path answered"
        path.heal(server_port)
        healed = time.monotonic()
        await ready
        took = time.monotonic() - healed
        print(f"answered {took:.3f} s after the path healed ({path.swallowed} attempts swallowed)")
        assert took < 2.5  # about 1 s by the policy; generous for a loaded machine, far under 17 s
    finally:
        await pool.close()
        await path.close()
        await server.stop(0)


async def test_a_heartbeat_to_a_silent_coordinator_gives_up_in_time_for_another_to_renew_the_lease(tmp_path: Path):
    # A leader that is paused or cut off one way answers nothing: the node must move on to the next
    # coordinator, and a new leader there must renew the lease, before the lease lapses.
    node = ChainNode("n1", RocksVersionStore(tmp_path / "n1", "n1", "main"))
    try:
        link = CoordinatorLink(node, "main", "127.0.0.1:7101", [ADDRESS])
        worst_election = 2 * timing.ELECTION_TICKS * timing.TICK + timing.TICK
        assert link.interval + link.heartbeat_timeout + worst_election < timing.LEASE
    finally:
        node.store.close()
