"""Transactions in etcd's JSON shape: parsed and checked into the chain's `Txn`, and answered.

    {"compare": [{"key": "a", "version": 3, "result": "=="}, {"key": "b", "exists": false}],
     "success": [{"op": "put", "key": "a", "value": "..."}, {"op": "get", "key": "b"}],
     "failure": [{"op": "get", "key": "a"}]}

A compare names one target (`version`, `exists` or `value`) and a `result` (==, !=, and for
versions also > and <; default ==). Values, in the body and in the answer, are base64 unless the
request says `encoding=utf8`. Pure functions; every refusal is an `OpError` (400, or 413 past
the byte limit) raised before anything reaches the chain, so a bad transaction writes nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from keychain.proto import chain_pb2

from .config import ProxyConfig
from .errors import ErrorKind, OpError
from .validation import check_key, scoped_request_id

_RESULTS = {
    "==": chain_pb2.CompareResult.EQUAL,
    "!=": chain_pb2.CompareResult.NOT_EQUAL,
    ">": chain_pb2.CompareResult.GREATER,
    "<": chain_pb2.CompareResult.LESS,
}
_OPS = {"put": chain_pb2.TxnOpKind.TXN_PUT, "delete": chain_pb2.TxnOpKind.TXN_DELETE, "get": chain_pb2.TxnOpKind.TXN_GET}
_OP_NAMES = {kind: name for name, kind in _OPS.items()}
_TARGETS = ("version", "exists", "value")
_TXN_SCOPE = b"\x00txn\x00"  # no key starts so (keys are non-empty UTF-8 without NUL first)


def _invalid(message: str) -> OpError:
    return OpError(ErrorKind.INVALID_REQUEST, message)


def decode_value(value: Any, encoding: str, where: str) -> bytes:
    if not isinstance(value, str):
        raise _invalid(f"{where}: value is a string")
    if encoding == "utf8":
        return value.encode("utf-8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{where}: value is not base64 (send encoding=utf8 for text)") from None


def encode_value(value: bytes, encoding: str) -> str:
    if encoding == "utf8":
        return value.decode("utf-8", errors="replace")
    return base64.b64encode(value).decode("ascii")


class TxnLimits:
    """How large one transaction may be; `bytes_used` counts its keys and values as decoded."""

    def __init__(self, max_ops: int, max_bytes: int, max_key_bytes: int, max_value_bytes: int) -> None:
        self.max_ops, self.max_bytes = max_ops, max_bytes
        self.max_key_bytes, self.max_value_bytes = max_key_bytes, max_value_bytes
        self.bytes_used = 0

    def count(self, size: int) -> None:
        self.bytes_used += size
        if self.bytes_used > self.max_bytes:
            raise OpError(
                ErrorKind.TOO_LARGE, f"the transaction's keys and values pass the limit of {self.max_bytes} bytes"
            )


def txn_limits(config: ProxyConfig) -> TxnLimits:
    return TxnLimits(config.max_txn_ops, config.max_txn_bytes, config.max_key_bytes, config.max_value_bytes)


def _key(entry: dict[str, Any], where: str, limits: TxnLimits) -> bytes:
    key = entry.get("key")
    if not isinstance(key, str):
        raise _invalid(f"{where}: key is a string")
    raw = check_key(key.encode("utf-8"), limits.max_key_bytes)
    limits.count(len(raw))
    return raw


def _fields(entry: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _invalid(f"{where} is an object")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise _invalid(f"{where}: unknown field {unknown[0]!r}")
    return entry


def _compare(entry: Any, where: str, encoding: str, limits: TxnLimits) -> chain_pb2.Compare:
    entry = _fields(entry, where, {"key", "result", *_TARGETS})
    compare = chain_pb2.Compare(key=_key(entry, where, limits))
    targets = [name for name in _TARGETS if name in entry]
    if len(targets) != 1:
        raise _invalid(f"{where}: name exactly one of version, exists, value")
    result = entry.get("result", "==")
    if result not in _RESULTS:
        raise _invalid(f"{where}: result is one of {', '.join(_RESULTS)}")
    compare.result = _RESULTS[result]
    target = targets[0]
    if target != "version" and result in (">", "<"):
        raise _invalid(f"{where}: {result} compares versions only")
    if target == "version":
        version = entry["version"]
        if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 1 << 64:
            raise _invalid(f"{where}: version is a non-negative integer")
        compare.version = version
    elif target == "exists":
        if not isinstance(entry["exists"], bool):
            raise _invalid(f"{where}: exists is true or false")
        compare.exists = entry["exists"]
    else:
        value = decode_value(entry["value"], encoding, where)
        limits.count(len(value))
        compare.value = value
    return compare


def _op(entry: Any, where: str, encoding: str, limits: TxnLimits) -> chain_pb2.TxnOp:
    entry = _fields(entry, where, {"op", "key", "value"})
    name = entry.get("op")
    if name not in _OPS:
        raise _invalid(f"{where}: op is put, delete or get")
    op = chain_pb2.TxnOp(kind=_OPS[name], key=_key(entry, where, limits))
    if name == "put":
        if "value" not in entry:
            raise _invalid(f"{where}: a put needs a value")
        value = decode_value(entry["value"], encoding, where)
        if len(value) > limits.max_value_bytes:
            raise OpError(ErrorKind.TOO_LARGE, f"{where}: the value is {len(value)} bytes; the limit is {limits.max_value_bytes}")
        limits.count(len(value))
        op.value = value
    elif "value" in entry:
        raise _invalid(f"{where}: only a put has a value")
    return op


def parse_txn(body: bytes, encoding: str, limits: TxnLimits) -> chain_pb2.Txn:
    """The chain's Txn for a JSON transaction body; 400 when malformed, 413 past the limits."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"the body is not JSON: {exc}") from None
    document = _fields(document, "the transaction", {"compare", "success", "failure"})
    parts: dict[str, list[Any]] = {}
    for name in ("compare", "success", "failure"):
        part = document.get(name, [])
        if not isinstance(part, list):
            raise _invalid(f"{name} is a list")
        parts[name] = part
    total = sum(len(part) for part in parts.values())
    if total > limits.max_ops:
        raise _invalid(f"the transaction has {total} compares and ops; the limit is {limits.max_ops}")
    if not parts["success"] and not parts["failure"] and not parts["compare"]:
        raise _invalid("the transaction is empty")
    return chain_pb2.Txn(
        compare=[_compare(c, f"compare[{i}]", encoding, limits) for i, c in enumerate(parts["compare"])],
        success=[_op(o, f"success[{i}]", encoding, limits) for i, o in enumerate(parts["success"])],
        failure=[_op(o, f"failure[{i}]", encoding, limits) for i, o in enumerate(parts["failure"])],
    )


def txn_answer(txn: chain_pb2.Txn, result: chain_pb2.WriteResult, encoding: str) -> dict[str, Any]:
    """`{"succeeded", "version", "results"}`: one result per op of the branch that ran."""
    branch = txn.success if result.succeeded else txn.failure
    results: list[dict[str, Any]] = []
    for op, outcome in zip(branch, result.results, strict=False):
        item: dict[str, Any] = {"op": _OP_NAMES[op.kind], "key": op.key.decode("utf-8"), "version": outcome.version}
        if op.kind == chain_pb2.TxnOpKind.TXN_GET:
            item["found"] = outcome.found
            item["value"] = encode_value(outcome.value, encoding) if outcome.found else None
        results.append(item)
    return {"succeeded": result.succeeded, "version": result.version, "results": results}


def txn_request_id(idempotency_key: str, txn: chain_pb2.Txn) -> str:
    """The chain's request id of a transaction: the idempotency key scoped to the transaction's
    content, so the same Idempotency-Key on another transaction is another write."""
    return scoped_request_id(idempotency_key, _TXN_SCOPE + txn.SerializeToString(deterministic=True))


def check_txn(txn: chain_pb2.Txn, limits: TxnLimits) -> chain_pb2.Txn:
    """The limits and key rules of `parse_txn`, for a Txn that arrived as protobuf (gRPC)."""
    total = len(txn.compare) + len(txn.success) + len(txn.failure)
    if total > limits.max_ops:
        raise _invalid(f"the transaction has {total} compares and ops; the limit is {limits.max_ops}")
    if total == 0:
        raise _invalid("the transaction is empty")
    for compare in txn.compare:
        check_key(compare.key, limits.max_key_bytes)
        limits.count(len(compare.key) + len(compare.value))
        if compare.WhichOneof("target") is None:
            raise _invalid("a compare names one of version, exists, value")
        if compare.WhichOneof("target") != "version" and compare.result in (
            chain_pb2.CompareResult.GREATER, chain_pb2.CompareResult.LESS
        ):
            raise _invalid("> and < compare versions only")
    for op in [*txn.success, *txn.failure]:
        check_key(op.key, limits.max_key_bytes)
        if op.kind not in _OP_NAMES:
            raise _invalid("an op is put, delete or get")
        if len(op.value) > limits.max_value_bytes:
            raise OpError(ErrorKind.TOO_LARGE, f"a value is {len(op.value)} bytes; the limit is {limits.max_value_bytes}")
        limits.count(len(op.key) + len(op.value))
    return txn
