"""The gRPC KV service (keychain/proto/kv.proto): the HTTP API's operations, errors in-band.

Failures travel as `Error{code, message}` in the reply, with the same meaning as the HTTP
statuses (see errors.ErrorKind); only a missing bearer token is a gRPC status
(UNAUTHENTICATED), because it is about the call, not the operation.

A write's `request_id` is its idempotency key, scoped to the key written (see
validation.scoped_request_id): a retry of the same write with the same request_id gets the
first outcome; the same request_id on another key is another write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc

from keychain.proto import chain_pb2, kv_pb2, kv_pb2_grpc

from .auth import BearerAuth
from .config import ProxyConfig
from .errors import ErrorKind, OpError
from .gateway import ChainGateway
from .key_ranges import encode_token as next_token
from .key_ranges import key_range, range_query
from .metrics import ProxyMetrics
from .txn_json import check_txn, txn_limits, txn_request_id
from .validation import (
    check_consistency,
    check_key,
    check_request_id,
    check_value_size,
    scoped_request_id,
)


def _error(error: OpError) -> chain_pb2.Error:
    return chain_pb2.Error(code=error.kind.chain_code, message=error.message)


def _range_params(request: kv_pb2.RangeRequest) -> dict[str, bytes]:
    """The gRPC range as the HTTP query parameters `range_query` checks."""
    params: dict[str, bytes] = {}
    if request.prefix or not (request.start or request.end):
        params["prefix"] = request.prefix
    else:
        params["start"], params["end"] = request.start, request.end
    if request.limit:
        params["limit"] = str(request.limit).encode()
    if request.next:
        params["next"] = request.next.encode()
    if request.version:
        params["version"] = str(request.version).encode()
    if request.keys_only:
        params["keys_only"] = b"true"
    return params


class KVService(kv_pb2_grpc.KVServicer):
    def __init__(self, config: ProxyConfig, gateway: ChainGateway, metrics: ProxyMetrics) -> None:
        self.config = config
        self.gateway = gateway
        self.metrics = metrics
        self.auth = BearerAuth(config.auth_token)
        self._default_consistency = chain_pb2.Consistency.Value(config.read_consistency.upper())

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        if not self.auth.enabled:
            return
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not self.auth.allows(str(given)):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "metadata 'authorization: Bearer <token>' required"
            )

    def _idempotency_key(self, given: str) -> str:
        return check_request_id(given) if given else self.gateway.new_idempotency_key()

    async def _write(
        self, op_name: str, given_key: str, build: Callable[[str], chain_pb2.WriteOp]
    ) -> kv_pb2.WriteReply:
        try:
            idempotency_key = self._idempotency_key(given_key)
            op = build(idempotency_key)
            result = await self.gateway.write(op, idempotency_key)
        except OpError as error:
            self.metrics.requests.labels("grpc", op_name, error.kind.code).inc()
            return kv_pb2.WriteReply(error=_error(error), current_version=error.current_version or 0)
        self.metrics.requests.labels("grpc", op_name, "ok").inc()
        return kv_pb2.WriteReply(version=result.version)

    async def Put(self, request: kv_pb2.PutRequest, context: grpc.aio.ServicerContext) -> kv_pb2.WriteReply:
        await self._authorize(context)

        def build(idempotency_key: str) -> chain_pb2.WriteOp:
            key = check_key(request.key, self.config.max_key_bytes)
            check_value_size(len(request.value), self.config.max_value_bytes)
            op = chain_pb2.WriteOp(
                request_id=scoped_request_id(idempotency_key, key),
                key=key,
                kind=chain_pb2.OpKind.PUT,
                value=request.value,
                if_absent=request.if_absent,
            )
            if request.HasField("if_version"):
                op.if_version = request.if_version
            return op

        return await self._write("put", request.request_id, build)

    async def Delete(
        self, request: kv_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> kv_pb2.WriteReply:
        await self._authorize(context)

        def build(idempotency_key: str) -> chain_pb2.WriteOp:
            key = check_key(request.key, self.config.max_key_bytes)
            op = chain_pb2.WriteOp(
                request_id=scoped_request_id(idempotency_key, key), key=key, kind=chain_pb2.OpKind.DELETE
            )
            if request.HasField("if_version"):
                op.if_version = request.if_version
            return op

        return await self._write("delete", request.request_id, build)

    async def Get(self, request: kv_pb2.GetRequest, context: grpc.aio.ServicerContext) -> kv_pb2.GetReply:
        await self._authorize(context)
        try:
            key = check_key(request.key, self.config.max_key_bytes)
            consistency = (
                check_consistency(request.consistency)
                if request.HasField("consistency")
                else self._default_consistency
            )
            reply = await self.gateway.read(key, consistency)
        except OpError as error:
            self.metrics.requests.labels("grpc", "get", error.kind.code).inc()
            return kv_pb2.GetReply(error=_error(error))
        self.metrics.requests.labels("grpc", "get", "ok").inc()
        return kv_pb2.GetReply(value=reply.value, version=reply.version)

    async def Range(self, request: kv_pb2.RangeRequest, context: grpc.aio.ServicerContext) -> kv_pb2.RangeReply:
        await self._authorize(context)
        try:
            if request.prefix and (request.start or request.end):
                raise OpError(ErrorKind.INVALID_REQUEST, "give prefix, or start and end, not both")
            consistency = (
                check_consistency(request.consistency)
                if request.HasField("consistency")
                else self._default_consistency
            )
            query, start, end = range_query(_range_params(request), consistency, self.config.max_key_bytes)
            reply = await self.gateway.range(query.request(0))
        except OpError as error:
            self.metrics.requests.labels("grpc", "range", error.kind.code).inc()
            return kv_pb2.RangeReply(error=_error(error), compact_version=error.compact_version or 0)
        self.metrics.requests.labels("grpc", "range", "ok").inc()
        items = reply.items
        if query.keys_only:
            for item in items:
                item.value = b""
        token = next_token(reply.snapshot, start, end, items[-1].key) if reply.more and items else ""
        return kv_pb2.RangeReply(items=items, next=token, version=reply.snapshot)

    async def Txn(self, request: kv_pb2.TxnRequest, context: grpc.aio.ServicerContext) -> kv_pb2.TxnReply:
        await self._authorize(context)
        try:
            txn = check_txn(request.txn, txn_limits(self.config))
            idempotency_key = self._idempotency_key(request.request_id)
            op = chain_pb2.WriteOp(
                request_id=txn_request_id(idempotency_key, txn), kind=chain_pb2.OpKind.TXN, txn=txn
            )
            result = await self.gateway.write(op, idempotency_key)
        except OpError as error:
            self.metrics.requests.labels("grpc", "txn", error.kind.code).inc()
            return kv_pb2.TxnReply(error=_error(error))
        self.metrics.requests.labels("grpc", "txn", "ok").inc()
        return kv_pb2.TxnReply(succeeded=result.succeeded, version=result.version, results=result.results)

    async def Watch(
        self, request: kv_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[kv_pb2.WatchResponse]:
        await self._authorize(context)
        try:
            if request.prefix and (request.start or request.end):
                raise OpError(ErrorKind.INVALID_REQUEST, "give prefix, or start and end, not both")
            prefix = request.prefix if request.prefix or not (request.start or request.end) else None
            start, end = key_range(
                prefix, None if prefix is not None else request.start,
                None if prefix is not None else request.end, self.config.max_key_bytes,
            )
            if request.HasField("after_version"):
                after = request.after_version
            else:
                now = await self.gateway.range(
                    chain_pb2.RangeRequest(start=start, end=end, limit=1, keys_only=True)
                )
                after = now.snapshot
        except OpError as error:
            yield kv_pb2.WatchResponse(error=_error(error))
            return
        yield kv_pb2.WatchResponse(version=after)  # the start: a resume token before any event
        try:
            async for position, events in self.gateway.watch(start, end, after):
                yield kv_pb2.WatchResponse(events=events, version=position)
        except OpError as error:
            yield kv_pb2.WatchResponse(error=_error(error), compact_version=error.compact_version or 0)
