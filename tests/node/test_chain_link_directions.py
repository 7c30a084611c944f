"""A link stream that breaks says which way it ran: the teardown of our old predecessor's stream
must not reset the link we opened to that same node once it has become our successor."""

from __future__ import annotations

from chain_harness import Chain, config_of
from keychain.node.core import LinkState
from keychain.node.messages import OpKind, WriteOp


def put(key: bytes, value: bytes, rid: str) -> list[WriteOp]:
    return [WriteOp(rid, key, OpKind.PUT, value)]


def test_the_old_upstream_stream_of_a_node_now_downstream_does_not_drop_the_new_link() -> None:
    chain = Chain()
    for nid in ("n1", "n2", "n3"):
        chain.add(nid)
    chain.configure(config_of("c1", 1, ["n1", "n2", "n3"]), ["n1", "n2", "n3"], None)
    chain.write("n1", put(b"a", b"1", "w1"))
    chain.stabilize()

    # n2 leaves the middle and comes back after the tail: n3 now feeds n2.
    chain.configure(config_of("c1", 2, ["n1", "n3"], syncing=["n2"]), ["n1", "n2", "n3"], None)
    chain.stabilize()
    tail = chain.core("n3")
    assert tail.succ == "n2" and tail.link == LinkState.STREAMING

    # The stream n2 opened to n3 back in epoch 1 is torn down only now.
    tail.uplink_lost("n2")
    assert tail.link == LinkState.STREAMING  # our own stream to n2 is untouched

    chain.write("n1", put(b"a", b"2", "w2"))
    chain.stabilize()
    assert chain.core("n2").committed_seq == tail.committed_seq == 2  # the syncing node still catches up


def test_our_own_downstream_stream_breaking_drops_the_link_until_the_retry() -> None:
    chain = Chain()
    for nid in ("n1", "n2"):
        chain.add(nid)
    chain.configure(config_of("c1", 1, ["n1", "n2"]), ["n1", "n2"], None)
    chain.stabilize()
    head = chain.core("n1")
    assert head.link == LinkState.STREAMING

    head.downlink_lost("n2")
    assert head.link == LinkState.IDLE
    head.retry_link()
    chain.write("n1", put(b"a", b"1", "w1"))
    chain.stabilize()
    assert head.link == LinkState.STREAMING and chain.core("n2").committed_seq == 1
