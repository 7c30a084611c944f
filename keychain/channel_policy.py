"""How internal gRPC channels reconnect and notice a dead connection, and what servers accept of it.

Every channel one component opens to another (a node's link to its successor, a node or a proxy to
the coordinators, a proxy to the nodes) is built by `keychain.tls.channel`, which applies
`channel_options`; every server takes `server_options`, which lets those channels' keepalive pings
through. The figures and why they are what they are: the last section of `keychain.timing`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from keychain import timing


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


# gRPC names: min_reconnect_backoff_ms is the least time one connection attempt is given (its
# connect timeout), initial/max bound the wait between attempts.
RECONNECT = {
    "grpc.min_reconnect_backoff_ms": _ms(timing.CONNECT_TIMEOUT),
    "grpc.initial_reconnect_backoff_ms": _ms(timing.RECONNECT_INITIAL),
    "grpc.max_reconnect_backoff_ms": _ms(timing.RECONNECT_MAX),
}
KEEPALIVE = {
    "grpc.keepalive_time_ms": _ms(timing.CHANNEL_KEEPALIVE_TIME),
    "grpc.keepalive_timeout_ms": _ms(timing.CHANNEL_KEEPALIVE_TIMEOUT),
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,
}
# A server with gRPC's default policy counts a ping more often than every 5 minutes without data as
# abuse and closes the connection after two: accept our clients' pings at their pace.
PING_ACCEPTANCE = {
    "grpc.http2.min_recv_ping_interval_without_data_ms": _ms(timing.CHANNEL_KEEPALIVE_TIME) // 2,
    "grpc.http2.max_ping_strikes": 0,
}


def _merge(policy: dict[str, Any], extra: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    merged = dict(policy)
    merged.update(extra)  # a caller's own setting of the same name wins (the coordinators' Raft peers)
    return list(merged.items())


def channel_options(extra: Iterable[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """Options of an internal channel: bounded reconnection and keepalive, then `extra`."""
    return _merge({**RECONNECT, **KEEPALIVE}, extra)


def server_options(extra: Iterable[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """Options of a server that internal channels call: it accepts their keepalive pings."""
    return _merge(PING_ACCEPTANCE, extra)
