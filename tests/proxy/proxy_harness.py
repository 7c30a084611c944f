"""Runs the real proxy (HTTP + gRPC) in a background thread with its own event loop."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import uvloop
from keychain.proxy.config import ProxyConfig
from keychain.proxy.server import ProxyServer
from proxy_double import ChainDouble


@dataclass
class RunningProxy:
    server: ProxyServer
    url: str
    grpc_address: str


@contextlib.contextmanager
def running_proxy(
    double: ChainDouble, *, wait_ready: bool = True, **overrides: object
) -> Iterator[RunningProxy]:
    settings: dict[str, object] = {
        "coordinators": (double.coordinator,),
        "chain": double.state.chain,
        "listen": ("127.0.0.1", 0),
        "grpc_listen": ("127.0.0.1", 0),
        "request_timeout": 2.0,
        "attempt_timeout": 0.5,
    }
    settings.update(overrides)
    server = ProxyServer(ProxyConfig(**settings))  # type: ignore[arg-type]
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            uvloop.run(server.serve(on_ready=lambda _: started.set()))
        except BaseException as exc:
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="proxy", daemon=True)
    thread.start()
    try:
        assert started.wait(10), "the proxy did not start"
        assert not failure, failure
        scheme = "http" if server.config.public_tls is None else "https"
        running = RunningProxy(
            server, f"{scheme}://127.0.0.1:{server.http_port}", f"127.0.0.1:{server.grpc_port}"
        )
        if wait_ready:
            wait_until_ready(running.url)
        yield running
    finally:
        server.stop()
        thread.join(10)


def wait_until_ready(url: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("the proxy never became ready")
