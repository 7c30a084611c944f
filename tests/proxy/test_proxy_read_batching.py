"""Reads through the proxy travel in ReadBatch calls: one per member while another is in flight, the
reads picked meanwhile leave together; spreading still reaches every active member, and a member
that fails or refuses a batch only sends its reads elsewhere."""

from __future__ import annotations

import concurrent.futures
from collections import Counter

import httpx
import pytest
from proxy_double import ChainDouble
from proxy_harness import running_proxy

READS = 60


def put_keys(url: str, n: int) -> None:
    for i in range(n):
        assert httpx.put(f"{url}/v1/kv/k{i}", content=b"v%d" % i).status_code == 200


def concurrent_gets(url: str, n: int) -> list[tuple[int, bytes]]:
    limits = httpx.Limits(max_connections=n)
    with (
        httpx.Client(base_url=url, limits=limits) as http,
        concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool,
    ):
        responses = list(pool.map(lambda i: http.get(f"/v1/kv/k{i % 10}"), range(n)))
    return [(r.status_code, r.content) for r in responses]


def expected(n: int) -> list[tuple[int, bytes]]:
    return [(200, b"v%d" % (i % 10)) for i in range(n)]


def test_an_idle_proxy_sends_each_read_at_once_and_rotates_over_every_member(chain: ChainDouble):
    with running_proxy(chain) as proxy:
        put_keys(proxy.url, 1)
        for _ in range(6):
            assert httpx.get(f"{proxy.url}/v1/kv/k0").content == b"v0"
    assert chain.state.read_batches and all(n == 1 for _, n in chain.state.read_batches)
    assert Counter(member for member, _ in chain.state.read_batches) == {"node-1": 2, "node-2": 2, "node-3": 2}


def test_concurrent_reads_are_coalesced_per_member_and_still_reach_every_member(chain: ChainDouble):
    chain.state.hang_seconds = 0.2  # every batch is slow, so reads pile up behind the one in flight
    with running_proxy(chain) as proxy:
        put_keys(proxy.url, 10)
        chain.state.read_faults = {m.id: "hang" for m in chain.state.members}
        assert concurrent_gets(proxy.url, READS) == expected(READS)
    batches = chain.state.read_batches
    assert sum(n for _, n in batches) == READS, "every read sent exactly once"
    assert len(batches) < READS // 3 and max(n for _, n in batches) > 5, batches
    assert set(Counter(member for member, _ in batches)) == {"node-1", "node-2", "node-3"}
    assert sum(chain.state.reads.values()) == READS


@pytest.mark.parametrize("fault", ["unavailable", "lease_expired"])
def test_a_member_that_fails_or_refuses_a_batch_sends_its_reads_to_the_others(chain: ChainDouble, fault: str):
    with running_proxy(chain) as proxy:
        put_keys(proxy.url, 10)
        chain.state.read_faults = {"node-2": fault}
        assert concurrent_gets(proxy.url, 30) == expected(30)
        assert chain.state.reads["node-2"] == 0
        retried = proxy.server.gateway.metrics.retries.labels("read", "transport_unavailable"
                                                              if fault == "unavailable" else "lease_expired")
        assert retried._value.get() >= 1


def test_reads_left_out_of_a_reply_that_stopped_short_are_asked_again(chain: ChainDouble):
    chain.state.hang_seconds = 0.05
    with running_proxy(chain) as proxy:
        put_keys(proxy.url, 10)
        chain.state.read_faults = {m.id: "hang" for m in chain.state.members}
        chain.state.read_faults["node-1"] = "one_per_reply"
        assert concurrent_gets(proxy.url, 30) == expected(30)
        retries = proxy.server.gateway.metrics.retries.collect()[0].samples
        assert not [s for s in retries if s.labels.get("op") == "read" and s.value > 0], "a resend is no failure"
    assert any(member == "node-1" and n > 1 for member, n in chain.state.read_batches), "node-1 got batches"


def test_a_batch_refused_as_malformed_ends_its_reads_as_bad_requests_without_retrying(chain: ChainDouble):
    with running_proxy(chain) as proxy:
        put_keys(proxy.url, 1)
        chain.state.read_faults = {m.id: "invalid_argument" for m in chain.state.members}
        sent = len(chain.state.read_batches)
        answer = httpx.get(f"{proxy.url}/v1/kv/k0")
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
        assert len(chain.state.read_batches) == sent + 1, "another member would refuse it too"
