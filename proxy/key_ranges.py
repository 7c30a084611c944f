"""Key ranges as clients name them: a prefix or [start, end), pages, continuation tokens, watches.

Pure parsing and checking, shared by the HTTP and gRPC front ends; every refusal is an `OpError`
(400) before anything reaches the chain.

A continuation token is opaque to clients but not secret: base64url of a format byte, the
snapshot the first page was read at, a digest, and the last key returned. The next page reads the
same snapshot from just after that key. The digest covers the range the token belongs to, the
snapshot and the key, so a token from another range, a truncated or altered one, is refused
rather than silently reading something else (it is a checksum, not a secret: any client may read
any range anyway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from keychain.proto import chain_pb2

from .errors import ErrorKind, OpError
from .validation import check_consistency

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_VERSION = (1 << 64) - 1
_TOKEN_FORMAT = 1
_TOKEN_HEAD = struct.Struct(">BQ8s")  # format, snapshot, digest
CONSISTENCY = {"strong": chain_pb2.Consistency.STRONG, "eventual": chain_pb2.Consistency.EVENTUAL}
ENCODINGS = ("base64", "utf8")


def _invalid(message: str) -> OpError:
    return OpError(ErrorKind.INVALID_REQUEST, message)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key above every key starting with `prefix` (empty: to the end of the key space)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b""
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def check_bound(bound: bytes, name: str, max_key_bytes: int) -> bytes:
    """A range bound: UTF-8 (keys are) and within the key limit; empty is allowed (open)."""
    if len(bound) > max_key_bytes:
        raise OpError(ErrorKind.TOO_LARGE, f"{name} is {len(bound)} bytes; the key limit is {max_key_bytes}")
    try:
        bound.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"{name} is not valid UTF-8") from None
    return bound


def key_range(
    prefix: bytes | None, start: bytes | None, end: bytes | None, max_key_bytes: int
) -> tuple[bytes, bytes]:
    """[start, end) from a prefix or explicit bounds (empty end: to the end of the key space)."""
    if prefix is not None and (start is not None or end is not None):
        raise _invalid("give prefix, or start and end, not both")
    if prefix is not None:
        check_bound(prefix, "prefix", max_key_bytes)
        return prefix, prefix_end(prefix)
    low = check_bound(start or b"", "start", max_key_bytes)
    high = check_bound(end or b"", "end", max_key_bytes)
    if high and low >= high:
        raise _invalid("start must be below end (an empty end means the end of the key space)")
    return low, high


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise _invalid(f"limit is 1..{MAX_LIMIT}, got {limit}")
    return limit


def _digest(start: bytes, end: bytes, snapshot: int, last_key: bytes) -> bytes:
    framed = struct.pack(">IIQ", len(start), len(end), snapshot) + start + end + last_key
    return hashlib.blake2b(framed, digest_size=8).digest()


def encode_token(snapshot: int, start: bytes, end: bytes, last_key: bytes) -> str:
    """The `next` token of a page that stopped after `last_key`, read at `snapshot`."""
    raw = _TOKEN_HEAD.pack(_TOKEN_FORMAT, snapshot, _digest(start, end, snapshot, last_key)) + last_key
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str, start: bytes, end: bytes) -> tuple[int, bytes]:
    """(snapshot, last key) of a token issued for the range [start, end); 400 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("the continuation token is not one this API issued") from None
    if len(raw) <= _TOKEN_HEAD.size:
        raise _invalid("the continuation token is not one this API issued")
    fmt, snapshot, digest = _TOKEN_HEAD.unpack_from(raw)
    last_key = raw[_TOKEN_HEAD.size :]
    if fmt != _TOKEN_FORMAT or snapshot == 0 or digest != _digest(start, end, snapshot, last_key):
        raise _invalid("the continuation token does not belong to this range")
    if last_key < start or (end and last_key >= end):
        raise _invalid("the continuation token's key lies outside the range")
    return snapshot, last_key


def parse_version(text: str, name: str) -> int:
    if not text.isdigit() or int(text) > MAX_VERSION:
        raise _invalid(f"{name} is a version (a decimal integer), got {text[:40]!r}")
    return int(text)


def parse_bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", ""):
        return True
    if lowered in ("false", "0"):
        return False
    raise _invalid(f"{name} is true or false, got {text[:40]!r}")


def parse_encoding(text: str | None) -> str:
    if text is None:
        return "base64"
    if text not in ENCODINGS:
        raise _invalid(f"encoding is {' or '.join(ENCODINGS)}, got {text[:40]!r}")
    return text


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """One page to read: keys in [start, end), from just after `after` when it is set."""

    start: bytes
    end: bytes
    limit: int
    keys_only: bool
    consistency: int
    snapshot: int  # 0: the node picks one
    encoding: str = "base64"

    def request(self, epoch: int) -> chain_pb2.RangeRequest:
        """The node's RangeRequest for this page."""
        return chain_pb2.RangeRequest(
            epoch=epoch,
            start=self.start,
            end=self.end,
            limit=self.limit,
            keys_only=self.keys_only,
            consistency=self.consistency,
            snapshot=self.snapshot,
        )


def range_query(
    params: Mapping[str, bytes], default_consistency: int, max_key_bytes: int
) -> tuple[RangeQuery, bytes, bytes]:
    """The page a `GET /v1/kv?...` asks for, and the range the client named (for its next token).

    `params` are the query parameters with their values percent-decoded to bytes.
    """
    known = {"prefix", "start", "end", "limit", "next", "keys_only", "consistency", "encoding", "version"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _invalid(f"unknown parameter {unknown[0]!r}")
    text = {name: _text(value, name) for name, value in params.items() if name not in ("prefix", "start", "end")}
    start, end = key_range(params.get("prefix"), params.get("start"), params.get("end"), max_key_bytes)
    limit = check_limit(parse_version(text["limit"], "limit")) if "limit" in text else DEFAULT_LIMIT
    consistency = default_consistency
    if "consistency" in text:
        if text["consistency"] not in CONSISTENCY:
            raise _invalid("consistency is strong or eventual")
        consistency = CONSISTENCY[text["consistency"]]
    snapshot = parse_version(text["version"], "version") if "version" in text else 0
    read_from = start
    if "next" in text:
        token_snapshot, last_key = decode_token(text["next"], start, end)
        if snapshot and snapshot != token_snapshot:
            raise _invalid("version differs from the snapshot of the continuation token")
        snapshot, read_from = token_snapshot, last_key + b"\x00"
    query = RangeQuery(
        start=read_from,
        end=end,
        limit=limit,
        keys_only=parse_bool(text["keys_only"], "keys_only") if "keys_only" in text else False,
        consistency=check_consistency(consistency),
        snapshot=snapshot,
        encoding=parse_encoding(text.get("encoding")),
    )
    return query, start, end


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise _invalid(f"{name} must be ASCII") from None


@dataclass(frozen=True, slots=True)
class WatchQuery:
    start: bytes
    end: bytes
    after_version: int | None  # None: from now (the current snapshot)
    encoding: str = "base64"


def watch_query(params: Mapping[str, bytes], last_event_id: str | None, max_key_bytes: int) -> WatchQuery:
    """What `GET /v1/watch?...` asks for. `Last-Event-ID` (a reconnect) resumes after that version
    and wins over from_version, which names the first version wanted."""
    unknown = sorted(set(params) - {"prefix", "start", "end", "from_version", "encoding"})
    if unknown:
        raise _invalid(f"unknown parameter {unknown[0]!r}")
    start, end = key_range(params.get("prefix"), params.get("start"), params.get("end"), max_key_bytes)
    after: int | None = None
    if "from_version" in params:
        first = parse_version(_text(params["from_version"], "from_version"), "from_version")
        after = max(first - 1, 0)
    if last_event_id is not None and last_event_id.strip():
        after = parse_version(last_event_id.strip(), "Last-Event-ID")
    encoding = parse_encoding(_text(params["encoding"], "encoding") if "encoding" in params else None)
    return WatchQuery(start, end, after, encoding)
