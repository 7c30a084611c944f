"""Shared pieces of the network-namespace tests: the skip rule and an echo server in a host."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keychain.testing.netns import Network, unavailable_reason

NETNS_UNAVAILABLE = unavailable_reason()
ECHO_SCRIPT = Path(__file__).resolve().parent / "netns_echo.py"
ECHO_PORT = 9000


def needs_netns() -> list[pytest.MarkDecorator]:
    """Marks for a module whose tests build namespaces: skipped, with the reason, where they cannot."""
    return [
        pytest.mark.netns,
        pytest.mark.skipif(NETNS_UNAVAILABLE is not None, reason=f"network namespaces: {NETNS_UNAVAILABLE}"),
    ]


def start_echo(net: Network, host: str, port: int = ECHO_PORT, timeout: float = 10.0) -> subprocess.Popen:
    """Run the echo server inside `host` and wait for it to listen."""
    process = net.popen(host, [sys.executable, "-P", str(ECHO_SCRIPT), net.address(host), str(port)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = process.stdout.readline()  # the server prints one line at once or dies
    if line.strip() != b"ready" or time.monotonic() > deadline:
        process.kill()
        err = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise AssertionError(f"echo server in {host} did not start: {line!r} {err}")
    return process


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    """Send `payload` and read the same number of bytes back (the socket's timeout applies)."""
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(len(payload) - len(got))
        if not chunk:
            raise ConnectionError("the echo server closed the connection")
        got += chunk
    return got


def median_rtt(sock: socket.socket, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        round_trip(sock, b"x" * 32)
        samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2]
