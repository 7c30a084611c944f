"""Range reads, transactions and watches through the real proxy (HTTP and gRPC) over the chain double.

One chain double and one proxy serve the module; each scenario works under its own key prefix.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator

import grpc
import httpx
import pytest
from proxy_double import ChainDouble
from proxy_harness import RunningProxy, running_proxy

from keychain.client import AsyncClient, Client, Compacted, InvalidRequest
from keychain.proto import chain_pb2, kv_pb2, kv_pb2_grpc


@pytest.fixture(scope="module")
def chain() -> Iterator[ChainDouble]:
    with ChainDouble(members=3) as double:
        yield double


@pytest.fixture(scope="module")
def proxy(chain: ChainDouble) -> Iterator[RunningProxy]:
    with running_proxy(chain, watch_heartbeat=0.2, max_txn_ops=8, max_txn_bytes=4096) as running:
        yield running


@pytest.fixture(scope="module")
def kc(proxy: RunningProxy) -> Iterator[Client]:
    with Client(proxy.url, retries=2) as client:
        yield client


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---- range reads ----


def test_pages_of_a_prefix_are_read_at_the_first_pages_snapshot(proxy: RunningProxy, kc: Client) -> None:
    for i in range(5):
        kc.put(f"pages/{i}", f"v{i}")
    kc.put("pagesX", "outside the prefix")
    first = httpx.get(f"{proxy.url}/v1/kv", params={"prefix": "pages/", "limit": 2, "encoding": "utf8"}).json()
    assert [(i["key"], i["value"]) for i in first["items"]] == [("pages/0", "v0"), ("pages/1", "v1")]
    snapshot = first["version"]
    kc.put("pages/4", "changed after the first page")
    kc.put("pages/5", "new after the first page")
    second = httpx.get(f"{proxy.url}/v1/kv", params={"prefix": "pages/", "limit": 2, "next": first["next"]}).json()
    third = httpx.get(f"{proxy.url}/v1/kv", params={"prefix": "pages/", "limit": 2, "next": second["next"]}).json()
    assert second["version"] == third["version"] == snapshot
    assert [i["key"] for i in second["items"] + third["items"]] == ["pages/2", "pages/3", "pages/4"]
    assert base64.b64decode(third["items"][0]["value"]) == b"v4"  # base64 by default: as of the snapshot
    assert third["next"] is None
    assert [item.key for item in kc.list("pages/", limit=2)] == [f"pages/{i}" for i in range(6)]


def test_keys_only_and_explicit_bounds(proxy: RunningProxy, kc: Client) -> None:
    for key in ("bounds/a", "bounds/b", "bounds/c"):
        kc.put(key, "x")
    page = kc.range("bounds/a", "bounds/c", keys_only=True)
    assert [(i.key, i.value) for i in page.items] == [("bounds/a", None), ("bounds/b", None)]


def test_a_snapshot_no_longer_kept_answers_410_with_the_oldest_kept(
    proxy: RunningProxy, chain: ChainDouble, kc: Client
) -> None:
    kc.put("compact/a", "1")
    old = kc.range(prefix="compact/").version
    kc.put("compact/a", "2")
    with chain.lock:
        chain.state.compact_version = chain.state.seq
    try:
        response = httpx.get(f"{proxy.url}/v1/kv", params={"prefix": "compact/", "version": old})
        assert response.status_code == 410
        assert response.json()["error"] == "compacted"
        assert response.json()["compact_version"] == chain.state.compact_version
        with pytest.raises(Compacted):
            kc.range(prefix="compact/", version=old)
    finally:
        with chain.lock:
            chain.state.compact_version = 0


def test_a_snapshot_or_history_one_member_lost_is_served_by_another(
    proxy: RunningProxy, chain: ChainDouble, kc: Client
) -> None:
    first = kc.put("restarted/a", "1")
    kc.put("restarted/a", "2")
    with chain.lock:  # two members kept less (as a restarted node does); node-3 still has it all
        chain.state.member_compact = {"node-1": chain.state.seq, "node-2": chain.state.seq}
    try:
        for _ in range(3):  # whichever member the proxy asks first
            page = kc.range(prefix="restarted/", version=first)
            assert [(i.value, i.version) for i in page.items] == [(b"1", first)]
            event = next(kc.watch("restarted/", from_version=first))
            assert (event.value, event.version) == (b"1", first)
    finally:
        with chain.lock:
            chain.state.member_compact = {}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"start": "b", "end": "a"}, 400),
        ({"start": "a", "end": "a"}, 400),
        ({"prefix": "a", "start": "a"}, 400),
        ({"prefix": "a", "limit": "10001"}, 400),
        ({"prefix": "a", "limit": "0"}, 400),
        ({"prefix": "a", "limit": "ten"}, 400),
        ({"prefix": "a", "next": "not-a-token"}, 400),
        ({"prefix": "a", "consistency": "linear"}, 400),
        ({"prefix": "a", "bogus": "1"}, 400),
        ({"prefix": "k" * 2000}, 413),
    ],
)
def test_bad_range_parameters_are_refused(proxy: RunningProxy, params: dict[str, str], status: int) -> None:
    response = httpx.get(f"{proxy.url}/v1/kv", params=params)
    assert response.status_code == status, response.text
    assert set(response.json()) >= {"error", "message"}


def test_a_token_only_continues_its_own_range(proxy: RunningProxy, kc: Client) -> None:
    for i in range(3):
        kc.put(f"token/{i}", "x")
    token = kc.range(prefix="token/", limit=1).next
    assert token is not None
    assert httpx.get(f"{proxy.url}/v1/kv", params={"prefix": "other/", "next": token}).status_code == 400
    assert httpx.get(f"{proxy.url}/v1/kv", params={"prefix": "token/", "next": token[:-3]}).status_code == 400
    non_utf8 = httpx.get(f"{proxy.url}/v1/kv?prefix=%ff%fe")
    assert non_utf8.status_code == 400


# ---- transactions ----


def _txn(proxy: RunningProxy, body: object, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{proxy.url}/v1/txn", content=content, headers=headers)


def test_a_transactions_writes_share_one_version(proxy: RunningProxy, kc: Client) -> None:
    kc.put("txn/a", "1")
    reply = _txn(proxy, {
        "compare": [{"key": "txn/a", "value": _b64("1")}, {"key": "txn/b", "exists": False}],
        "success": [{"op": "put", "key": "txn/a", "value": _b64("2")},
                    {"op": "put", "key": "txn/b", "value": _b64("2")},
                    {"op": "get", "key": "txn/a"}],
    }).json()
    assert reply["succeeded"] is True
    a, b, got = reply["results"]
    assert a["version"] == b["version"] == reply["version"]
    assert base64.b64decode(got["value"]) == b"2" and got["found"] is True
    assert kc.get("txn/a") == (b"2", reply["version"]) and kc.get("txn/b") == (b"2", reply["version"])


def test_a_failing_compare_writes_nothing_and_runs_the_failure_branch(
    proxy: RunningProxy, chain: ChainDouble, kc: Client
) -> None:
    version = kc.put("cas/a", "1")
    seq = chain.state.seq
    result = kc.txn(
        compare=[{"key": "cas/a", "version": version + 100}],
        success=[{"op": "put", "key": "cas/a", "value": "no"}, {"op": "put", "key": "cas/b", "value": "no"}],
        failure=[{"op": "get", "key": "cas/a"}],
    )
    assert not result.succeeded
    assert result.results == [{"op": "get", "key": "cas/a", "version": version, "found": True, "value": b"1"}]
    assert chain.state.seq == seq
    assert kc.get("cas/a") == (b"1", version)


def test_a_retried_transaction_with_its_idempotency_key_applies_once(
    proxy: RunningProxy, chain: ChainDouble
) -> None:
    body = {"success": [{"op": "put", "key": "idem/a", "value": _b64("x")}]}
    first = _txn(proxy, body, **{"Idempotency-Key": "txn-1"}).json()
    again = _txn(proxy, body, **{"Idempotency-Key": "txn-1"}).json()
    assert first == again
    other = _txn(proxy, {"success": [{"op": "put", "key": "idem/b", "value": _b64("y")}]},
                 **{"Idempotency-Key": "txn-1"}).json()
    assert other["version"] > first["version"]  # the same key on another transaction is another write


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        ({"success": [{"op": "put", "key": "bad/a"}]}, 400),  # a put without a value
        ({"success": [{"op": "upsert", "key": "bad/a", "value": ""}]}, 400),
        ({"success": [{"op": "put", "key": "bad/a", "value": "not base64!"}]}, 400),
        ({"compare": [{"key": "bad/a", "version": 1, "exists": True}], "success": []}, 400),
        ({"compare": [{"key": "bad/a", "exists": True, "result": ">"}]}, 400),
        ({"success": [{"op": "put", "key": "", "value": ""}]}, 400),
        ({"success": [{"op": "delete", "key": f"bad/{i}"} for i in range(9)]}, 400),  # 9 ops > 8
        ({"success": [{"op": "put", "key": "bad/a", "value": _b64("v" * 3000)},
                      {"op": "put", "key": "bad/b", "value": _b64("v" * 3000)}]}, 413),  # > 4096 bytes
        (b"{" + b" " * 100_000 + b"}", 413),  # a body no transaction within the limit needs
    ],
)
def test_bad_transactions_are_refused_with_nothing_written(
    proxy: RunningProxy, chain: ChainDouble, body: object, status: int
) -> None:
    seq, attempts = chain.state.seq, len(chain.state.write_attempts)
    response = _txn(proxy, body)
    assert response.status_code == status, response.text
    assert set(response.json()) >= {"error", "message"}
    assert (chain.state.seq, len(chain.state.write_attempts)) == (seq, attempts)


# ---- watches ----


def _sse(proxy: RunningProxy, params: dict[str, str], headers: dict[str, str] | None = None,
         count: int = 1, timeout: float = 5.0) -> list[dict[str, object]]:
    """The first `count` events of a watch (each with its `id`), then the stream is closed."""
    events: list[dict[str, object]] = []
    with httpx.stream("GET", f"{proxy.url}/v1/watch", params=params, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, object] = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("data: "):
                current.update(json.loads(line[6:]))
            elif line == "" and "type" in current:
                events.append(current)
                current = {}
                if len(events) == count:
                    break
            elif line == "":
                current = {}
    return events


def test_a_watch_streams_committed_changes_and_a_transaction_together(proxy: RunningProxy, kc: Client) -> None:
    start = kc.put("watch1/a", "1")
    kc.delete("watch1/a")
    kc.put("elsewhere", "not watched")
    kc.txn(success=[{"op": "put", "key": "watch1/b", "value": "b"}, {"op": "put", "key": "watch1/c", "value": "c"}])
    events = _sse(proxy, {"prefix": "watch1/", "from_version": str(start), "encoding": "utf8"}, count=4)
    assert [(e["type"], e["key"], e["value"]) for e in events] == [
        ("put", "watch1/a", "1"), ("delete", "watch1/a", None), ("put", "watch1/b", "b"), ("put", "watch1/c", "c"),
    ]
    assert events[0]["version"] == start and events[0]["id"] == start
    assert events[2]["version"] == events[3]["version"] > events[1]["version"]
    resumed = _sse(proxy, {"prefix": "watch1/", "from_version": "1"}, {"Last-Event-ID": str(events[1]["id"])}, 2)
    assert [e["key"] for e in resumed] == ["watch1/b", "watch1/c"]  # exactly after the last one seen


def test_a_watch_from_now_sends_heartbeats_then_the_next_change(proxy: RunningProxy, kc: Client) -> None:
    lines: list[str] = []
    with httpx.stream("GET", f"{proxy.url}/v1/watch", params={"prefix": "beat/"}, timeout=5) as response:
        for line in response.iter_lines():
            lines.append(line)
            if line == ": heartbeat":
                kc.put("beat/x", "1")
            if line.startswith("data: "):
                break
    assert ": heartbeat" in lines
    assert json.loads(lines[-1][6:])["key"] == "beat/x"


def test_a_watch_resumes_on_another_member_without_gap_or_duplicate(
    proxy: RunningProxy, chain: ChainDouble, kc: Client
) -> None:
    first = kc.put("failover/0", "0")
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        with Client(proxy.url) as watcher:
            for event in watcher.watch("failover/", from_version=first):
                seen.append(event.version)
                if len(seen) == 20:
                    done.set()
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    written = [first]
    for i in range(1, 20):
        written.append(kc.put(f"failover/{i}", str(i)))
        if i % 5 == 0:
            chain.cut_watches()  # the serving member fails: the proxy resumes elsewhere
    assert done.wait(10)
    assert seen == written
    assert sum(chain.state.watches.values()) >= 4  # it did move


def test_open_watches_are_spread_over_the_members(proxy: RunningProxy, chain: ChainDouble, kc: Client) -> None:
    before = dict(chain.state.watches)
    with contextlib.ExitStack() as streams:
        for _ in range(3):
            response = streams.enter_context(httpx.stream("GET", f"{proxy.url}/v1/watch", params={"prefix": "spread/"}))
            next(response.iter_lines())  # the stream is open
        opened = {m: chain.state.watches[m] - before.get(m, 0) for m in ("node-1", "node-2", "node-3")}
    assert opened == {"node-1": 1, "node-2": 1, "node-3": 1}


def test_a_compacted_from_version_is_refused(proxy: RunningProxy, chain: ChainDouble, kc: Client) -> None:
    kc.put("gone/a", "1")
    with chain.lock:
        chain.state.compact_version = chain.state.seq
    try:
        response = httpx.get(f"{proxy.url}/v1/watch", params={"prefix": "gone/", "from_version": "1"})
        assert response.status_code == 410
        assert response.json() == {"error": "compacted", "message": response.json()["message"],
                                   "compact_version": chain.state.compact_version}
        with pytest.raises(Compacted):
            next(Client(proxy.url).watch("gone/", from_version=1))
    finally:
        with chain.lock:
            chain.state.compact_version = 0


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"prefix": "a", "from_version": "x"}, {}), ({"start": "b", "end": "a"}, {}),
     ({"prefix": "a"}, {"Last-Event-ID": "-1"}), ({"prefix": "a", "limit": "3"}, {})],
)
def test_bad_watch_parameters_are_refused(proxy: RunningProxy, params: dict[str, str], headers: dict[str, str]) -> None:
    response = httpx.get(f"{proxy.url}/v1/watch", params=params, headers=headers)
    assert response.status_code == 400, response.text


# ---- gRPC and the async client ----


def test_grpc_range_txn_and_watch(proxy: RunningProxy, kc: Client) -> None:
    with grpc.insecure_channel(proxy.grpc_address) as channel:
        stub = kv_pb2_grpc.KVStub(channel)
        txn = chain_pb2.Txn(
            compare=[chain_pb2.Compare(key=b"rpc/a", exists=False)],
            success=[chain_pb2.TxnOp(kind=chain_pb2.TxnOpKind.TXN_PUT, key=b"rpc/a", value=b"1"),
                     chain_pb2.TxnOp(kind=chain_pb2.TxnOpKind.TXN_PUT, key=b"rpc/b", value=b"2")],
        )
        reply = stub.Txn(kv_pb2.TxnRequest(txn=txn), timeout=5)
        assert reply.succeeded and reply.error.code == chain_pb2.Code.OK
        page = stub.Range(kv_pb2.RangeRequest(prefix=b"rpc/", limit=1), timeout=5)
        assert [i.key for i in page.items] == [b"rpc/a"] and page.next
        rest = stub.Range(kv_pb2.RangeRequest(prefix=b"rpc/", next=page.next), timeout=5)
        assert [(i.key, i.version) for i in rest.items] == [(b"rpc/b", reply.version)] and not rest.next
        bad = stub.Range(kv_pb2.RangeRequest(start=b"b", end=b"a"), timeout=5)
        assert bad.error.code == chain_pb2.Code.INVALID_ARGUMENT
        too_many = stub.Txn(kv_pb2.TxnRequest(txn=chain_pb2.Txn(success=[txn.success[0]] * 9)), timeout=5)
        assert too_many.error.code == chain_pb2.Code.INVALID_ARGUMENT
        stream = stub.Watch(kv_pb2.WatchRequest(prefix=b"rpc/", after_version=reply.version - 1), timeout=5)
        batches = []
        for message in stream:
            if message.events:
                batches.append(message)
                break
        stream.cancel()
        assert [e.key for e in batches[0].events] == [b"rpc/a", b"rpc/b"]
        assert batches[0].version == reply.version


async def test_the_async_client_lists_transacts_and_watches(proxy: RunningProxy) -> None:
    async with AsyncClient(proxy.url) as client:
        result = await client.txn(success=[{"op": "put", "key": "async/a", "value": b"\x00\xff"}])
        assert [(i.key, i.value) async for i in client.list("async/")] == [("async/a", b"\x00\xff")]
        events = client.watch("async/", from_version=result.version)
        event = await anext(events)
        await events.aclose()
        assert (event.type, event.key, event.value, event.version) == ("put", "async/a", b"\x00\xff", result.version)
        with pytest.raises(InvalidRequest):
            await client.range("b", "a")
