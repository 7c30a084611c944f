"""The key-value fast path: /v1/kv/ requests are answered without the FastAPI application."""

from __future__ import annotations

import asyncio

import httpx
from keychain.proxy.config import ProxyConfig
from keychain.proxy.http_api import create_app
from keychain.proxy.kv_http import KeyValueRoutes
from keychain.proxy.metrics import ProxyMetrics
from proxy_double import ChainDouble
from proxy_harness import RunningProxy

from keychain.proto import chain_pb2


class _Chain:
    """The two gateway calls the routes make, answered from a dict."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes, int]] = {}
        self.ids = 0

    def new_idempotency_key(self) -> str:
        self.ids += 1
        return f"test-{self.ids}"

    async def write(self, op: chain_pb2.WriteOp, idempotency_key: str) -> chain_pb2.WriteResult:
        version = len(self.data) + 1
        self.data[op.key] = (op.value, version)
        return chain_pb2.WriteResult(version=version)

    async def read(self, key: bytes, consistency: int) -> chain_pb2.ReadReply:
        value, version = self.data[key]
        return chain_pb2.ReadReply(value=value, version=version)


class _Fallback:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_key_value_requests_skip_the_fallback_app_and_other_paths_reach_it():
    chain, fallback = _Chain(), _Fallback()
    config = ProxyConfig(coordinators=("127.0.0.1:1",), chain="main")
    routes = KeyValueRoutes(config, chain, ProxyMetrics(), fallback)  # type: ignore[arg-type]

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=routes)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
            written = await http.put("/v1/kv/a%2Fb", content=b"value")
            assert written.status_code == 200 and written.json() == {"key": "a/b", "version": 1}
            assert written.headers["content-length"] == str(len(written.content))
            read = await http.get("/v1/kv/a%2Fb", params={"consistency": "eventual"})
            assert read.content == b"value" and read.headers["etag"] == '"1"'
            assert (await http.get("/v1/kv/a%2Fb", headers={"If-None-Match": '"1"'})).status_code == 304
            assert (await http.get("/healthz")).status_code == 204

    asyncio.run(scenario())
    assert chain.data == {b"a/b": (b"value", 1)}
    assert fallback.paths == ["/healthz"], "only the non-key-value request reached the fallback"


def test_a_wrong_method_on_a_key_names_every_allowed_method(proxy: RunningProxy, chain: ChainDouble):
    with httpx.Client(base_url=proxy.url) as http:
        refused = http.post("/v1/kv/k", content=b"x")
    assert refused.status_code == 405 and refused.json()["error"] == "method_not_allowed"
    assert refused.headers["allow"] == "GET, HEAD, PUT, DELETE"
    assert chain.state.write_attempts == []


def test_the_key_value_routes_are_described_in_openapi_but_served_only_by_the_fast_path():
    config = ProxyConfig(coordinators=("127.0.0.1:1",), chain="main")
    routes = create_app(config, _Chain(), None, ProxyMetrics())  # type: ignore[arg-type]
    app = routes.fallback
    assert not [r.path for r in app.routes if r.path.startswith("/v1/kv/")], "no second implementation"
    described = app.openapi()["paths"]["/v1/kv/{key}"]
    assert {"get", "put", "delete"} <= set(described)
    assert described["put"]["responses"]["412"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert "Error" in app.openapi()["components"]["schemas"]
