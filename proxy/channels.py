"""Long-lived gRPC channels, one per address, reused by every request."""

from __future__ import annotations

import asyncio

import grpc

from keychain import tls
from keychain.tls import TlsFiles

# Batches of writes can exceed gRPC's 4 MiB default when values are large. Reconnection and
# keepalive pings (a healed node is used again within about a second) are keychain.channel_policy's,
# applied by keychain.tls.channel; the nodes and coordinators accept those pings.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]

_READY = grpc.ChannelConnectivity.READY
_SETTLING = (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING)


class ChannelPool:
    """grpc.aio channels by address; create and close them on the event loop that uses them."""

    def __init__(self, tls_files: TlsFiles | None = None) -> None:
        self.tls_files = tls_files  # mutual TLS to nodes and coordinators (None: plaintext)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, type], object] = {}

    @property
    def addresses(self) -> set[str]:
        """The addresses with an open channel."""
        return set(self._channels)

    def stub[S](self, address: str, stub_class: type[S]) -> S:
        stub = self._stubs.get((address, stub_class))
        if stub is None:
            stub = stub_class(self._channel(address))
            self._stubs[(address, stub_class)] = stub
        return stub  # type: ignore[return-value]

    async def connected(self, address: str, timeout: float) -> bool:
        """Whether the channel to `address` is connected, connecting it first if need be (waiting at
        most `timeout`). False means a call made now would not leave this process: as gRPC fails a
        call fast on a channel in transient failure, so does this, without waiting for the next try.
        """
        channel = self._channel(address)
        state = channel.get_state(try_to_connect=True)
        if state is _READY:
            return True
        try:
            async with asyncio.timeout(timeout):
                while state in _SETTLING:
                    await channel.wait_for_state_change(state)
                    state = channel.get_state(try_to_connect=True)
        except TimeoutError:
            return False
        return state is _READY

    async def retain(self, addresses: set[str]) -> None:
        """Close the channels of addresses no longer in use (members that left the chain)."""
        for address in [a for a in self._channels if a not in addresses]:
            await self._drop(address)

    async def close(self) -> None:
        for address in list(self._channels):
            await self._drop(address)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = tls.channel(address, self.tls_files, CHANNEL_OPTIONS)
        return channel

    async def _drop(self, address: str) -> None:
        channel = self._channels.pop(address)
        for key in [k for k in self._stubs if k[0] == address]:
            del self._stubs[key]
        await channel.close()
