"""The key-value routes of the HTTP API as a plain ASGI application: the proxy's hot path.

FastAPI's per-request machinery (dependency solving, an exit stack, its middlewares and
router) cost more proxy CPU than the rest of a request, the gRPC call to the chain included.
The key-value routes need none of it: the value is the raw body, the few headers are read
directly, and the OpenAPI description is written by hand anyway. So `KeyValueRoutes` answers
every request under /v1/kv/ straight from the ASGI scope and hands all other paths to the
FastAPI application, which also lists these routes in its OpenAPI schema.

A write's Idempotency-Key (or one the proxy makes) becomes the chain's request id scoped to the
key written (validation.scoped_request_id): a retry with the same key gets the first outcome,
the same Idempotency-Key on another key is another write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from keychain.proto import chain_pb2

from .auth import BearerAuth
from .config import ProxyConfig
from .errors import ErrorKind, OpError
from .gateway import ChainGateway
from .metrics import ProxyMetrics
from .validation import (
    check_request_id,
    check_value_size,
    key_from_raw_path,
    none_match,
    scoped_request_id,
    write_conditions,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]  # status, headers, body

KV_PREFIX = b"/v1/kv/"
KV_PATH = "/v1/kv/"
JSON = "application/json"
CONSISTENCY = {"strong": chain_pb2.Consistency.STRONG, "eventual": chain_pb2.Consistency.EVENTUAL}
_CONSISTENCY_QUERIES = {b"consistency=" + name.encode(): value for name, value in CONSISTENCY.items()}
ALLOWED = "GET, HEAD, PUT, DELETE"
_JSON_TYPE = (b"content-type", JSON.encode())
_OCTETS_TYPE = (b"content-type", b"application/octet-stream")


def error_parts(error: OpError, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and JSON body `{"error", "message"}` of an error answer."""
    body: dict[str, Any] = {"error": error.kind.code, "message": error.message}
    if error.current_version is not None:
        body["current_version"] = error.current_version
    if error.compact_version is not None:
        body["compact_version"] = error.compact_version
    out = dict(headers or {})
    if error.retry_after is not None:
        out["Retry-After"] = str(error.retry_after)
    if error.kind is ErrorKind.UNAUTHORIZED:
        out["WWW-Authenticate"] = 'Bearer realm="keychain"'
    if error.current_version:
        out["ETag"] = f'"{error.current_version}"'
    return error.kind.status, out, json.dumps(body).encode()


def _error_reply(error: OpError, headers: dict[str, str] | None = None) -> Reply:
    status, out, body = error_parts(error, headers)
    return status, [_JSON_TYPE, *((k.lower().encode(), v.encode()) for k, v in out.items())], body


def _written(key: bytes, version: int) -> Reply:
    body = json.dumps({"key": key.decode(), "version": version}).encode()
    return 200, [_JSON_TYPE, (b"etag", b'"%d"' % version)], body


class KeyValueRoutes:
    """ASGI: GET/HEAD/PUT/DELETE /v1/kv/{key} answered here, every other request passed to `fallback`."""

    def __init__(
        self,
        config: ProxyConfig,
        gateway: ChainGateway,
        metrics: ProxyMetrics,
        fallback: ASGIApp,
        auth: BearerAuth | None = None,
    ) -> None:
        self.gateway = gateway
        self.fallback = fallback
        self.auth = auth if auth is not None else BearerAuth(config.auth_token)
        self.default_consistency = CONSISTENCY[config.read_consistency]
        self.max_key, self.max_value = config.max_key_bytes, config.max_value_bytes
        self.handlers: dict[str, Callable[[Scope, dict[bytes, bytes], Receive], Awaitable[Reply]]] = {
            "PUT": self._put,
            "GET": self._get,
            "HEAD": self._get,  # GET's answer; __call__ leaves out the body
            "DELETE": self._delete,
        }
        self.ops = {"PUT": "put", "GET": "get", "HEAD": "head", "DELETE": "delete"}
        self.latency = {op: metrics.latency.labels(op) for op in self.ops.values()}
        self._requests = metrics.requests
        self._counters: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(KV_PATH):
            await self.fallback(scope, receive, send)
            return
        status, headers, body = await self.respond(scope, receive)
        if status != 304:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def respond(self, scope: Scope, receive: Receive) -> Reply:
        """The answer to one key-value request; errors become their JSON answers."""
        handler = self.handlers.get(scope["method"])
        if handler is None:
            error = OpError(ErrorKind.METHOD_NOT_ALLOWED, "Method Not Allowed")
            return _error_reply(error, {"Allow": ALLOWED})
        op = self.ops[scope["method"]]
        started = time.perf_counter()
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of repeated headers, as Starlette reads them
        try:
            self.auth.check(headers.get(b"authorization"))
            reply = await handler(scope, headers, receive)
        except OpError as error:
            self._count(op, error.kind.code)
            return _error_reply(error)
        self._count(op, "ok")
        self.latency[op].observe(time.perf_counter() - started)
        return reply

    def _count(self, op: str, outcome: str) -> None:
        child = self._counters.get((op, outcome))
        if child is None:
            child = self._counters[(op, outcome)] = self._requests.labels("http", op, outcome)
        child.inc()

    def _key(self, scope: Scope) -> bytes:
        raw = scope.get("raw_path") or scope["path"].encode()
        return key_from_raw_path(raw, KV_PREFIX, self.max_key)

    def _idempotency_key(self, headers: dict[bytes, bytes]) -> str:
        given = _text(headers, b"idempotency-key")
        return self.gateway.new_idempotency_key() if given is None else check_request_id(given)

    async def _body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        length = _text(headers, b"content-length")
        if length is not None:
            if not length.isdigit():
                raise OpError(ErrorKind.INVALID_REQUEST, "Content-Length is not a number")
            check_value_size(int(length), self.max_value)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise OpError(ErrorKind.INVALID_REQUEST, "the client disconnected before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            check_value_size(size, self.max_value)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _put(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Reply:
        key = self._key(scope)
        if_version, if_absent = write_conditions(_text(headers, b"if-match"), _text(headers, b"if-none-match"))
        idempotency_key = self._idempotency_key(headers)
        value = await self._body(headers, receive)
        op = chain_pb2.WriteOp(
            request_id=scoped_request_id(idempotency_key, key),
            key=key,
            kind=chain_pb2.OpKind.PUT,
            value=value,
            if_absent=if_absent,
        )
        if if_version is not None:
            op.if_version = if_version
        result = await self.gateway.write(op, idempotency_key)
        return _written(key, result.version)

    async def _get(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Reply:
        key = self._key(scope)
        consistency = self.default_consistency
        query = scope.get("query_string", b"")
        if query and (known := _CONSISTENCY_QUERIES.get(query)) is not None:
            consistency = known  # the usual query, answered without parsing it
        elif query:
            # The last of repeated parameters, as Starlette's query_params.get reads them.
            asked = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)).get("consistency")
            if asked is not None:
                if asked not in CONSISTENCY:
                    raise OpError(ErrorKind.INVALID_REQUEST, "consistency is strong or eventual")
                consistency = CONSISTENCY[asked]
        reply = await self.gateway.read(key, consistency)
        etag = b'"%d"' % reply.version
        if_none_match = _text(headers, b"if-none-match")
        if if_none_match is not None and none_match(if_none_match, reply.version):
            return 304, [(b"etag", etag)], b""
        return 200, [_OCTETS_TYPE, (b"etag", etag)], reply.value

    async def _delete(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Reply:
        key = self._key(scope)
        if b"if-none-match" in headers:
            raise OpError(ErrorKind.INVALID_REQUEST, "DELETE supports If-Match, not If-None-Match")
        if_version, _ = write_conditions(_text(headers, b"if-match"), None)
        idempotency_key = self._idempotency_key(headers)
        op = chain_pb2.WriteOp(
            request_id=scoped_request_id(idempotency_key, key), key=key, kind=chain_pb2.OpKind.DELETE
        )
        if if_version is not None:
            op.if_version = if_version
        result = await self.gateway.write(op, idempotency_key)
        return _written(key, result.version)


def _text(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")

