"""The proxy's view of a gray failure: a node that leaves the proxy's requests unanswered for longer
than PROXY_SILENCE, and then its status probe for PROXY_PROBE_TIMEOUT (a member it cannot reach,
a process that answers nothing), is reported to the coordinator, again while that lasts. A node
that answers, or whose writes wait but which answers its probe (a head waiting on the chain), is
not."""

from __future__ import annotations

import time

import httpx
from keychain.proxy.reachability import NodeReachability, Silent
from proxy_double import ChainDouble
from proxy_harness import running_proxy

from keychain import timing

BOUND, EVERY = 1.0, 0.25


def _probed(r: NodeReachability, address: str, at: float, *, answered: bool) -> None:
    probe = r.probe_sent(address, at)
    (r.answered if answered else r.failed)(address, probe)


def test_a_node_that_never_answers_is_silent_from_the_first_request_sent_to_it():
    r = NodeReachability()
    first = r.sent("a", 10.0)
    r.sent("a", 10.4)
    r.failed("a", first)  # a deadline: the second request is still out
    assert r.silent_since("a") == 10.0
    assert r.to_probe(10.9, BOUND) == [] and r.due(10.9, BOUND, EVERY) == []
    assert r.next_due(BOUND, EVERY) == 11.0
    assert r.to_probe(11.2, BOUND) == ["a"]
    assert r.due(11.2, BOUND, EVERY) == []  # silent, but not reported before its probe went unanswered
    _probed(r, "a", 11.2, answered=False)
    assert r.due(11.7, BOUND, EVERY) == []  # one missed probe may be a loaded machine's
    assert r.to_probe(11.7, BOUND) == ["a"]
    _probed(r, "a", 11.7, answered=False)
    assert r.to_probe(12.2, BOUND) == []  # two in a row are enough
    assert r.due(12.2, BOUND, EVERY) == [Silent("a", 10.0, 12.2 - 10.0)]


def test_a_node_that_answers_its_second_probe_is_not_reported():
    r = NodeReachability()
    r.sent("head", 0.0)
    _probed(r, "head", 1.1, answered=False)  # slow to answer on a loaded machine
    _probed(r, "head", 1.6, answered=True)
    assert r.due(2.0, BOUND, EVERY) == [] and r.silent_since("head") is None


def test_a_node_whose_writes_wait_but_which_answers_its_probe_is_not_reported():
    r = NodeReachability()
    r.sent("head", 0.0)  # a write waiting on the chain below the head
    assert r.to_probe(1.1, BOUND) == ["head"]
    probe = r.probe_sent("head", 1.1)
    assert r.to_probe(1.2, BOUND) == [] and r.next_due(BOUND, EVERY) is None  # the probe is out
    r.answered("head", probe)
    assert r.silent_since("head") is None and r.due(5.0, BOUND, EVERY) == []
    r.sent("head", 1.5)  # still waiting: the next probe is due a bound later, not before
    assert r.next_due(BOUND, EVERY) == 2.5
    assert r.to_probe(2.4, BOUND) == [] and r.to_probe(2.6, BOUND) == ["head"]


def test_a_probe_overtaken_by_a_reply_says_nothing_when_it_fails_late():
    r = NodeReachability()
    r.sent("a", 0.0)
    probe = r.probe_sent("a", 1.1)
    r.answered("a", r.sent("a", 1.2))  # a reply to a later request: reachable
    r.failed("a", probe)
    r.sent("a", 2.0)
    assert r.due(3.5, BOUND, EVERY) == [] and r.to_probe(3.5, BOUND) == ["a"]


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
    for at in (1.1, 1.2):
        _probed(r, "a", at, answered=False)
        _probed(r, "b", at, answered=False)
    assert [s.address for s in r.due(1.5, BOUND, EVERY)] == ["a", "b"]
    assert r.due(1.6, BOUND, EVERY) == []  # reported 0.1 s ago
    assert [s.address for s in r.due(1.8, BOUND, EVERY)] == ["a", "b"]
    assert r.next_due(BOUND, EVERY) == 1.8 + EVERY
    r.retain({"a"})  # b left the chain
    assert [s.address for s in r.due(2.1, BOUND, EVERY)] == ["a"]


def test_a_head_that_answers_nothing_is_reported_to_the_coordinator(chain: ChainDouble):
    chain.state.sticky_fault = "hang"  # every Write outlasts the proxy's attempt timeout
    chain.state.status_hangs = True  # and so does the probe
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
    assert report.unreachable_ms >= (timing.PROXY_SILENCE + 2 * timing.PROXY_PROBE_TIMEOUT) * 1000
    assert report.reporter.startswith("proxy-")
    assert {r.node_id for r in chain.state.unreachable_reports} == {"node-1"}


def test_a_head_whose_writes_wait_but_which_answers_its_probe_is_not_reported(chain: ChainDouble):
    chain.state.sticky_fault = "hang"  # writes wait, as on a reconfiguration below the head
    chain.state.hang_seconds = 0.6
    with running_proxy(chain, request_timeout=2.5, attempt_timeout=0.5) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/k", content=b"v", timeout=10)
        assert response.status_code in (503, 504)
        time.sleep(timing.PROXY_PROBE_TIMEOUT + 2 * timing.PROXY_REPORT_EVERY)
        chain.state.sticky_fault = None
        metrics = httpx.get(f"{proxy.url}/metrics").text
    assert chain.state.unreachable_reports == []
    assert 'keychain_proxy_silence_probes_total{outcome="answered"}' in metrics


def test_nodes_that_answer_are_not_reported(chain: ChainDouble):
    with running_proxy(chain) as proxy:
        for i in range(20):
            assert httpx.put(f"{proxy.url}/v1/kv/k{i}", content=b"v").status_code == 200
            assert httpx.get(f"{proxy.url}/v1/kv/k{i}").status_code == 200
        time.sleep(timing.PROXY_SILENCE + 2 * timing.PROXY_REPORT_EVERY)
    assert chain.state.unreachable_reports == []
