"""The proxy's view of a gray failure: a node that leaves the proxy's requests unanswered for longer
than PROXY_SILENCE (a head that takes no writes, a member it cannot reach) is reported to the
coordinator, again while that lasts; a node that answers is not."""

from __future__ import annotations

import time

import httpx
from keychain.proxy.reachability import NodeReachability, Silent
from proxy_double import ChainDouble
from proxy_harness import running_proxy

from keychain import timing

BOUND, EVERY = 1.0, 0.25


def test_a_node_that_never_answers_is_silent_from_the_first_request_sent_to_it():
    r = NodeReachability()
    first = r.sent("a", 10.0)
    r.sent("a", 10.4)
    r.failed("a", first)  # a deadline: the second request is still out
    assert r.silent_since("a") == 10.0
    assert r.due(10.9, BOUND, EVERY) == []
    assert r.next_due(BOUND, EVERY) == 11.0
    assert r.due(11.2, BOUND, EVERY) == [Silent("a", 10.0, 11.2 - 10.0)]


def test_a_reply_of_any_kind_clears_the_slate_and_overtakes_older_requests():
    r = NodeReachability()
    assert r.next_due(BOUND, EVERY) is None
    old = r.sent("a", 10.0)
    r.failed("a", old)
    slow = r.sent("a", 10.5)
    quick = r.sent("a", 10.6)
    r.answered("a", quick)
    assert r.silent_since("a") is None  # the failure and the older request still out count no more
    r.failed("a", slow)  # its late failure neither
    assert r.due(20.0, BOUND, EVERY) == []
    later = r.sent("a", 21.0)
    assert r.silent_since("a") == 21.0
    r.answered("a", later)
    assert r.silent_since("a") is None


def test_a_silent_node_is_reported_again_every_interval_while_it_stays_silent():
    r = NodeReachability()
    r.sent("a", 0.0)
    r.sent("b", 0.0)
    assert [s.address for s in r.due(1.5, BOUND, EVERY)] == ["a", "b"]
    assert r.due(1.6, BOUND, EVERY) == []  # reported 0.1 s ago
    assert [s.address for s in r.due(1.8, BOUND, EVERY)] == ["a", "b"]
    assert r.next_due(BOUND, EVERY) == 1.8 + EVERY
    r.retain({"a"})  # b left the chain
    assert [s.address for s in r.due(2.1, BOUND, EVERY)] == ["a"]


def test_a_head_that_takes_no_writes_is_reported_to_the_coordinator(chain: ChainDouble):
    chain.state.sticky_fault = "hang"  # every Write outlasts the proxy's attempt timeout
    chain.state.hang_seconds = 0.6
    with running_proxy(chain, request_timeout=2.5, attempt_timeout=0.5) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v", timeout=10)
        assert response.status_code in (503, 504)
        deadline = time.monotonic() + 5
        while not chain.state.unreachable_reports and time.monotonic() < deadline:
            time.sleep(0.05)
        chain.state.sticky_fault = None
    report = chain.state.unreachable_reports[0]
    assert report.node_id == "node-1" and report.chain == chain.state.chain and report.epoch == chain.state.epoch
    assert report.unreachable_ms >= timing.PROXY_SILENCE * 1000
    assert report.reporter.startswith("proxy-")
    assert {r.node_id for r in chain.state.unreachable_reports} == {"node-1"}


def test_nodes_that_answer_are_not_reported(chain: ChainDouble):
    with running_proxy(chain) as proxy:
        for i in range(20):
            assert httpx.put(f"{proxy.url}/v1/kv/k{i}", content=b"v").status_code == 200
            assert httpx.get(f"{proxy.url}/v1/kv/k{i}").status_code == 200
        time.sleep(timing.PROXY_SILENCE + 2 * timing.PROXY_REPORT_EVERY)
    assert chain.state.unreachable_reports == []
