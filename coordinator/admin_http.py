"""The coordinator's small HTTP admin API: the contract the Kubernetes operator and `keychain status` use.

    GET    /v1/status                          leader, coordinator members, chains with member health
    POST   /v1/chains/{chain}                  create a chain (201; 409 if it exists)
    DELETE /v1/chains/{chain}                  delete a chain (200; 404 if unknown)
    DELETE /v1/chains/{chain}/members/{id}     unlink a node: 200 {"epoch": N} | 404 | 409 (last active member)
    POST   /v1/members  {"id", "address"}      add a coordinator: learner, caught up, then voter: 201
                                               {"members": [...]} | 400 | 409 (another change pending, or the
                                               id is a member elsewhere) | 503 (election; or not caught up in time)
    DELETE /v1/members/{id}                    remove a coordinator (the leader hands over first): 200 | 404 | 409
    GET    /healthz                            the member's driver is running
    GET    /metrics                            Prometheus

Authentication (`AdminAuth`): with a token file or TLS configured every request needs a bearer token
or a client certificate of an operator or admin (401 without credentials, 403 for another kind),
checked before the request is routed, so a refused one changes nothing; GETs may be left open.
With TLS the API is served over HTTPS with the component's certificate, reloaded on change.

Any member answers: the operations go through `CoordinatorService`, which forwards to the Raft
leader. With no leader (an election) the answer is 503 with `Retry-After`. Errors are JSON
`{"error": "<code>", "message": "..."}`, as everywhere in KeychainDB.

Served by uvicorn inside the coordinator's own event loop (its signal handling left to the
coordinator, so SIGTERM still transfers leadership first); access logs are off.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from keychain.coordinator.admin_auth import AdminAuth
from keychain.coordinator.api import CoordinatorService, member_role
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from keychain import tls
from keychain.access import Decision
from keychain.proto import chain_pb2, coordinator_pb2

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"

_STATUS_OF = {
    coordinator_pb2.OK: 200,
    coordinator_pb2.UNAVAILABLE: 503,
    coordinator_pb2.NOT_FOUND: 404,
    coordinator_pb2.ALREADY_EXISTS: 409,
    coordinator_pb2.INVALID_ARGUMENT: 400,
    coordinator_pb2.FAILED_PRECONDITION: 409,
}


def error_response(error: coordinator_pb2.Error) -> JSONResponse:
    status = _STATUS_OF.get(error.code, 500)
    code = coordinator_pb2.Code.Name(error.code).lower()
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    return JSONResponse({"error": code, "message": error.message}, status_code=status, headers=headers)


def chain_json(config: chain_pb2.ChainConfig, health: dict[str, coordinator_pb2.MemberHealth]) -> dict[str, Any]:
    members = []
    for m in config.members:
        h = health.get(m.id)
        members.append(
            {
                "id": m.id,
                "address": m.address,
                "state": "syncing" if m.state == chain_pb2.SYNCING else "active",
                "role": member_role(config, m.id),
                "healthy": bool(h and h.healthy),
                "reads": h.reads if h else 0,
                "writes": h.writes if h else 0,
                **({"suspected": h.suspected} if h and h.suspected else {}),
            }
        )
    return {"name": config.chain, "epoch": config.epoch, "members": members}


def held_json(held: Iterable[coordinator_pb2.ReadmissionHold]) -> list[dict[str, Any]]:
    """Removed nodes whose registration is held back (re-admission backoff)."""
    return [{"id": h.node_id, "remaining_ms": h.remaining_ms, "removals": h.removals, "reason": h.reason}
            for h in held]


def status_json(status: coordinator_pb2.ClusterStatus) -> dict[str, Any]:
    return {
        "leader": status.leader,
        "members": members_json(status.members),
        "chains": [{**chain_json(c.config, {h.id: h for h in c.health}), **({"held": held_json(c.held)} if c.held else {})}
                   for c in status.chains],
    }


def members_json(members: Iterable[coordinator_pb2.CoordinatorMember]) -> list[dict[str, str]]:
    return [{"id": m.id, "address": m.address, "role": m.role, "suffrage": m.suffrage} for m in members]


class NewMember(BaseModel):
    id: str = Field(min_length=1, description="the new coordinator's --id")
    address: str = Field(min_length=3, description="its gRPC address, host:port (its --listen)")


def build_app(service: CoordinatorService, metrics: CollectorRegistry, auth: AdminAuth | None = None) -> FastAPI:
    app = FastAPI(title="KeychainDB coordinator admin API", docs_url="/docs", redoc_url=None)
    auth = auth or AdminAuth()

    if auth.enabled:
        @app.middleware("http")
        async def authenticate(request: Request, call_next: Any) -> Response:
            identity = tls.peer_identity_of_scope(request.scope)
            decision = auth.decide(request.method, request.headers.get("authorization"), identity)
            if decision is Decision.ALLOW:
                return await call_next(request)
            log.info("admin http refused method=%s path=%s caller=%s decision=%s", request.method,
                     request.url.path, identity.uri if identity else "-", decision.value)
            if decision is Decision.PERMISSION_DENIED:
                return JSONResponse({"error": "permission_denied",
                                     "message": f"{identity.uri if identity else 'caller'} may not use the admin API"},
                                    status_code=403)
            return JSONResponse({"error": "unauthenticated", "message": "a bearer token or an operator or admin "
                                 "client certificate is required"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "invalid_argument", "message": problems}, status_code=400)

    @app.get("/v1/status")
    async def get_status() -> Response:
        status = await service.cluster_status()
        if status.error.code != coordinator_pb2.OK:
            return error_response(status.error)
        return JSONResponse(status_json(status))

    @app.post("/v1/chains/{chain}")
    async def create_chain(chain: str) -> Response:
        reply = await service.create_chain(coordinator_pb2.CreateChainRequest(chain=chain))
        if reply.error.code != coordinator_pb2.OK:
            return error_response(reply.error)
        return JSONResponse(chain_json(reply.config, {}), status_code=201)

    @app.delete("/v1/chains/{chain}")
    async def delete_chain(chain: str) -> Response:
        reply = await service.delete_chain(coordinator_pb2.DeleteChainRequest(chain=chain))
        if reply.error.code != coordinator_pb2.OK:
            return error_response(reply.error)
        return JSONResponse({"name": chain, "deleted": True})

    @app.delete("/v1/chains/{chain}/members/{node_id}")
    async def remove_member(chain: str, node_id: str) -> Response:
        reply = await service.remove_member(coordinator_pb2.RemoveMemberRequest(chain=chain, node_id=node_id))
        if reply.error.code != coordinator_pb2.OK:
            return error_response(reply.error)
        return JSONResponse({"epoch": reply.config.epoch})

    @app.post("/v1/members")
    async def add_member(member: NewMember) -> Response:
        reply = await service.add_coordinator(
            coordinator_pb2.AddCoordinatorMemberRequest(id=member.id, address=member.address))
        if reply.error.code != coordinator_pb2.OK:
            return error_response(reply.error)
        return JSONResponse({"members": members_json(reply.members)}, status_code=201)

    @app.delete("/v1/members/{member_id}")
    async def remove_member_of_cluster(member_id: str) -> Response:
        reply = await service.remove_coordinator(coordinator_pb2.RemoveCoordinatorMemberRequest(id=member_id))
        if reply.error.code != coordinator_pb2.OK:
            return error_response(reply.error)
        return JSONResponse({"members": members_json(reply.members)})

    @app.get("/healthz")
    async def healthz() -> Response:
        if not service.member.running:
            return JSONResponse({"error": "unavailable", "message": "the Raft member stopped"}, status_code=503)
        return JSONResponse({"status": "ok", "id": service.member.id, "leader": service.member.leader})

    @app.get("/metrics")
    async def get_metrics(_: Request) -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the coordinator decides how to shut down."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _TlsConfig(uvicorn.Config):
    """uvicorn's configuration with an SSL context made (and reloaded) by the coordinator."""

    def __init__(self, *args: Any, ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ssl_context = ssl_context

    def load(self) -> None:
        super().load()
        self.ssl = self.ssl_context
        self.http_protocol_class = tls.peer_certificate_protocol(self.http_protocol_class)


def make_server(app: FastAPI, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> uvicorn.Server:
    """The admin API's server; HTTPS with `ssl_context` (client certificates then reach the app)."""
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "warning", "access_log": False,
                               "lifespan": "off"}
    if ssl_context is None:
        return _EmbeddedServer(uvicorn.Config(app, **options))
    return _EmbeddedServer(_TlsConfig(app, ssl_context=ssl_context, **options))
