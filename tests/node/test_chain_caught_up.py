"""The core's own record of a syncing node being caught up: reported only once the Ready that
says so is durable, and only for the epoch it was reached in."""

from __future__ import annotations

from chain_harness import Chain, config_of
from keychain.node.messages import OpKind, WriteOp


def test_caught_up_holds_after_its_ready_is_advanced_and_only_in_that_epoch() -> None:
    chain = Chain()
    for nid in ("n1", "n2"):
        chain.add(nid)
    chain.configure(config_of("c1", 1, ["n1"]), ["n1"], None)
    chain.write("n1", [WriteOp("w1", b"a", OpKind.PUT, b"1")])
    chain.stabilize()
    chain.configure(config_of("c1", 2, ["n1"], syncing=["n2"]), ["n1", "n2"], None)

    joiner = chain.core("n2")
    seen: list[tuple[bool, bool]] = []  # (caught_up before, after) each advance of a Ready reporting it
    advance = joiner.advance

    def observed_advance() -> None:
        reported = joiner._inflight is not None and joiner._inflight.caught_up
        before = joiner.caught_up
        advance()
        if reported:
            seen.append((before, joiner.caught_up))

    joiner.advance = observed_advance  # type: ignore[method-assign]
    chain.stabilize()

    assert chain.caught_up == {"n2": 1}
    assert seen == [(False, True)]  # not while its Ready was in flight; at once after
    assert joiner.caught_up

    chain.configure(config_of("c1", 3, ["n1"], syncing=["n2"]), ["n1", "n2"], None)
    assert not joiner.caught_up  # level in epoch 2 says nothing about epoch 3
    chain.stabilize()
    assert joiner.caught_up  # level again, in epoch 3

    chain.configure(config_of("c1", 4, ["n1", "n2"]), ["n1", "n2"], None)
    assert not joiner.caught_up  # active now: nothing left to report
