"""The proxy under chain faults: stale epochs, lost replies, unknown outcomes, no topology, load."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import socket
import time

import grpc
import httpx
import pytest
from keychain.proxy.validation import scoped_request_id
from proxy_double import ChainDouble
from proxy_harness import running_proxy, wait_until_ready

from keychain.proto import chain_pb2


def test_wrong_epoch_refreshes_the_topology_and_retries_with_the_same_request_id(chain: ChainDouble):
    with running_proxy(chain) as proxy:
        chain.inject("bump_epoch")
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert response.status_code == 200, response.text
    first, retry = chain.state.write_attempts
    assert first == retry, "the retry carries the same request id"
    assert chain.state.epoch == 2
    assert chain.state.applied[first[0]] == 1 and chain.state.seq == 1


def test_a_lost_reply_is_retried_and_the_chain_deduplicates_it(chain: ChainDouble):
    with running_proxy(chain) as proxy:
        chain.inject("drop_reply")
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1, "the original outcome, not a second write"
    [rid] = chain.state.write_attempts[0]
    assert chain.state.applied[rid] == 1
    assert len(chain.state.write_attempts) == 2


def test_a_write_whose_outcome_cannot_be_learned_is_reported_distinctly(chain: ChainDouble):
    chain.state.sticky_fault = "outcome_unknown"
    with running_proxy(chain, request_timeout=0.4) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v", headers={"Idempotency-Key": "w-1"})
        assert response.status_code == 504
        assert response.json()["error"] == "outcome_unknown"
        assert "w-1" in response.json()["message"]
        assert len(chain.state.write_attempts) >= 2, "retried before giving up"
        assert all(ids == [scoped_request_id("w-1", b"k")] for ids in chain.state.write_attempts)
        chain.state.sticky_fault = None
        settled = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v", headers={"Idempotency-Key": "w-1"})
        assert settled.status_code == 200, "retrying with the same key learns the outcome"


def test_the_idempotency_key_the_proxy_made_for_an_unknown_outcome_settles_it(chain: ChainDouble):
    chain.state.sticky_fault = "outcome_unknown"
    with running_proxy(chain, request_timeout=0.4) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert response.status_code == 504
        [named] = re.findall(r"Idempotency-Key \(([^)]+)\)", response.json()["message"])
        chain.state.sticky_fault = None
        settled = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v", headers={"Idempotency-Key": named})
        assert settled.status_code == 200
    assert len(set(map(tuple, chain.state.write_attempts))) == 1, "the retry is the same request"


def test_a_head_that_does_not_answer_in_time_leaves_the_outcome_unknown(chain: ChainDouble):
    chain.state.sticky_fault = "hang"
    chain.state.hang_seconds = 0.3
    with running_proxy(chain, request_timeout=0.5, attempt_timeout=0.1) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert response.status_code == 504 and response.json()["error"] == "outcome_unknown"
        chain.state.sticky_fault = None


def test_refusals_until_the_deadline_are_unavailable_with_retry_after(chain: ChainDouble):
    chain.state.sticky_fault = "not_head"  # e.g. a head stepping down while no successor leads yet
    # A deadline of several attempts: one that falls while an attempt is in flight (a loaded machine
    # answering slowly) rightly answers 504, as that attempt may still apply.
    with running_proxy(chain, request_timeout=1.0) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
        assert int(response.headers["retry-after"]) >= 1
    assert len(chain.state.write_attempts) >= 2, "refusals are retried until the deadline"
    assert chain.state.seq == 0


@pytest.mark.parametrize(
    ("status", "message", "answer"),
    [
        # no handler ran at the head, though the words speak of a connection lost mid-call
        (grpc.StatusCode.UNIMPLEMENTED, "connection reset by peer after the request was sent", (503, "unavailable")),
        # the call reached the head and got no answer, though the words speak of a connection never made
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; connection refused", (504, "outcome_unknown")),
    ],
)
def test_whether_a_failed_write_may_have_applied_follows_the_status_code_not_its_wording(
    chain: ChainDouble, status: grpc.StatusCode, message: str, answer: tuple[int, str]
):
    chain.state.write_abort = (status, message)
    with running_proxy(chain, request_timeout=0.4) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert (response.status_code, response.json()["error"]) == answer, response.text
    assert len(chain.state.write_attempts) >= 2, "retried until the deadline"


def test_a_head_nobody_listens_at_is_never_sent_the_write_and_the_answer_is_unavailable(chain: ChainDouble):
    with socket.socket() as probe:  # a port with no listener: the head went away with its process
        probe.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{probe.getsockname()[1]}"
    with running_proxy(chain, request_timeout=0.4) as proxy:
        chain.reconfigure([chain_pb2.Member(id="gone", address=gone), *chain.state.members])
        wait_until("the proxy to learn the gone head", lambda: proxy.server.watcher.topology.head.id == "gone")
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert (response.status_code, response.json()["error"]) == (503, "unavailable"), response.text
    assert chain.state.write_attempts == [] and chain.state.seq == 0


def test_a_head_that_never_completes_the_connection_is_never_sent_the_write(chain: ChainDouble):
    """A frozen head: its kernel accepts the connection, nothing answers on it. The connection never
    completes, so the write never left the proxy: unavailable, not outcome unknown."""
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(8)
        with running_proxy(chain, request_timeout=0.4, attempt_timeout=0.3) as proxy:
            head = chain_pb2.Member(id="frozen", address=f"127.0.0.1:{frozen.getsockname()[1]}")
            chain.reconfigure([head, *chain.state.members])
            wait_until("the proxy to learn the frozen head", lambda: proxy.server.watcher.topology.head.id == "frozen")
            response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
            assert (response.status_code, response.json()["error"]) == (503, "unavailable"), response.text
    assert chain.state.seq == 0


def test_a_write_whose_deadline_passes_while_the_connection_is_made_is_never_sent(chain: ChainDouble):
    with running_proxy(chain, request_timeout=0.3, attempt_timeout=1.0) as proxy:
        channels = proxy.server.gateway.channels
        connect = channels.connected

        async def slow_connection(address: str, timeout: float) -> bool:
            await asyncio.sleep(0.6)  # the head is reached only after the write's deadline
            return await connect(address, timeout)

        channels.connected = slow_connection
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        assert (response.status_code, response.json()["error"]) == (503, "unavailable"), response.text
        time.sleep(0.6)  # past the moment the connection is made
    assert chain.state.write_attempts == [], "told unavailable, so it must never reach the head"
    assert chain.state.seq == 0


def test_without_a_topology_requests_get_503_and_the_proxy_is_not_ready():
    with ChainDouble(members=1, publish=False) as chain, running_proxy(chain, wait_ready=False) as proxy:
        for response in (httpx.put(f"{proxy.url}/v1/kv/k", content=b"v"), httpx.get(f"{proxy.url}/v1/kv/k")):
            assert response.status_code == 503 and response.json()["error"] == "unavailable"
            assert response.headers["retry-after"]
        assert httpx.get(f"{proxy.url}/readyz").status_code == 503
        assert httpx.get(f"{proxy.url}/healthz").status_code == 200
        chain.publish()
        wait_until_ready(proxy.url)
        assert httpx.put(f"{proxy.url}/v1/kv/k", content=b"v").status_code == 200


def test_a_new_head_takes_writes_after_reconfiguration(chain: ChainDouble):
    with running_proxy(chain) as proxy:
        assert httpx.put(f"{proxy.url}/v1/kv/a", content=b"1").status_code == 200
        old_head, *rest = chain.state.members
        chain.reconfigure(rest)  # the head left; its successor leads
        response = httpx.put(f"{proxy.url}/v1/kv/b", content=b"2")
        assert response.status_code == 200
        assert httpx.get(f"{proxy.url}/v1/kv/b").content == b"2"
    assert chain.state.reads[old_head.id] == 0


def test_a_write_waiting_on_a_head_that_was_removed_is_retried_at_the_new_head(chain: ChainDouble):
    chain.inject("hang")  # the head is paused: it takes the write and answers nothing
    chain.state.hang_seconds = 60.0
    with (
        running_proxy(chain, request_timeout=60.0, attempt_timeout=60.0) as proxy,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(httpx.put, f"{proxy.url}/v1/kv/k", content=b"v", timeout=60.0)
        wait_until("the write to reach the head", lambda: len(chain.state.write_attempts) == 1)
        chain.reconfigure(chain.state.members[1:])  # the coordinator removed the paused head
        try:
            # Within the attempt timeout, and before the connection to the paused head is dropped
            # (the stand-in's server refuses the channel's keepalive pings after about 5 s).
            response = pending.result(timeout=2.5)
        finally:
            chain.unhang.set()
        assert response.status_code == 200, response.text
        assert proxy.server.metrics.retries.labels("write", "head_changed")._value.get() == 1
    first, retry = chain.state.write_attempts
    assert first == retry, "the retry carries the same request id"
    assert chain.state.applied[first[0]] == 1


def test_a_read_waiting_on_a_member_that_was_removed_is_retried_at_another(chain: ChainDouble):
    chain.state.hang_seconds = 60.0
    with (
        running_proxy(chain, request_timeout=60.0, attempt_timeout=60.0) as proxy,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        assert httpx.put(f"{proxy.url}/v1/kv/k", content=b"v").status_code == 200
        chain.state.read_faults = {m.id: "hang" for m in chain.state.members}  # the first read hangs
        pending = pool.submit(httpx.get, f"{proxy.url}/v1/kv/k", timeout=60.0)
        wait_until("the read to reach a member", lambda: chain.state.read_batches)
        paused = chain.state.read_batches[-1][0]
        chain.state.read_faults = {}
        chain.reconfigure([m for m in chain.state.members if m.id != paused])
        try:
            response = pending.result(timeout=2.5)  # within the attempt timeout (see the write's case)
        finally:
            chain.unhang.set()
        assert response.status_code == 200 and response.content == b"v"
        assert proxy.server.metrics.retries.labels("read", "member_left")._value.get() == 1


def test_concurrent_writes_are_coalesced_into_few_write_requests(chain: ChainDouble):
    chain.inject("hang")  # the first batch is slow, so the others pile up behind it
    chain.state.hang_seconds = 0.2
    limits = httpx.Limits(max_connections=64)
    with (
        running_proxy(chain) as proxy,
        httpx.Client(base_url=proxy.url, limits=limits) as http,
        concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool,
    ):
        statuses = list(pool.map(lambda i: http.put(f"/v1/kv/k{i}", content=b"v").status_code, range(40)))
    assert statuses == [200] * 40
    batches = chain.state.write_attempts
    assert sum(len(b) for b in batches) == 40, "every write sent exactly once"
    assert len(batches) < 20 and max(len(b) for b in batches) > 5, [len(b) for b in batches]
    assert chain.state.seq == 40


def test_a_silent_watch_stream_is_covered_by_polling_the_coordinator(chain: ChainDouble):
    chain.silent_watch = True
    with running_proxy(chain, topology_poll_interval=0.1) as proxy:
        chain.reconfigure(chain.state.members[1:])
        deadline = time.monotonic() + 5
        while proxy.server.watcher.topology.epoch != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.server.watcher.topology.head.id == "node-2"


def wait_until(what: str, condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("op", ["read", "write"])
def test_a_busy_outbox_of_a_removed_member_is_dropped_once_it_drains(chain: ChainDouble, op: str):
    chain.state.hang_seconds = 0.6
    with running_proxy(chain) as proxy, concurrent.futures.ThreadPoolExecutor(1) as pool:
        gateway = proxy.server.gateway
        httpx.put(f"{proxy.url}/v1/kv/k", content=b"v")
        if op == "read":
            chain.state.read_faults = {m.id: "hang" for m in chain.state.members}
            pending = pool.submit(httpx.get, f"{proxy.url}/v1/kv/k")
            wait_until("the read to reach a member", lambda: chain.state.read_batches)
            busy = chain.state.read_batches[-1][0]
            chain.state.read_faults = {}  # the other members answer the retry at once
        else:
            chain.inject("hang")
            pending = pool.submit(httpx.put, f"{proxy.url}/v1/kv/k", content=b"w")
            wait_until("the write to reach the head", lambda: len(chain.state.write_attempts) == 2)
            busy = "node-1"
        address = chain.member(busy).address
        chain.reconfigure([m for m in chain.state.members if m.id != busy])
        wait_until("the proxy to learn epoch 2", lambda: gateway.topology.epoch == 2)
        assert address in gateway.outbox_addresses, "busy at the topology change: kept until it drains"
        assert pending.result(timeout=10).status_code == 200
        wait_until("the drained outbox to go", lambda: address not in gateway.outbox_addresses)
        wait_until("its channel to close", lambda: address not in gateway.channels.addresses)
