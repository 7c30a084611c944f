"""Link health, as a node reports it with each heartbeat: pure cores driven by the node driver over
the hand-wired chain, with the time advanced by hand and some links cut one way."""

from __future__ import annotations

from chain_harness import Chain, config_of
from keychain.node.link_health import LinkHealth, LinkReport, LinkSample
from keychain.node.links import LinkState
from keychain.node.messages import Batch, OpKind, WriteOp

from keychain import timing

STEP = 0.05


def running(*nodes: str) -> Chain:
    c = Chain()
    for n in nodes:
        c.add(n)
    c.configure(config_of("c", 1, list(nodes)), list(nodes), lease_until=None)
    c.stabilize()
    return c


def advance(c: Chain, seconds: float, cut: set[tuple[str, str]] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Let `seconds` pass: every node ticks, handles its Readys and gets what was sent to it, except
    on the links in `cut` (lost, one way). Returns the link messages delivered."""
    seen = []
    for _ in range(round(seconds / STEP)):
        c.now += STEP
        for n in sorted(c.nodes):
            c.driver(n).tick()
            while c.core(n).has_ready():
                c.process(n)
        for frm, to in sorted(c.pending()):
            if (frm, to) in cut:
                c.queues[(frm, to)].clear()
                continue
            while c.queues[(frm, to)]:
                seen.extend(c.deliver_one(frm, to))
    return seen


def report(c: Chain, node: str) -> LinkReport:
    return c.driver(node).link_report()


def test_an_idle_chain_keeps_its_links_alive_and_reports_nothing():
    c = running("h", "m", "t")
    seen = advance(c, 2.0)
    keepalives = [line for line in seen if line.startswith("h -> m: batch") and "[]" in line]
    assert len(keepalives) >= 2.0 / (2 * timing.KEEPALIVE_INTERVAL)  # about one per interval
    for n in ("h", "m", "t"):
        assert not report(c, n).failing, (n, report(c, n))
    assert report(c, "m") == LinkReport(epoch=1, successor="t", successor_acked=0, predecessor="h")


def test_a_link_cut_one_way_is_reported_at_both_ends_once_it_lasted_the_bound():
    c = running("h", "m", "t")
    advance(c, 0.2)
    c.write("h", [WriteOp("w1", b"k", OpKind.PUT, b"v")])
    advance(c, timing.LINK_TIMEOUT - 0.1, cut={("h", "m")})
    assert not report(c, "m").predecessor_silent and not report(c, "h").successor_not_acking
    advance(c, 0.2, cut={("h", "m")})
    assert report(c, "m").predecessor_silent and report(c, "m").predecessor == "h"
    assert report(c, "h").successor_not_acking and report(c, "h").successor == "m"
    assert not report(c, "t").failing
    # Healed: the conditions clear with the traffic.
    advance(c, 0.2)
    assert not report(c, "m").failing


def test_a_successor_that_never_welcomes_is_unreachable_across_epochs_until_the_successor_changes():
    c = running("h", "m")
    c.add("t")
    c.configure(config_of("c", 2, ["h", "t"]), ["h", "t"], lease_until=None)
    advance(c, timing.LINK_TIMEOUT + 0.1, cut={("t", "h")})  # the Welcome never comes back
    assert report(c, "h").successor_unreachable and report(c, "h").successor == "t"
    # A new epoch with the same successor: the link is as dead as before, and reported in it.
    c.configure(config_of("c", 3, ["h", "t", "m"]), ["h", "t"], lease_until=None)
    advance(c, STEP, cut={("t", "h")})
    assert report(c, "h").successor_unreachable and report(c, "h").epoch == 3
    # Another successor: timed afresh.
    c.configure(config_of("c", 4, ["h", "m"]), ["h", "m"], lease_until=None)
    advance(c, STEP, cut={("t", "h")})
    assert not report(c, "h").successor_unreachable and report(c, "h").successor == "m"


def test_a_node_whose_sync_does_not_return_reports_itself_stalled():
    c = running("h", "m")
    driver = c.driver("h")
    c.write("h", [WriteOp("w1", b"k", OpKind.PUT, b"v")])
    step = driver.step()
    assert next(step) is not None  # the Ready waits for its sync, which never returns
    c.now += timing.SYNC_STALL / 2
    driver.tick()
    assert not report(c, "h").stalled
    c.now += timing.SYNC_STALL
    assert report(c, "h").stalled
    next(step, None)  # the sync completes
    assert not report(c, "h").stalled


def test_keepalives_are_empty_batches_only_on_an_idle_streaming_link():
    c = running("h", "m")
    advance(c, 0.3)
    c.write("h", [WriteOp("w1", b"k", OpKind.PUT, b"v")])
    c.driver("h").tick()  # an entry goes down the link in this Ready: no keepalive is due with it
    c.process("h")
    sent = [env.body for env in c.queues[("h", "m")]]
    assert [len(b.entries) for b in sent if isinstance(b, Batch)] == [1]


def test_a_node_the_coordinators_stopped_answering_says_so_once_it_lasted_the_bound():
    health = LinkHealth()
    health.observe(0.0, LinkSample(epoch=1, successor=None, downlink=LinkState.IDLE, sent_through=0, acked=0,
                                   predecessor=None, received=0, installing=False, last_seq=0, persisted_seq=0))
    assert not health.report(5.0).coordinator_unheard  # nothing heard yet: no claim at all
    health.coordinator_answered(1.0)
    assert not health.report(1.0 + timing.LINK_TIMEOUT).coordinator_unheard
    assert health.report(1.01 + timing.LINK_TIMEOUT).coordinator_unheard
    assert "coordinator unheard" in health.report(2.0).describe()
    health.coordinator_answered(2.0)  # an answer (a refusal counts too) clears it at once
    assert not health.report(2.0).coordinator_unheard
