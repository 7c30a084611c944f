"""The HTTP routes beyond single keys: range reads, transactions and watches.

| request                              | meaning                                                    |
|--------------------------------------|------------------------------------------------------------|
| GET /v1/kv?prefix=P (or start, end)  | a page of keys at one snapshot `version`; `next` continues |
| POST /v1/txn                         | etcd-shaped compare / success / failure, one version       |
| GET /v1/watch?prefix=P&from_version=V | Server-Sent Events, `id:` the version; Last-Event-ID resumes |

Parameters are read from the raw query string (percent-decoded to bytes, so a prefix that is not
UTF-8 is refused instead of silently replaced) and checked by key_ranges / txn_json; the pydantic
models below only describe the answers in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from keychain.proto import chain_pb2

from .auth import BearerAuth
from .config import ProxyConfig
from .errors import ErrorKind, OpError
from .gateway import ChainGateway
from .key_ranges import CONSISTENCY, range_query, watch_query
from .key_ranges import encode_token as next_token
from .kv_http import JSON, error_parts
from .metrics import ProxyMetrics
from .txn_json import encode_value, parse_txn, txn_answer, txn_limits, txn_request_id
from .validation import check_request_id

SSE = "text/event-stream"


def query_params(raw: bytes) -> dict[str, bytes]:
    """Query parameters, values percent-decoded to bytes; the last of repeated names wins."""
    params: dict[str, bytes] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        try:
            text = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise OpError(ErrorKind.INVALID_REQUEST, "a parameter name is not UTF-8") from None
        params[text] = unquote_to_bytes(value.replace(b"+", b" "))
    return params


# ---- answers, as the OpenAPI document describes them ----


class RangeItem(BaseModel):
    key: str
    value: str | None = Field(None, description="base64 (or text with encoding=utf8); absent with keys_only")
    version: int


class RangePage(BaseModel):
    items: list[RangeItem]
    next: str | None = Field(None, description="pass as `next` for the following page; null on the last one")
    version: int = Field(description="the snapshot S this page was read at")


class TxnResult(BaseModel):
    op: Literal["put", "delete", "get"]
    key: str
    version: int = Field(description="put/delete: the transaction's version; get: the key's version")
    found: bool | None = None
    value: str | None = None


class TxnReply(BaseModel):
    succeeded: bool
    version: int
    results: list[TxnResult]


class CompactedError(BaseModel):
    error: Literal["compacted"]
    message: str
    compact_version: int


_TXN_BODY_SCHEMA = {
    "type": "object",
    "properties": {
        "compare": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key"],
                "properties": {
                    "key": {"type": "string"},
                    "result": {"type": "string", "enum": ["==", "!=", ">", "<"], "default": "=="},
                    "version": {"type": "integer", "description": "0 = absent"},
                    "exists": {"type": "boolean"},
                    "value": {"type": "string"},
                },
                "description": "exactly one of version, exists, value",
            },
        },
        "success": {"type": "array", "items": {"$ref": "#/components/schemas/TxnOp"}},
        "failure": {"type": "array", "items": {"$ref": "#/components/schemas/TxnOp"}},
    },
}
TXN_OP_SCHEMA = {
    "type": "object",
    "required": ["op", "key"],
    "properties": {
        "op": {"type": "string", "enum": ["put", "delete", "get"]},
        "key": {"type": "string"},
        "value": {"type": "string", "description": "put only; base64 unless encoding=utf8"},
    },
}


def _param(name: str, description: str, schema: dict[str, Any] | None = None, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "description": description, "schema": schema or {"type": "string"}}


_ENCODING = _param("encoding", "utf8: values as text; default base64", {"type": "string", "enum": ["base64", "utf8"]})
_RANGE_PARAMS = [
    _param("prefix", "every key starting with this"),
    _param("start", "first key (inclusive), instead of prefix"),
    _param("end", "end key (exclusive); omitted: to the end of the key space"),
    _param("limit", "items per page, 1..10000 (default 1000)", {"type": "integer"}),
    _param("next", "the continuation token of the previous page"),
    _param("keys_only", "leave the values out", {"type": "boolean"}),
    _param("consistency", "strong or eventual; omitted: the proxy's --read-consistency",
           {"type": "string", "enum": ["strong", "eventual"]}),
    _param("version", "read at this snapshot (a previous page's version); 410 once compacted",
           {"type": "integer"}),
    _ENCODING,
]
_WATCH_PARAMS = [
    _param("prefix", "changes to keys starting with this"),
    _param("start", "first key (inclusive), instead of prefix"),
    _param("end", "end key (exclusive)"),
    _param("from_version", "the first version wanted; omitted: changes from now on", {"type": "integer"}),
    _param("Last-Event-ID", "resume exactly after this version (sent by SSE clients on reconnect)",
           where="header"),
    _ENCODING,
]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "bad parameters, malformed JSON, too many ops, bad continuation token",
        401: "missing or wrong bearer token",
        410: "compacted: the snapshot or from_version is older than the kept history",
        413: "the transaction is larger than the limit",
        503: "the chain is unavailable or reconfiguring; see Retry-After",
        504: "outcome_unknown: retry with the same Idempotency-Key",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        schema = CompactedError if status == 410 else None
        out[status] = {"description": text[status]} | ({"model": schema} if schema else {})
    return out


# ---- the routes ----


class MultiKeyRoutes:
    """GET /v1/kv, POST /v1/txn, GET /v1/watch on a FastAPI application."""

    def __init__(self, config: ProxyConfig, gateway: ChainGateway, auth: BearerAuth, metrics: ProxyMetrics) -> None:
        self.config = config
        self.gateway = gateway
        self.auth = auth
        self.metrics = metrics
        self.default_consistency = CONSISTENCY[config.read_consistency]
        # A body past this cannot hold a transaction within max_txn_bytes (base64 adds a third).
        self.max_txn_body = config.max_txn_bytes * 2 + 64 * 1024

    def install(self, app: FastAPI) -> None:
        app.add_api_route(
            "/v1/kv", self.list_keys, methods=["GET"], tags=["keys"], response_model=RangePage,
            summary="List keys by prefix or range at one snapshot",
            responses=_errors(400, 401, 410, 503), openapi_extra={"parameters": _RANGE_PARAMS},
        )
        app.add_api_route(
            "/v1/txn", self.txn, methods=["POST"], tags=["keys"], response_model=TxnReply,
            summary="An atomic multi-key transaction (compare, then success or failure ops)",
            responses=_errors(400, 401, 413, 503, 504),
            openapi_extra={
                "parameters": [
                    _ENCODING,
                    _param("Idempotency-Key", "as for single writes: retries apply at most once", where="header"),
                ],
                "requestBody": {"required": True, "content": {JSON: {"schema": _TXN_BODY_SCHEMA}}},
            },
        )
        app.add_api_route(
            "/v1/watch", self.watch, methods=["GET"], tags=["keys"],
            summary="Server-Sent Events of every committed change to a prefix or range",
            responses={200: {"description": "text/event-stream: `id: <version>`, data {type, key, value, version}",
                             "content": {SSE: {"schema": {"type": "string"}}}},
                       **_errors(400, 401, 410, 503)},
            openapi_extra={"parameters": _WATCH_PARAMS},
        )

    def _count(self, op: str, outcome: str) -> None:
        self.metrics.requests.labels("http", op, outcome).inc()

    def _error(self, op: str, error: OpError) -> Response:
        self._count(op, error.kind.code)
        status, headers, body = error_parts(error)
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    async def list_keys(self, request: Request) -> Response:
        try:
            self.auth.check(request.headers.get("authorization"))
            query, start, end = range_query(
                query_params(request.scope.get("query_string", b"")),
                self.default_consistency,
                self.config.max_key_bytes,
            )
            reply = await self.gateway.range(query.request(0))
        except OpError as error:
            return self._error("range", error)
        self._count("range", "ok")
        items = []
        for item in reply.items:
            entry: dict[str, Any] = {"key": item.key.decode("utf-8", errors="replace"), "version": item.version}
            if not query.keys_only:
                entry["value"] = encode_value(item.value, query.encoding)
            items.append(entry)
        token = next_token(reply.snapshot, start, end, reply.items[-1].key) if reply.more and reply.items else None
        body = {"items": items, "next": token, "version": reply.snapshot}
        return Response(json.dumps(body), media_type=JSON)

    async def txn(self, request: Request) -> Response:
        try:
            self.auth.check(request.headers.get("authorization"))
            params = query_params(request.scope.get("query_string", b""))
            unknown = sorted(set(params) - {"encoding"})
            if unknown:
                raise OpError(ErrorKind.INVALID_REQUEST, f"unknown parameter {unknown[0]!r}")
            encoding = "utf8" if params.get("encoding") == b"utf8" else "base64"
            if params.get("encoding") not in (None, b"utf8", b"base64"):
                raise OpError(ErrorKind.INVALID_REQUEST, "encoding is base64 or utf8")
            body = await self._bounded_body(request)
            txn = parse_txn(body, encoding, txn_limits(self.config))
            given = request.headers.get("idempotency-key")
            idempotency_key = self.gateway.new_idempotency_key() if given is None else check_request_id(given)
            op = chain_pb2.WriteOp(
                request_id=txn_request_id(idempotency_key, txn), kind=chain_pb2.OpKind.TXN, txn=txn
            )
            result = await self.gateway.write(op, idempotency_key)
        except OpError as error:
            return self._error("txn", error)
        self._count("txn", "ok")
        return Response(json.dumps(txn_answer(txn, result, encoding)), media_type=JSON)

    async def _bounded_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_txn_body:
            raise OpError(ErrorKind.TOO_LARGE, f"the body is {length} bytes; the limit is {self.max_txn_body}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_txn_body:
                raise OpError(ErrorKind.TOO_LARGE, f"the body passes the limit of {self.max_txn_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def watch(self, request: Request) -> Response:
        try:
            self.auth.check(request.headers.get("authorization"))
            query = watch_query(
                query_params(request.scope.get("query_string", b"")),
                request.headers.get("last-event-id"),
                self.config.max_key_bytes,
            )
            after = query.after_version
            if after is None:  # from now: after the newest committed version, read linearizably
                now = await self.gateway.range(
                    chain_pb2.RangeRequest(start=query.start, end=query.end, limit=1, keys_only=True)
                )
                after = now.snapshot
            stream = WatchStream(self.gateway, query.start, query.end, after, query.encoding,
                                 self.config.watch_heartbeat)
            await stream.open()
        except OpError as error:
            return self._error("watch", error)
        self._count("watch", "ok")
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream.frames(), media_type=SSE, headers=headers)


# How long a new watch waits for its member's first answer before its stream starts: a refusal
# (410 compacted) that comes this early is answered as an HTTP status, not inside the stream.
FIRST_ANSWER_WAIT = 0.5
STALLED_READER = 60.0  # seconds a watch's queue may stay full before its stream is dropped


class WatchStream:
    """One SSE stream: a task pumps the gateway's watch into a queue; `frames` writes what it finds,
    or a heartbeat comment after `heartbeat` seconds of silence."""

    def __init__(
        self, gateway: ChainGateway, start: bytes, end: bytes, after: int, encoding: str, heartbeat: float
    ) -> None:
        self.position = after
        self.encoding = encoding
        self.heartbeat = heartbeat
        self.queue: asyncio.Queue[tuple[int, list[chain_pb2.WatchEvent]] | OpError] = asyncio.Queue(maxsize=1024)
        self.source = gateway.watch(start, end, after)
        self.task: asyncio.Task[None] | None = None
        self.first: tuple[int, list[chain_pb2.WatchEvent]] | None = None  # taken by `open`, sent first

    async def _pump(self) -> None:
        try:
            async for step in self.source:
                # A client that reads nothing for this long (gone before its stream started, or
                # stalled) is cut off; it resumes with Last-Event-ID when it comes back.
                await asyncio.wait_for(self.queue.put(step), STALLED_READER)
        except OpError as error:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.put(error), STALLED_READER)
        except TimeoutError:
            await self.source.aclose()  # its member stream closes now, not when collected

    async def open(self) -> None:
        """Start watching; raises the watch's refusal when it comes at once (COMPACTED)."""
        self.task = asyncio.create_task(self._pump())
        with contextlib.suppress(TimeoutError):
            first = await asyncio.wait_for(self.queue.get(), FIRST_ANSWER_WAIT)
            if isinstance(first, OpError):
                await self.close()
                raise first
            self.first = first

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.source.aclose()

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            yield f"retry: 1000\nid: {self.position}\n\n".encode()
            while True:
                step: tuple[int, list[chain_pb2.WatchEvent]] | OpError
                if self.first is not None:
                    step, self.first = self.first, None
                else:
                    try:
                        step = await asyncio.wait_for(self.queue.get(), self.heartbeat)
                    except TimeoutError:
                        yield f": heartbeat\nid: {self.position}\n\n".encode()
                        continue
                if isinstance(step, OpError):
                    body = {"error": step.kind.code, "message": step.message}
                    if step.compact_version is not None:
                        body["compact_version"] = step.compact_version
                    yield f"event: error\ndata: {json.dumps(body)}\n\n".encode()
                    return
                position, events = step
                self.position = position
                if events:
                    yield "".join(self._event(e) for e in events).encode()
        finally:
            await self.close()

    def _event(self, event: chain_pb2.WatchEvent) -> str:
        put = event.kind == chain_pb2.EntryKind.ENTRY_PUT
        data: dict[str, Any] = {
            "type": "put" if put else "delete",
            "key": event.key.decode("utf-8", errors="replace"),
            "value": encode_value(event.value, self.encoding) if put else None,
            "version": event.version,
        }
        return f"id: {event.version}\ndata: {json.dumps(data)}\n\n"
