"""Checks on what a client sends, before anything reaches the chain.

Pure functions shared by the HTTP and gRPC front ends; each raises `OpError` with the
client-facing reason, so bad input never changes stored data.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote_to_bytes

from keychain.proto import chain_pb2

from .errors import ErrorKind, OpError

_VERSION_TAG = re.compile(r'\s*"([0-9]{1,20})"\s*')
_MAX_REQUEST_ID = 128
_KEY_SCOPE_BYTES = 16  # 128 bits of the key's hash: a collision between two keys is out of reach


def key_from_raw_path(raw_path: bytes, prefix: bytes, max_key_bytes: int) -> bytes:
    """The key in a percent-encoded request path; must be non-empty UTF-8 within the limit.

    Decoded from the raw path because servers replace invalid UTF-8 in the decoded path with
    U+FFFD, which would silently store a different key.
    """
    return check_key(unquote_to_bytes(raw_path[len(prefix) :]), max_key_bytes)


def check_key(key: bytes, max_key_bytes: int) -> bytes:
    if not key:
        raise OpError(ErrorKind.INVALID_KEY, "the key is empty")
    if len(key) > max_key_bytes:
        raise OpError(ErrorKind.TOO_LARGE, f"the key is {len(key)} bytes; the limit is {max_key_bytes}")
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        raise OpError(ErrorKind.INVALID_KEY, "the key is not valid UTF-8") from None
    return key


def check_value_size(size: int, max_value_bytes: int) -> None:
    if size > max_value_bytes:
        raise OpError(ErrorKind.TOO_LARGE, f"the value is {size} bytes; the limit is {max_value_bytes}")


def parse_version_tag(header: str, name: str) -> int:
    """An entity tag `"<version>"` as the ETag header gives it (one strong tag, a decimal)."""
    match = _VERSION_TAG.fullmatch(header)
    if match is None:
        raise OpError(
            ErrorKind.INVALID_REQUEST,
            f'{name} must be one entity tag "<version>" as sent in ETag, got {header!r}',
        )
    version = int(match.group(1))
    if version >= 1 << 64:
        raise OpError(ErrorKind.INVALID_REQUEST, f"{name}: version {version} is out of range")
    return version


def none_match(if_none_match: str, version: int) -> bool:
    """Whether a read's If-None-Match holds for the key's current `version` (then: 304).

    `*` matches any existing key; otherwise a comma-separated list of entity tags, compared
    weakly as RFC 9110 asks for If-None-Match (W/"7" matches "7"). A tag that is not one of
    ours matches nothing.
    """
    if if_none_match.strip() == "*":
        return True
    ours = f'"{version}"'
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == ours:
            return True
    return False


def write_conditions(if_match: str | None, if_none_match: str | None) -> tuple[int | None, bool]:
    """(if_version, if_absent) from the conditional-request headers of a write."""
    if if_match is not None and if_none_match is not None:
        raise OpError(ErrorKind.INVALID_REQUEST, "send If-Match or If-None-Match, not both")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise OpError(ErrorKind.INVALID_REQUEST, "a write supports only If-None-Match: * (create only)")
        return None, True
    if if_match is not None:
        return parse_version_tag(if_match, "If-Match"), False
    return None, False


_CONSISTENCIES = frozenset(chain_pb2.Consistency.values())  # asked on every read: the enum builds a list


def check_consistency(consistency: int) -> int:
    """A read's consistency as the chain knows it; anything else is refused before batching.

    A node refuses a whole ReadBatch with an unknown consistency in it, which would fail every
    other client's read grouped into the same batch.
    """
    if consistency not in _CONSISTENCIES:
        names = " or ".join(f"{name} ({number})" for name, number in chain_pb2.Consistency.items())
        raise OpError(ErrorKind.INVALID_REQUEST, f"consistency {consistency} is unknown; use {names}")
    return consistency


def check_request_id(request_id: str) -> str:
    if (
        not request_id
        or len(request_id) > _MAX_REQUEST_ID
        or not request_id.isprintable()
        or not request_id.isascii()
    ):
        raise OpError(
            ErrorKind.INVALID_REQUEST,
            f"an idempotency key is 1..{_MAX_REQUEST_ID} printable ASCII characters",
        )
    return request_id


def scoped_request_id(idempotency_key: str, key: bytes) -> str:
    """The chain's request id of a write: the client's idempotency key, scoped to the written key.

    The chain remembers outcomes by request id alone, so a client that reused one idempotency
    key for a write to another key would get the first write's outcome back and its own write
    never applied. Scoped, the same idempotency key on another key is another write. At most
    128 + 1 + 32 characters, well under the node's 256-byte limit on request ids.
    """
    digest = hashlib.blake2b(key, digest_size=_KEY_SCOPE_BYTES).hexdigest()
    return f"{idempotency_key}@{digest}"
