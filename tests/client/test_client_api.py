"""keychain.client (sync and async) against the real proxy and an in-test chain."""

from __future__ import annotations

import importlib.abc
import inspect
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from keychain.proxy.validation import scoped_request_id
from proxy_double import ChainDouble
from proxy_harness import RunningProxy, running_proxy

from keychain.client import (
    AsyncClient,
    Client,
    Compacted,
    InvalidRequest,
    KeyNotFound,
    OutcomeUnknown,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
    WatchEvent,
    _Attempts,
    _Call,
    _exchange,
    _put_call,
    _Watch,
)


def test_sync_client_round_trip_with_cas_and_create_only(proxy: RunningProxy, chain: ChainDouble):
    with Client(proxy.url) as kc:
        v1 = kc.put("users/ana", b"1")
        assert kc.get("users/ana") == (b"1", v1)
        with pytest.raises(PreconditionFailed) as stale:
            kc.put("users/ana", b"2", if_version=v1 + 10)
        assert stale.value.current_version == v1
        v2 = kc.put("users/ana", "2", if_version=v1)
        assert kc.get("users/ana", consistency="eventual") == (b"2", v2)
        with pytest.raises(PreconditionFailed):
            kc.put("users/ana", b"3", if_absent=True)
        kc.delete("users/ana", if_version=v2)
        with pytest.raises(KeyNotFound):
            kc.get("users/ana")
    assert chain.state.seq == 3


def test_keys_with_slashes_dots_and_unicode_are_one_key(proxy: RunningProxy, chain: ChainDouble):
    with Client(proxy.url) as kc:
        for key in ("a/b/c", "..", ".", "a/../b", "ключ é", "100%"):
            kc.put(key, key.encode())
            assert kc.get(key)[0] == key.encode()
    assert set(chain.state.data) == {k.encode() for k in ("a/b/c", "..", ".", "a/../b", "ключ é", "100%")}


def test_bad_requests_and_auth_raise_their_exceptions(chain: ChainDouble):
    with running_proxy(chain, auth_token="tok", max_value_bytes=4) as proxy:
        with Client(proxy.url) as anonymous, pytest.raises(Unauthorized):
            anonymous.put("k", b"v")
        with Client(proxy.url, token="tok") as kc:
            with pytest.raises(InvalidRequest) as too_large:
                kc.put("k", b"12345")
            assert too_large.value.status == 413
            with pytest.raises(InvalidRequest):
                kc.put("", b"v")
            with pytest.raises(ValueError):
                kc.get("k", consistency="whenever")
            assert kc.put("k", b"1234") == 1


def test_an_unknown_outcome_is_its_own_exception_and_the_same_key_settles_it(chain: ChainDouble):
    chain.state.sticky_fault = "outcome_unknown"
    with running_proxy(chain, request_timeout=0.2) as proxy, Client(proxy.url, retries=1) as kc:
        with pytest.raises(OutcomeUnknown) as unknown:
            kc.put("k", b"v")
        key = unknown.value.idempotency_key
        assert key and {tuple(ids) for ids in chain.state.write_attempts} == {(scoped_request_id(key, b"k"),)}, (
            "every attempt of both client tries carried the one idempotency key"
        )
        chain.state.sticky_fault = None
        assert kc.put("k", b"v", idempotency_key=key) == 1
    assert chain.state.applied[scoped_request_id(key, b"k")] == 1


def test_503_is_retried_until_the_cluster_is_ready():
    def refusals(proxy: RunningProxy) -> float:
        labels = {"api": "http", "op": "put", "outcome": "unavailable"}
        return proxy.server.metrics.registry.get_sample_value("keychain_proxy_requests_total", labels) or 0

    with ChainDouble(members=1, publish=False) as chain, running_proxy(chain, wait_ready=False) as proxy:
        with Client(proxy.url, retries=0) as impatient, pytest.raises(Unavailable):
            impatient.put("k", b"v")
        with Client(proxy.url, retries=5) as patient, ThreadPoolExecutor(1) as pool:
            pending = pool.submit(patient.put, "k", b"v")
            deadline = time.monotonic() + 5
            while refusals(proxy) < 2 and time.monotonic() < deadline:  # the patient one was refused once
                time.sleep(0.005)
            chain.publish()
            assert pending.result(timeout=10) == 1
        assert refusals(proxy) == 2


def test_an_unreachable_proxy_is_unavailable_not_unknown():
    with Client("http://127.0.0.1:1", retries=1, timeout=1) as kc:
        with pytest.raises(Unavailable):
            kc.put("k", b"v")
        with pytest.raises(Unavailable):
            kc.get("k")


def test_a_write_that_may_have_been_delivered_is_outcome_unknown_a_read_is_unavailable():
    write = _Attempts(_Call("PUT", "/v1/kv/k", True, {"Idempotency-Key": "x"}), 0, random.Random(1))
    with pytest.raises(OutcomeUnknown) as unknown:
        write.after_transport_error(httpx.ReadTimeout("timed out"))
    assert unknown.value.idempotency_key == "x"
    read = _Attempts(_Call("GET", "/v1/kv/k", False), 0, random.Random(1))
    with pytest.raises(Unavailable):
        read.after_transport_error(httpx.ReadTimeout("timed out"))
    retried = _Attempts(_Call("PUT", "/v1/kv/k", True), 2, random.Random(1))
    assert retried.after_transport_error(httpx.ConnectError("refused")) >= 0
    assert retried.after_response(httpx.Response(503, headers={"Retry-After": "1"})) == 1.0
    assert retried.after_response(httpx.Response(504)) is None, "retries spent: the answer stands"


async def test_async_client_round_trip_and_cluster(proxy: RunningProxy, chain: ChainDouble):
    async with AsyncClient(proxy.url) as kc:
        v1 = await kc.put("a", b"1")
        assert await kc.get("a") == (b"1", v1)
        with pytest.raises(PreconditionFailed):
            await kc.put("a", b"2", if_absent=True)
        assert await kc.delete("a", if_version=v1) == v1 + 1
        with pytest.raises(KeyNotFound):
            await kc.get("a")
        report = await kc.cluster()
    assert [m["role"] for m in report["chains"][0]["members"]] == ["head", "middle", "tail"]
    assert report["coordinator"]["leader"] == "coord-1"


class _ModuleLookups(importlib.abc.MetaPathFinder):
    """Records every module an import searches for (one not already in sys.modules), finds none."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        self.names.append(fullname)


async def test_the_async_clients_requests_search_for_no_module(proxy: RunningProxy, chain: ChainDouble):
    # httpcore imports sniffio on every async request; without it installed, each of those imports
    # searched sys.path again: about a millisecond of CPU per request.
    async with AsyncClient(proxy.url) as kc:
        await kc.put("a", b"0")  # the first request imports what the path needs
        lookups = _ModuleLookups()
        sys.meta_path.insert(0, lookups)
        try:
            for i in range(3):
                await kc.txn(success=[{"op": "put", "key": "a", "value": str(i)}])
                await kc.put("b", str(i))
        finally:
            sys.meta_path.remove(lookups)
    assert lookups.names == []


def test_one_exchange_drives_both_clients_sends_retries_and_answers():
    steps = _exchange(_put_call("k", b"v", None, False, "idem"), 2, random.Random(3))
    first = next(steps)
    assert isinstance(first, _Call) and (first.method, first.path) == ("PUT", "/v1/kv/k")
    pause = steps.send(httpx.Response(503, headers={"Retry-After": "1"}))
    assert pause == 1.0, "Retry-After is honoured"
    again = steps.send(None)
    assert again is first, "a retry resends the same request (same idempotency key)"
    assert isinstance(steps.send(httpx.ReadTimeout("timed out")), float)
    assert steps.send(None) is first
    with pytest.raises(StopIteration) as done:
        steps.send(httpx.Response(200, json={"key": "k", "version": 7}))
    assert done.value.value == 7, "the answer is interpreted once, for both clients"


def test_both_clients_offer_the_same_methods_with_the_same_signatures():
    def api(cls: type) -> dict[str, list[inspect.Parameter]]:
        # Parameters, not return annotations: list and watch are iterators in one, async ones in the other.
        return {
            name: list(inspect.signature(member).parameters.values())
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_") and name not in ("close", "aclose")
        }

    assert api(Client) == api(AsyncClient)
    assert set(api(Client)) == {"put", "get", "delete", "cluster", "range", "list", "txn", "watch"}
    assert inspect.signature(Client.__init__) == inspect.signature(AsyncClient.__init__)


def test_a_watch_resumes_after_the_last_complete_event_and_gives_up_after_its_retries():
    state = _Watch("p/", None, None, 5, retries=1, rng=random.Random(1), timeout=httpx.Timeout(1.0))
    assert state.request()["params"] == {"prefix": "p/", "from_version": "5"}
    assert "Last-Event-ID" not in state.request()["headers"]
    lines = ["retry: 1000", "id: 4", "", ": heartbeat", "id: 7", 'data: {"type": "put", "key": "p/a", "value": "eA==", "version": 7}']
    assert [state.feed(line) for line in lines] == [None] * 6
    assert state.request()["headers"].get("Last-Event-ID") == "4", "an event is not received until its blank line"
    assert state.feed("") == WatchEvent("put", "p/a", b"x", 7)
    assert state.request()["headers"]["Last-Event-ID"] == "7"
    state.refused(httpx.Response(503, json={"error": "unavailable", "message": "later"}))  # worth reconnecting
    with pytest.raises(Compacted) as gone:
        state.refused(httpx.Response(410, json={"error": "compacted", "message": "old", "compact_version": 9}))
    assert gone.value.compact_version == 9
    assert state.failed() >= 0
    with pytest.raises(Unavailable):
        state.failed()
