"""The HTTP API (FastAPI): raw-body key-value operations in the conventions of HTTP.

| request                 | meaning                                                              |
|-------------------------|----------------------------------------------------------------------|
| PUT /v1/kv/{key}        | write the raw body; If-Match: "<v>" compare-and-set, If-None-Match: * create only |
| GET /v1/kv/{key}        | the raw value with ETag: "<v>"; ?consistency=strong or eventual       |
| DELETE /v1/kv/{key}     | delete; If-Match supported                                           |
| GET /v1/cluster         | chains, members, roles, health, served counts; coordinator leader   |
| /healthz /readyz /metrics | liveness, readiness (a known topology), Prometheus                 |

Handlers take the bare `Request` and build `Response`s themselves: values are raw bytes, and
skipping FastAPI's parameter models keeps per-request work small; the OpenAPI document is
written out in `openapi_extra` instead. Every error is JSON `{"error", "message"}`.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keychain import __version__
from keychain.proto import chain_pb2

from .cluster_view import cluster_report
from .config import ProxyConfig
from .errors import ErrorKind, OpError
from .gateway import ChainGateway
from .metrics import CONTENT_TYPE, ProxyMetrics
from .validation import check_request_id, check_value_size, key_from_raw_path, write_conditions
from .watcher import CoordinatorWatcher

KV_PREFIX = b"/v1/kv/"
JSON = "application/json"
CONSISTENCY = {"strong": chain_pb2.Consistency.STRONG, "eventual": chain_pb2.Consistency.EVENTUAL}
_STATUS_KINDS = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.UNAUTHORIZED,
    404: ErrorKind.NOT_FOUND,
    405: ErrorKind.METHOD_NOT_ALLOWED,
    413: ErrorKind.TOO_LARGE,
}


def error_response(error: OpError, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": error.kind.code, "message": error.message}
    if error.current_version is not None:
        body["current_version"] = error.current_version
    out = dict(headers or {})
    if error.retry_after is not None:
        out["Retry-After"] = str(error.retry_after)
    if error.kind is ErrorKind.UNAUTHORIZED:
        out["WWW-Authenticate"] = 'Bearer realm="keychain"'
    if error.current_version:
        out["ETag"] = f'"{error.current_version}"'
    return Response(json.dumps(body), status_code=error.kind.status, media_type=JSON, headers=out)


# ---- OpenAPI description of the raw-body routes ----

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "current_version": {"type": "integer", "description": "on 412: the key's version (0 = absent)"},
    },
}
_WRITE_SCHEMA = {
    "type": "object",
    "required": ["key", "version"],
    "properties": {"key": {"type": "string"}, "version": {"type": "integer"}},
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


_KEY_PARAM = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "UTF-8 key, percent-encoded; may contain '/'",
    "schema": {"type": "string"},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'compare-and-set: apply only if the current version is this ETag, e.g. "42"',
    "schema": {"type": "string"},
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "reuse on retries of one logical write so it applies at most once",
    "schema": {"type": "string"},
}
_COMMON_ERRORS = {
    "400": _error("bad key or header"),
    "401": _error("missing or wrong bearer token"),
    "413": _error("key or value above the limit"),
    "503": _error("the chain is unavailable or reconfiguring; see Retry-After"),
}
_WRITE_ERRORS = {
    **_COMMON_ERRORS,
    "412": _error("the precondition did not hold; current_version says what is there"),
    "504": _error(
        "outcome_unknown: the write may or may not have applied; retry with the same Idempotency-Key"
    ),
}
PUT_DOC = {
    "parameters": [
        _KEY_PARAM,
        _IF_MATCH,
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "* : create only (412 if the key exists)",
            "schema": {"type": "string"},
        },
        _IDEMPOTENCY,
    ],
    "requestBody": {
        "required": False,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "responses": {
        "200": {"description": "written", "content": {JSON: {"schema": _WRITE_SCHEMA}}},
        **_WRITE_ERRORS,
    },
}
GET_DOC = {
    "parameters": [
        _KEY_PARAM,
        {
            "name": "consistency",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["strong", "eventual"]},
        },
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": '"<version>": 304 if unchanged',
            "schema": {"type": "string"},
        },
    ],
    "responses": {
        "200": {
            "description": "the raw value; ETag holds its version",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
        "304": {"description": "not modified"},
        "404": _error("no such key"),
        **_COMMON_ERRORS,
    },
}
DELETE_DOC = {
    "parameters": [_KEY_PARAM, _IF_MATCH, _IDEMPOTENCY],
    "responses": {
        "200": {"description": "deleted", "content": {JSON: {"schema": _WRITE_SCHEMA}}},
        **_WRITE_ERRORS,
    },
}


def create_app(
    config: ProxyConfig,
    gateway: ChainGateway,
    watcher: CoordinatorWatcher,
    metrics: ProxyMetrics,
) -> FastAPI:
    app = FastAPI(
        title="KeychainDB",
        version=__version__,
        description="A strongly consistent replicated key-value store (CRAQ). Values are raw bytes.",
    )
    token = f"Bearer {config.auth_token}".encode() if config.auth_token else None
    default_consistency = CONSISTENCY[config.read_consistency]
    max_key, max_value = config.max_key_bytes, config.max_value_bytes
    counters: dict[tuple[str, str], Any] = {}
    latency = {op: metrics.latency.labels(op) for op in ("put", "get", "delete")}

    def count(op: str, outcome: str) -> None:
        child = counters.get((op, outcome))
        if child is None:
            child = counters[(op, outcome)] = metrics.requests.labels("http", op, outcome)
        child.inc()

    def check_auth(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, token):
            raise OpError(
                ErrorKind.UNAUTHORIZED, "a valid 'Authorization: Bearer <token>' header is required"
            )

    def key_of(request: Request) -> bytes:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        return key_from_raw_path(raw, KV_PREFIX, max_key)

    def request_id(request: Request) -> str:
        given = request.headers.get("idempotency-key")
        return gateway.new_request_id() if given is None else check_request_id(given)

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise OpError(ErrorKind.INVALID_REQUEST, "Content-Length is not a number")
            check_value_size(int(length), max_value)
            return await request.body()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            check_value_size(size, max_value)
            chunks.append(chunk)
        return b"".join(chunks)

    def measured(op: str, handler: Callable[[Request], Awaitable[Response]]):
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except OpError as error:
                count(op, error.kind.code)
                return error_response(error)
            count(op, "ok")
            latency[op].observe(time.perf_counter() - started)
            return response

        endpoint.__name__ = f"{op}_key"
        return endpoint

    async def put_key(request: Request) -> Response:
        check_auth(request)
        key = key_of(request)
        if_version, if_absent = write_conditions(
            request.headers.get("if-match"), request.headers.get("if-none-match")
        )
        rid = request_id(request)
        value = await read_body(request)
        op = chain_pb2.WriteOp(
            request_id=rid, key=key, kind=chain_pb2.OpKind.PUT, value=value, if_absent=if_absent
        )
        if if_version is not None:
            op.if_version = if_version
        result = await gateway.write(op)
        return _written(key, result.version)

    async def get_key(request: Request) -> Response:
        check_auth(request)
        key = key_of(request)
        asked = request.query_params.get("consistency")
        if asked is None:
            consistency = default_consistency
        elif asked in CONSISTENCY:
            consistency = CONSISTENCY[asked]
        else:
            raise OpError(ErrorKind.INVALID_REQUEST, "consistency is strong or eventual")
        reply = await gateway.read(key, consistency)
        etag = f'"{reply.version}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(reply.value, media_type="application/octet-stream", headers={"ETag": etag})

    async def delete_key(request: Request) -> Response:
        check_auth(request)
        key = key_of(request)
        if request.headers.get("if-none-match") is not None:
            raise OpError(ErrorKind.INVALID_REQUEST, "DELETE supports If-Match, not If-None-Match")
        if_version, _ = write_conditions(request.headers.get("if-match"), None)
        op = chain_pb2.WriteOp(request_id=request_id(request), key=key, kind=chain_pb2.OpKind.DELETE)
        if if_version is not None:
            op.if_version = if_version
        result = await gateway.write(op)
        return _written(key, result.version)

    route = "/v1/kv/{key:path}"
    common = {"tags": ["keys"], "include_in_schema": True}
    app.add_api_route(
        route,
        measured("put", put_key),
        methods=["PUT"],
        summary="Write a key",
        openapi_extra=PUT_DOC,
        **common,
    )
    app.add_api_route(
        route,
        measured("get", get_key),
        methods=["GET"],
        summary="Read a key",
        openapi_extra=GET_DOC,
        **common,
    )
    app.add_api_route(
        route,
        measured("delete", delete_key),
        methods=["DELETE"],
        summary="Delete a key",
        openapi_extra=DELETE_DOC,
        **common,
    )

    @app.get("/v1/cluster", tags=["cluster"], summary="Chains, members and the coordinator")
    async def cluster(request: Request) -> Response:
        try:
            check_auth(request)
        except OpError as error:
            return error_response(error)
        report = await cluster_report(watcher, gateway)
        return Response(json.dumps(report), media_type=JSON)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: the chain's topology is known")
    async def readyz() -> Response:
        topology = watcher.topology
        if topology is None or not topology.serving:
            error = OpError(
                ErrorKind.UNAVAILABLE,
                "no chain topology with an active member yet",
                retry_after=config.retry_after_seconds,
            )
            return error_response(error)
        body = {"status": "ready", "chain": topology.chain, "epoch": topology.epoch}
        return Response(json.dumps(body), media_type=JSON)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = _STATUS_KINDS.get(exc.status_code, ErrorKind.INVALID_REQUEST)
        detail = exc.detail if isinstance(exc.detail, str) else kind.code
        if exc.status_code == 404:
            detail = f"no route {request.url.path}"
        return error_response(OpError(kind, detail), headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(OpError(ErrorKind.INVALID_REQUEST, str(exc.errors())))

    app.openapi_schema = None
    _add_error_schema(app)
    return app


def _written(key: bytes, version: int) -> Response:
    body = json.dumps({"key": key.decode(), "version": version})
    return Response(body, media_type=JSON, headers={"ETag": f'"{version}"'})


def _add_error_schema(app: FastAPI) -> None:
    """Register the Error schema the raw-body routes refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
