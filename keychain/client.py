"""The Python client of KeychainDB's HTTP API, synchronous (`Client`) and asyncio (`AsyncClient`).

    from keychain.client import Client, KeyNotFound

    with Client("http://127.0.0.1:8080") as kc:   # or https://... with cacert=, cert=, key=
        version = kc.put("greeting", b"hello")
        value, version = kc.get("greeting")
        kc.put("greeting", b"hi", if_version=version)   # compare-and-set
        kc.delete("greeting")
        for item in kc.list("users/"):                # every key under a prefix, page by page,
            print(item.key, item.value, item.version)  # all pages at one snapshot
        kc.txn(compare=[{"key": "a", "version": 3}],   # atomic: both or neither
               success=[{"op": "put", "key": "a", "value": b"1"}, {"op": "put", "key": "b", "value": b"2"}])
        for event in kc.watch("users/"):              # committed changes, resumed across failures
            print(event.type, event.key, event.version)

Each logical write carries one idempotency key, generated once and reused on every retry, so
a retry after a timeout or a 503 is applied at most once. An idempotency key belongs to the key
it was sent with: the same idempotency key on another key is another write. When no attempt can
tell whether a write happened, `OutcomeUnknown` is raised: it is not a failure, the write may
have applied; writing the same key again with its `idempotency_key` tells which.
Both clients share everything but the sending: each operation is a `_Call` (the request and how
its response becomes the method's result), and `_exchange` drives its attempts as a generator
that yields what to send or how long to wait, so `Client` and `AsyncClient` only perform it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import ssl
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from keychain.backoff import Backoff, FailureStreak

__all__ = [
    "AsyncClient",
    "Client",
    "Compacted",
    "InvalidRequest",
    "Item",
    "KeyNotFound",
    "KeychainError",
    "OutcomeUnknown",
    "Page",
    "PreconditionFailed",
    "TxnResult",
    "Unauthorized",
    "Unavailable",
    "WatchEvent",
    "key_path",
    "tls_context",
]

DEFAULT_URL = "http://127.0.0.1:8080"
CONSISTENCIES = ("strong", "eventual")
# Pauses between the attempts of one call: up to 0.1 s before the first retry, doubling, at most
# 1 s; a server's Retry-After, when longer, is honoured up to 2 s.
RETRY_BACKOFF = Backoff(base=0.1, cap=1.0)


class KeychainError(Exception):
    """Base of every client error; `status` is the HTTP status (0 when none was received)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class KeyNotFound(KeychainError):
    pass


class PreconditionFailed(KeychainError):
    """A compare-and-set or create-only write did not hold; `current_version` is what is there."""

    def __init__(self, message: str, *, current_version: int, status: int = 412, code: str = "") -> None:
        super().__init__(message, status=status, code=code)
        self.current_version = current_version


class Unavailable(KeychainError):
    """Nothing was applied; the cluster could not serve (no topology, reconfiguring, unreachable)."""


class OutcomeUnknown(KeychainError):
    """A write may or may not have been applied; retrying with the same idempotency key tells."""

    def __init__(self, message: str, *, idempotency_key: str, status: int = 0, code: str = "") -> None:
        super().__init__(message, status=status, code=code)
        self.idempotency_key = idempotency_key


class InvalidRequest(KeychainError):
    """Bad key, bad header, value or key too large (status 400 or 413)."""


class Unauthorized(KeychainError):
    pass


class Compacted(KeychainError):
    """A range's snapshot or a watch's start is older than the history kept (410);
    `compact_version` is the oldest one still served."""

    def __init__(self, message: str, *, compact_version: int, status: int = 410, code: str = "compacted") -> None:
        super().__init__(message, status=status, code=code)
        self.compact_version = compact_version


@dataclass(frozen=True, slots=True)
class Item:
    """One key of a range: its value (None with keys_only) and version."""

    key: str
    value: bytes | None
    version: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a range, read at snapshot `version`; `next` continues it (None: the last page)."""

    items: list[Item]
    next: str | None
    version: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    """A transaction's outcome: which branch ran, its version, one result per op of that branch
    (`{"op", "key", "version"}`, and for a get also `"found"` and `"value"` as bytes)."""

    succeeded: bool
    version: int
    results: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One committed change: `type` put or delete; a transaction's changes share a version."""

    type: str
    key: str
    value: bytes | None
    version: int


def key_path(key: str | bytes) -> str:
    """The URL path of a key: `/v1/kv/` and the key as one percent-encoded segment."""
    text = key.decode("utf-8") if isinstance(key, bytes) else key
    # Every '/' and '.' encoded: the key is one path segment and never a dot segment.
    return "/v1/kv/" + quote(text, safe="").replace(".", "%2E")


def _body(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _error_of(response: httpx.Response) -> KeychainError:
    """The exception for an error response (JSON `{"error", "message"}`)."""
    try:
        body = response.json()
        code, message = str(body.get("error", "")), str(body.get("message", ""))
    except (ValueError, AttributeError):
        body, code, message = {}, "", response.text[:200]
    status = response.status_code
    message = message or f"HTTP {status}"
    if status == 404:
        return KeyNotFound(message, status=status, code=code)
    if status == 412:
        return PreconditionFailed(
            message, current_version=int(body.get("current_version", 0)), status=status, code=code
        )
    if status == 401:
        return Unauthorized(message, status=status, code=code)
    if status == 410:
        return Compacted(message, compact_version=int(body.get("compact_version", 0)), status=status, code=code)
    if status in (503, 502):
        return Unavailable(message, status=status, code=code)
    if 400 <= status < 500:
        return InvalidRequest(message, status=status, code=code)
    return KeychainError(message, status=status, code=code)


def _response(response: httpx.Response) -> httpx.Response:
    return response


@dataclass
class _Call[T]:
    """One logical operation: the same request on every attempt, and what its answer means."""

    method: str
    path: str
    write: bool
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    params: dict[str, str] | None = None
    answer: Callable[[httpx.Response], T] = _response  # type: ignore[assignment]

    @property
    def idempotency_key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


class _Attempts:
    """Retry decisions of one call; 503, 504 and transport failures are retried."""

    def __init__(self, call: _Call, retries: int, rng: random.Random) -> None:
        self.call = call
        self.left = retries
        self.pauses = FailureStreak(RETRY_BACKOFF, rng)
        self.maybe_applied = False

    def _delay(self, retry_after: str | None) -> float:
        backoff = self.pauses.delay()
        if retry_after is not None and retry_after.isdigit():
            return max(backoff, min(float(retry_after), 2.0))
        return backoff

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying, or None when this response is the answer."""
        if response.status_code not in (503, 504) or self.left <= 0:
            return None
        self.left -= 1
        self.maybe_applied = self.maybe_applied or response.status_code == 504
        return self._delay(response.headers.get("retry-after"))

    def after_transport_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before retrying; raises when retries are spent."""
        # A connection never made carried nothing; any other failure may have delivered the write.
        self.maybe_applied = self.maybe_applied or not isinstance(
            exc, httpx.ConnectError | httpx.ConnectTimeout
        )
        if self.left <= 0:
            raise self.exhausted(f"{type(exc).__name__}: {exc}") from exc
        self.left -= 1
        return self._delay(None)

    def exhausted(self, detail: str, status: int = 0, code: str = "") -> KeychainError:
        if self.call.write and self.maybe_applied:
            return OutcomeUnknown(
                f"the write may or may not have been applied ({detail})",
                idempotency_key=self.call.idempotency_key,
                status=status,
                code=code or "outcome_unknown",
            )
        return Unavailable(
            f"the cluster did not answer ({detail})", status=status, code=code or "unavailable"
        )

    def result(self, response: httpx.Response) -> httpx.Response:
        """The successful response, or the exception for the final one."""
        if response.status_code < 400:
            return response
        error = _error_of(response)
        if response.status_code in (503, 504):
            raise self.exhausted(error.message, status=response.status_code, code=error.code)
        raise error


def _version(response: httpx.Response) -> int:
    return int(response.json()["version"])


def _value(response: httpx.Response) -> tuple[bytes, int]:
    return response.content, int(response.headers["etag"].strip('"'))


def _cluster(response: httpx.Response) -> dict[str, Any]:
    return response.json()


def _put_call(
    key: str | bytes, value: bytes | str, if_version: int | None, if_absent: bool, idempotency_key: str | None
) -> _Call[int]:
    headers = {
        "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
        "Content-Type": "application/octet-stream",
    }
    if if_version is not None and if_absent:
        raise ValueError("if_version and if_absent exclude each other")
    if if_version is not None:
        headers["If-Match"] = f'"{int(if_version)}"'
    if if_absent:
        headers["If-None-Match"] = "*"
    return _Call("PUT", key_path(key), True, headers, _body(value), answer=_version)


def _delete_call(key: str | bytes, if_version: int | None, idempotency_key: str | None) -> _Call[int]:
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    if if_version is not None:
        headers["If-Match"] = f'"{int(if_version)}"'
    return _Call("DELETE", key_path(key), True, headers, answer=_version)


def _get_call(key: str | bytes, consistency: str | None) -> _Call[tuple[bytes, int]]:
    if consistency is None:  # the proxy's --read-consistency decides
        return _Call("GET", key_path(key), False, answer=_value)
    if consistency not in CONSISTENCIES:
        raise ValueError(f"consistency is one of {CONSISTENCIES}, not {consistency!r}")
    return _Call("GET", key_path(key), False, params={"consistency": consistency}, answer=_value)


def _cluster_call() -> _Call[dict[str, Any]]:
    return _Call("GET", "/v1/cluster", False, answer=_cluster)


def _b64(value: bytes | str) -> str:
    return base64.b64encode(_body(value)).decode("ascii")


def _text_key(key: str | bytes) -> str:
    return key.decode("utf-8") if isinstance(key, bytes) else key


def _page(response: httpx.Response) -> Page:
    body = response.json()
    items = [
        Item(item["key"], None if item.get("value") is None else base64.b64decode(item["value"]), int(item["version"]))
        for item in body["items"]
    ]
    return Page(items, body.get("next"), int(body["version"]))


def _range_call(
    prefix: str | bytes | None,
    start: str | bytes | None,
    end: str | bytes | None,
    limit: int | None,
    keys_only: bool,
    consistency: str | None,
    version: int | None,
    next: str | None,
) -> _Call[Page]:
    params: dict[str, str] = {}
    if prefix is not None:
        params["prefix"] = _text_key(prefix)
    if start is not None:
        params["start"] = _text_key(start)
    if end is not None:
        params["end"] = _text_key(end)
    if limit is not None:
        params["limit"] = str(int(limit))
    if keys_only:
        params["keys_only"] = "true"
    if consistency is not None:
        if consistency not in CONSISTENCIES:
            raise ValueError(f"consistency is one of {CONSISTENCIES}, not {consistency!r}")
        params["consistency"] = consistency
    if version is not None:
        params["version"] = str(int(version))
    if next is not None:
        params["next"] = next
    return _Call("GET", "/v1/kv", False, params=params, answer=_page)


def _txn_entry(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    if "key" in out:
        out["key"] = _text_key(out["key"])
    if out.get("value") is not None:
        out["value"] = _b64(out["value"])
    return out


def _txn_result(response: httpx.Response) -> TxnResult:
    body = response.json()
    results = []
    for result in body["results"]:
        result = dict(result)
        if result.get("value") is not None:
            result["value"] = base64.b64decode(result["value"])
        results.append(result)
    return TxnResult(bool(body["succeeded"]), int(body["version"]), results)


def _txn_call(
    compare: Iterable[dict[str, Any]],
    success: Iterable[dict[str, Any]],
    failure: Iterable[dict[str, Any]],
    idempotency_key: str | None,
) -> _Call[TxnResult]:
    document = {
        "compare": [_txn_entry(c) for c in compare],
        "success": [_txn_entry(o) for o in success],
        "failure": [_txn_entry(o) for o in failure],
    }
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex, "Content-Type": "application/json"}
    return _Call("POST", "/v1/txn", True, headers, json.dumps(document).encode(), answer=_txn_result)


class _Watch:
    """A watch's state across connections, without I/O: what to request (resuming after the last
    event received), the Server-Sent Events parser, and when to give up. Both clients perform it.

    The parser is the few lines of the SSE format the proxy writes (`id:`, `data:`, `event:`,
    comments), written here because httpx has none.
    """

    def __init__(self, prefix: str | bytes | None, start: str | bytes | None, end: str | bytes | None,
                 from_version: int | None, *, retries: int, rng: random.Random, timeout: httpx.Timeout) -> None:
        self.retries = retries
        self.pauses = FailureStreak(RETRY_BACKOFF, rng)
        self.failures = 0
        self.timeout = timeout
        self.params: dict[str, str] = {}
        if prefix is not None:
            self.params["prefix"] = _text_key(prefix)
        if start is not None:
            self.params["start"] = _text_key(start)
        if end is not None:
            self.params["end"] = _text_key(end)
        if from_version is not None:
            self.params["from_version"] = str(int(from_version))
        self.last_id: str | None = None
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def request(self) -> dict[str, Any]:
        """The keyword arguments of the next connection's `stream("GET", "/v1/watch", ...)`."""
        headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": self.last_id} if self.last_id else {})
        return {"params": self.params, "headers": headers, "timeout": self.timeout}

    def refused(self, response: httpx.Response) -> None:
        """A connection answered other than 200 (body read): raises unless worth reconnecting."""
        if response.status_code not in (502, 503, 504):
            raise _error_of(response)

    def failed(self) -> float:
        """The connection ended: seconds to wait before resuming; raises once retries are spent."""
        self.failures += 1
        if self.failures > self.retries:
            raise Unavailable("the watch could not be resumed", code="unavailable")
        return self.pauses.delay()

    def feed(self, line: str) -> WatchEvent | None:
        """One line of the stream; the event it completes, if any. Raises on an error event."""
        self.failures = 0  # the proxy answers: reconnections start counting afresh
        if line == "":
            if self._id is not None:
                self.last_id = self._id
            self._id = None
            data, event = "\n".join(self._data), self._event
            self._data, self._event = [], ""
            if not data:
                return None
            body = json.loads(data)
            if event == "error":
                if body.get("error") == "compacted":
                    raise Compacted(body.get("message", ""), compact_version=int(body.get("compact_version", 0)))
                raise _StreamBroken(body.get("message", "the watch failed"))
            value = body.get("value")
            return WatchEvent(body["type"], body["key"], None if value is None else base64.b64decode(value),
                              int(body["version"]))
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            self._id = value
        elif name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


class _StreamBroken(Exception):
    """The proxy ended a watch's stream with a retryable error: reconnect and resume."""




# What `_exchange` yields: a request to send (answered with its response or transport error) or a
# pause in seconds (answered with None).
_Step = _Call[Any] | float


def _exchange[T](
    call: _Call[T], retries: int, rng: random.Random
) -> Generator[_Step, httpx.Response | httpx.TransportError | None, T]:
    """Every attempt of one call, without I/O: the clients send what it yields and sleep as told."""
    attempts = _Attempts(call, retries, rng)
    while True:
        outcome = yield call
        if isinstance(outcome, httpx.TransportError):
            yield attempts.after_transport_error(outcome)  # raises once retries are spent
            continue
        assert outcome is not None
        delay = attempts.after_response(outcome)
        if delay is None:
            return call.answer(attempts.result(outcome))
        yield delay


def tls_context(
    cacert: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext | None:
    """The TLS settings for an https:// proxy: trust `cacert` (else the system's CAs) and present
    the client certificate `cert` with its `key` when given. None when nothing is given."""
    if cacert is None and cert is None and key is None:
        return None
    if key is not None and cert is None:
        raise ValueError("a client key needs its certificate (cert)")
    context = ssl.create_default_context(cafile=os.fspath(cacert) if cacert is not None else None)
    if cert is not None:
        context.load_cert_chain(os.fspath(cert), os.fspath(key) if key is not None else None)
    return context


def _http_options(
    url: str, timeout: float, token: str | None, max_connections: int, tls: ssl.SSLContext | None
) -> dict[str, Any]:
    """The httpx client settings both clients use."""
    options: dict[str, Any] = {
        "base_url": url.rstrip("/"),
        "timeout": timeout,
        "headers": {"Authorization": f"Bearer {token}"} if token else {},
        "limits": httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    }
    if tls is not None:
        options["verify"] = tls
    return options


class _ClientBase[H: (httpx.Client, httpx.AsyncClient)](ABC):
    """The settings both clients take; each subclass opens its own kind of httpx client."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        token: str | None = None,
        max_connections: int = 100,
        cacert: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
    ) -> None:
        """`cacert`: the CA (PEM) an https:// proxy's certificate is checked against (default: the
        system's); `cert` and `key`: a client certificate (PEM) for a proxy that asks for one."""
        self.retries = retries
        self.timeout = timeout
        self._rng = random.Random()
        tls = tls_context(cacert, cert, key)
        self._http: H = self._open_http(_http_options(url, timeout, token, max_connections, tls))

    @abstractmethod
    def _open_http(self, options: dict[str, Any]) -> H: ...


class Client(_ClientBase[httpx.Client]):
    """Synchronous client; thread-safe (one connection pool), use as a context manager."""

    def _open_http(self, options: dict[str, Any]) -> httpx.Client:
        return httpx.Client(**options)

    def _run[T](self, call: _Call[T]) -> T:
        steps = _exchange(call, self.retries, self._rng)
        step = next(steps)
        try:
            while True:
                if not isinstance(step, _Call):
                    time.sleep(step)
                    step = steps.send(None)
                    continue
                try:
                    response = self._http.request(
                        step.method, step.path, headers=step.headers, content=step.content, params=step.params
                    )
                except httpx.TransportError as exc:
                    step = steps.send(exc)
                else:
                    step = steps.send(response)
        except StopIteration as done:
            return done.value

    def put(
        self,
        key: str | bytes,
        value: bytes | str,
        if_version: int | None = None,
        if_absent: bool = False,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Write `value`; returns the new version. `if_version`: compare-and-set; `if_absent`: create only.

        `idempotency_key`: pass `OutcomeUnknown.idempotency_key` to learn a write's outcome.
        """
        return self._run(_put_call(key, value, if_version, if_absent, idempotency_key))

    def get(self, key: str | bytes, consistency: str | None = None) -> tuple[bytes, int]:
        """(value, version); raises KeyNotFound. `consistency`: strong or eventual; None: the proxy's default."""
        return self._run(_get_call(key, consistency))

    def delete(
        self, key: str | bytes, if_version: int | None = None, *, idempotency_key: str | None = None
    ) -> int:
        """Delete (a tombstone); returns its version."""
        return self._run(_delete_call(key, if_version, idempotency_key))

    def cluster(self) -> dict[str, Any]:
        """The `GET /v1/cluster` report: chains, members with role/health/counts, coordinator."""
        return self._run(_cluster_call())

    def range(
        self,
        start: str | bytes | None = None,
        end: str | bytes | None = None,
        *,
        prefix: str | bytes | None = None,
        limit: int | None = None,
        keys_only: bool = False,
        consistency: str | None = None,
        version: int | None = None,
        next: str | None = None,
    ) -> Page:
        """One page of keys in [start, end) (or under `prefix`) at one snapshot; pass the page's
        `next` to continue at the same snapshot. Raises Compacted when it is no longer readable."""
        return self._run(_range_call(prefix, start, end, limit, keys_only, consistency, version, next))

    def list(
        self,
        prefix: str | bytes = "",
        *,
        limit: int | None = None,
        keys_only: bool = False,
        consistency: str | None = None,
    ) -> Iterator[Item]:
        """Every key under `prefix`, in key order, page after page, all at the first page's snapshot."""
        token: str | None = None
        while True:
            page = self.range(prefix=prefix, limit=limit, keys_only=keys_only, consistency=consistency, next=token)
            yield from page.items
            if page.next is None:
                return
            token = page.next

    def txn(
        self,
        compare: Iterable[dict[str, Any]] = (),
        success: Iterable[dict[str, Any]] = (),
        failure: Iterable[dict[str, Any]] = (),
        *,
        idempotency_key: str | None = None,
    ) -> TxnResult:
        """An atomic transaction: if every compare holds, the success ops run, else the failure ops,
        all under one version. Compares `{"key", "version"|"exists"|"value", "result": "=="}`, ops
        `{"op": "put"|"delete"|"get", "key", "value"}`; values are bytes or text."""
        return self._run(_txn_call(compare, success, failure, idempotency_key))

    def watch(
        self,
        prefix: str | bytes | None = None,
        *,
        start: str | bytes | None = None,
        end: str | bytes | None = None,
        from_version: int | None = None,
        idle_timeout: float = 60.0,
    ) -> Iterator[WatchEvent]:
        """Every committed change under `prefix` (or in [start, end)) from `from_version` (default:
        from now on), in version order. A lost connection is resumed after the last event received,
        with no gap and no duplicate; `retries` failed reconnections in a row raise Unavailable."""
        state = _Watch(prefix, start, end, from_version, retries=self.retries, rng=self._rng,
                       timeout=httpx.Timeout(self.timeout, read=idle_timeout))
        while True:
            try:
                with self._http.stream("GET", "/v1/watch", **state.request()) as response:
                    if response.status_code != 200:
                        response.read()
                        state.refused(response)
                    else:
                        for line in response.iter_lines():
                            event = state.feed(line)
                            if event is not None:
                                yield event
            except (httpx.TransportError, _StreamBroken):
                pass
            time.sleep(state.failed())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase[httpx.AsyncClient]):
    """asyncio client with the same methods as `Client`, as coroutines."""

    def _open_http(self, options: dict[str, Any]) -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    async def _run[T](self, call: _Call[T]) -> T:
        steps = _exchange(call, self.retries, self._rng)
        step = next(steps)
        try:
            while True:
                if not isinstance(step, _Call):
                    await asyncio.sleep(step)
                    step = steps.send(None)
                    continue
                try:
                    response = await self._http.request(
                        step.method, step.path, headers=step.headers, content=step.content, params=step.params
                    )
                except httpx.TransportError as exc:
                    step = steps.send(exc)
                else:
                    step = steps.send(response)
        except StopIteration as done:
            return done.value

    async def put(
        self,
        key: str | bytes,
        value: bytes | str,
        if_version: int | None = None,
        if_absent: bool = False,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        return await self._run(_put_call(key, value, if_version, if_absent, idempotency_key))

    async def get(self, key: str | bytes, consistency: str | None = None) -> tuple[bytes, int]:
        return await self._run(_get_call(key, consistency))

    async def delete(
        self, key: str | bytes, if_version: int | None = None, *, idempotency_key: str | None = None
    ) -> int:
        return await self._run(_delete_call(key, if_version, idempotency_key))

    async def cluster(self) -> dict[str, Any]:
        return await self._run(_cluster_call())

    async def range(
        self,
        start: str | bytes | None = None,
        end: str | bytes | None = None,
        *,
        prefix: str | bytes | None = None,
        limit: int | None = None,
        keys_only: bool = False,
        consistency: str | None = None,
        version: int | None = None,
        next: str | None = None,
    ) -> Page:
        return await self._run(_range_call(prefix, start, end, limit, keys_only, consistency, version, next))

    async def list(
        self,
        prefix: str | bytes = "",
        *,
        limit: int | None = None,
        keys_only: bool = False,
        consistency: str | None = None,
    ) -> AsyncIterator[Item]:
        token: str | None = None
        while True:
            page = await self.range(
                prefix=prefix, limit=limit, keys_only=keys_only, consistency=consistency, next=token
            )
            for item in page.items:
                yield item
            if page.next is None:
                return
            token = page.next

    async def txn(
        self,
        compare: Iterable[dict[str, Any]] = (),
        success: Iterable[dict[str, Any]] = (),
        failure: Iterable[dict[str, Any]] = (),
        *,
        idempotency_key: str | None = None,
    ) -> TxnResult:
        return await self._run(_txn_call(compare, success, failure, idempotency_key))

    async def watch(
        self,
        prefix: str | bytes | None = None,
        *,
        start: str | bytes | None = None,
        end: str | bytes | None = None,
        from_version: int | None = None,
        idle_timeout: float = 60.0,
    ) -> AsyncIterator[WatchEvent]:
        state = _Watch(prefix, start, end, from_version, retries=self.retries, rng=self._rng,
                       timeout=httpx.Timeout(self.timeout, read=idle_timeout))
        while True:
            try:
                async with self._http.stream("GET", "/v1/watch", **state.request()) as response:
                    if response.status_code != 200:
                        await response.aread()
                        state.refused(response)
                    else:
                        async for line in response.aiter_lines():
                            event = state.feed(line)
                            if event is not None:
                                yield event
            except (httpx.TransportError, _StreamBroken):
                pass
            await asyncio.sleep(state.failed())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
