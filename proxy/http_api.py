"""The HTTP API (FastAPI): raw-body key-value operations in the conventions of HTTP.

| request                 | meaning                                                              |
|-------------------------|----------------------------------------------------------------------|
| PUT /v1/kv/{key}        | write the raw body; If-Match: "<v>" compare-and-set, If-None-Match: * create only |
| GET /v1/kv/{key}        | the raw value with ETag: "<v>"; ?consistency=strong or eventual       |
| HEAD /v1/kv/{key}       | as GET, without the body                                             |
| DELETE /v1/kv/{key}     | delete; If-Match supported                                           |
| GET /v1/kv?prefix=P     | a page of keys at one snapshot (multikey_http)                       |
| POST /v1/txn            | an atomic etcd-shaped transaction (multikey_http)                    |
| GET /v1/watch?prefix=P  | Server-Sent Events of committed changes (multikey_http)              |
| GET /v1/cluster         | chains, members, roles, health, served counts; coordinator leader   |
| /healthz /readyz /metrics | liveness, readiness (a known topology), Prometheus                 |

The key-value routes are served by `kv_http.KeyValueRoutes` in front of this FastAPI app (the
hot path skips FastAPI's per-request machinery), so FastAPI has no handler for them: their
OpenAPI description is written out here and added to the document FastAPI generates for the
other routes. Every error is JSON `{"error", "message"}`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keychain import __version__

from .auth import BearerAuth
from .cluster_view import cluster_report
from .config import ProxyConfig
from .errors import ErrorKind, OpError
from .gateway import ChainGateway
from .kv_http import JSON, KeyValueRoutes, error_parts
from .metrics import CONTENT_TYPE, ProxyMetrics
from .multikey_http import TXN_OP_SCHEMA, MultiKeyRoutes
from .watcher import CoordinatorWatcher

_STATUS_KINDS = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.UNAUTHORIZED,
    404: ErrorKind.NOT_FOUND,
    405: ErrorKind.METHOD_NOT_ALLOWED,
    413: ErrorKind.TOO_LARGE,
}


def error_response(error: OpError, headers: dict[str, str] | None = None) -> Response:
    status, out, body = error_parts(error, headers)
    return Response(body, status_code=status, media_type=JSON, headers=out)


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
    "description": (
        "1..128 printable ASCII characters. Send the same value on every retry of one logical "
        "write: the write applies at most once and a retry answers with the first outcome. The "
        "key is scoped to the written key: the same Idempotency-Key on another key is another "
        "write. Without one, the proxy makes one and names it if the outcome is unknown (504)."
    ),
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
            "description": "strong (linearizable) or eventual; when omitted, the proxy's --read-consistency",
            "schema": {"type": "string", "enum": ["strong", "eventual"]},
        },
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": (
                '"<version>", W/"<version>", a comma-separated list of them, or *: '
                "304 (no body) if the key's current version matches"
            ),
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
HEAD_DOC = {
    "parameters": GET_DOC["parameters"],
    "responses": {
        "200": {"description": "the key exists: GET's headers (ETag, Content-Length), no body"},
        "304": {"description": "not modified"},
        "404": {"description": "no such key"},
        **{status: {"description": doc["description"]} for status, doc in _COMMON_ERRORS.items()},
    },
}
DELETE_DOC = {
    "parameters": [_KEY_PARAM, _IF_MATCH, _IDEMPOTENCY],
    "responses": {
        "200": {"description": "deleted", "content": {JSON: {"schema": _WRITE_SCHEMA}}},
        **_WRITE_ERRORS,
    },
}

KV_ROUTE = "/v1/kv/{key}"


def _operation(op: str, summary: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"tags": ["keys"], "summary": summary, "operationId": f"{op}_key", **doc}


KV_OPERATIONS = {
    "put": _operation("put", "Write a key", PUT_DOC),
    "get": _operation("get", "Read a key", GET_DOC),
    "head": _operation("head", "A key's version and size, without its value", HEAD_DOC),
    "delete": _operation("delete", "Delete a key", DELETE_DOC),
}


def create_app(
    config: ProxyConfig,
    gateway: ChainGateway,
    watcher: CoordinatorWatcher,
    metrics: ProxyMetrics,
) -> KeyValueRoutes:
    """The proxy's ASGI application: the key-value fast path in front of the FastAPI app."""
    app = FastAPI(
        title="KeychainDB",
        version=__version__,
        description="A strongly consistent replicated key-value store (CRAQ). Values are raw bytes.",
    )
    auth = BearerAuth(config.auth_token)
    kv = KeyValueRoutes(config, gateway, metrics, app, auth)
    MultiKeyRoutes(config, gateway, auth, metrics).install(app)

    @app.get("/v1/cluster", tags=["cluster"], summary="Chains, members and the coordinator")
    async def cluster(request: Request) -> Response:
        try:
            auth.check(request.headers.get("authorization"))
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
    _document_key_value_routes(app)
    return kv


def _document_key_value_routes(app: FastAPI) -> None:
    """Add the key-value routes (served by KeyValueRoutes, not by FastAPI) to the OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema["paths"] = {KV_ROUTE: KV_OPERATIONS, **schema.get("paths", {})}
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Error"] = _ERROR_SCHEMA
            schemas["TxnOp"] = TXN_OP_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
