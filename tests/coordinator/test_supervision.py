"""The supervision core: what the coordinator leader decides about a node, from plain inputs (the
chain's configuration, the request, the time, the leadership evidence), with no clock or network."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from keychain.coordinator import registry
from keychain.coordinator.raft import ProposalDropped
from keychain.coordinator.registry import Registry
from keychain.coordinator.supervision import (
    UNCONFIRMED,
    Grant,
    Heartbeat,
    Proposal,
    QuorumEvidence,
    Refusal,
    Registration,
    Supervisor,
)

LEASE, REMOVAL_AFTER, GRACE, EVIDENCE = 1.0, 1.5, 2.0, 0.3


def supervisor() -> Supervisor:
    s = Supervisor(lease=LEASE, removal_after=REMOVAL_AFTER, new_leader_grace=GRACE, leader_evidence=EVIDENCE,
                   proposal_timeout=1.0)
    s.become_leader(0.0)
    return s


def chain(*active: str, syncing: tuple[str, ...] = ()) -> Registry:
    reg = Registry()
    assert reg.apply(registry.create_chain("c")).ok
    for i, node in enumerate((*active, *syncing)):
        assert reg.apply(registry.register_node("c", node, f"h:{i + 1}")).ok
        if 0 < i < len(active):
            assert reg.apply(registry.promote_node("c", node)).ok
    return reg


def beat(node: str, reg: Registry, **report: bool) -> Heartbeat:
    return Heartbeat("c", node, reg.chains["c"].epoch, **report)


def op(proposal: Grant | Refusal | Proposal) -> list[str]:
    assert isinstance(proposal, Proposal), proposal
    return [json.loads(c)["op"] for c in proposal.commands]


def test_a_lease_is_granted_only_with_fresh_evidence_that_a_quorum_follows_the_leader():
    s, reg = supervisor(), chain("a", "b")
    assert s.heartbeat(beat("a", reg), reg.get("c"), now=10.0, confirmed_at=9.8) == Grant(reg.get("c"), LEASE)
    assert s.heartbeat(beat("a", reg), reg.get("c"), now=10.0, confirmed_at=9.6) is UNCONFIRMED
    assert s.heartbeat(beat("a", reg), reg.get("c"), now=10.0, confirmed_at=None) is UNCONFIRMED
    assert s.register(Registration("c", "z", "h:9"), reg.get("c"), now=10.0, confirmed_at=9.0) is UNCONFIRMED


def test_a_node_not_in_the_chain_is_told_so_with_the_configuration_whatever_the_evidence():
    s, reg = supervisor(), chain("a", "b")
    refusal = s.heartbeat(Heartbeat("c", "gone", 1), reg.get("c"), now=10.0, confirmed_at=None)
    assert isinstance(refusal, Refusal) and refusal.code == "NOT_FOUND" and refusal.config == reg.get("c")
    missing = s.heartbeat(Heartbeat("nope", "a", 1), None, now=10.0, confirmed_at=None)
    assert isinstance(missing, Refusal) and missing.code == "NOT_FOUND" and missing.config is None


def test_registration_creates_a_configured_chain_first_and_the_lease_counts_from_arrival():
    s = supervisor()
    s.auto_chains.add("c")
    reg = Registry()
    req = Registration("c", "a", "h:1")
    decision = s.register(req, None, now=5.0, confirmed_at=4.9)
    assert op(decision) == ["create_chain", "register"]
    outcomes = [reg.apply(c) for c in decision.commands]
    answer = s.registered(req, outcomes[-1], received_at=5.0)
    assert answer == Grant(reg.get("c"), LEASE)
    assert s.lease_valid("c", "a", 6.0) and not s.lease_valid("c", "a", 6.01)
    refused = s.registered(Registration("c", "b", "h:1"), reg.apply(registry.register_node("c", "b", "h:1")), 5.0)
    assert isinstance(refused, Refusal) and refused.code == "ALREADY_EXISTS"


def test_a_caught_up_joiner_is_promoted_once_and_answered_with_the_configuration_after_it():
    s, reg = supervisor(), chain("a", syncing=("j",))
    first = s.heartbeat(beat("j", reg, caught_up=True), reg.get("c"), now=1.0, confirmed_at=1.0)
    assert op(first) == ["promote"]
    # A second report while the promotion is in flight proposes nothing more.
    assert isinstance(s.heartbeat(beat("j", reg, caught_up=True), reg.get("c"), 1.0, 1.0), Grant)
    assert reg.apply(first.commands[0]).ok
    answer = s.promoted(beat("j", reg), reg.get("c"))
    assert answer == Grant(reg.get("c"), LEASE) and [m.id for m in reg.get("c").active] == ["a", "j"]


def test_a_drain_stops_renewing_and_removes_the_node_only_once_its_last_lease_certainly_lapsed():
    s, reg = supervisor(), chain("a", "b", "t")
    for node in ("a", "b", "t"):
        s.heartbeat(beat(node, reg, in_sync=True), reg.get("c"), now=10.0, confirmed_at=10.0)
    assert s.drain("c", "b", reg.get("c")) is None and s.draining("c", "b")
    assert s.heartbeat(beat("b", reg), reg.get("c"), now=10.5, confirmed_at=10.5) == Grant(reg.get("c"), 0.0)
    for now in (10.5, 11.0, 11.5):
        for node in ("a", "t"):
            s.heartbeat(beat(node, reg, in_sync=True), reg.get("c"), now=now, confirmed_at=now)
    assert s.removals(11.5, list(reg.chains.values())) == []  # b's last lease (from 10.0) may still run
    assert Supervisor.removal_progress("c", "b", reg.get("c")) is None
    (removal,) = s.removals(11.51, list(reg.chains.values()))
    assert removal.node == "b"
    reg.apply(removal.command())
    assert Supervisor.removal_progress("c", "b", reg.get("c")) == reg.get("c")


def test_the_last_active_member_cannot_be_drained_and_a_deleted_chain_ends_the_wait():
    s, reg = supervisor(), chain("a", syncing=("j",))
    refusal = s.drain("c", "a", reg.get("c"))
    assert isinstance(refusal, Refusal) and refusal.code == "FAILED_PRECONDITION"
    assert s.drain("c", "x", reg.get("c")).code == "NOT_FOUND"
    assert s.drain("c", "j", reg.get("c")) is None  # a syncing member may go
    assert Supervisor.removal_progress("c", "j", None).code == "NOT_FOUND"
    assert Supervisor.still_draining("j").code == "UNAVAILABLE"


def test_a_silent_member_is_removed_only_while_another_active_member_reported_in_sync_this_epoch():
    s, reg = supervisor(), chain("a", "t")
    s.heartbeat(beat("a", reg, in_sync=True), reg.get("c"), now=2.0, confirmed_at=2.0)
    s.heartbeat(beat("t", reg, in_sync=False), reg.get("c"), now=2.0, confirmed_at=2.0)
    for now in (3.0, 4.0):
        s.heartbeat(beat("t", reg), reg.get("c"), now=now, confirmed_at=now)
    assert s.removals(4.0, list(reg.chains.values())) == []  # a silent, but t never said it holds everything
    s.heartbeat(beat("t", reg, in_sync=True), reg.get("c"), now=4.0, confirmed_at=4.0)
    assert [r.node for r in s.removals(4.0, list(reg.chains.values()))] == ["a"]


def test_a_new_leader_removes_nobody_before_its_grace_and_the_removal_silence():
    s, reg = supervisor(), chain("a", "b", "t")
    s.step_down()
    s.become_leader(100.0)
    for now in (100.0, 102.0, 103.5):
        for node in ("a", "t"):
            s.heartbeat(beat(node, reg, in_sync=True), reg.get("c"), now=now, confirmed_at=now)
    assert s.removals(103.5, list(reg.chains.values())) == []  # b never heard: counted from 100 + grace
    assert [r.node for r in s.removals(103.51, list(reg.chains.values()))] == ["b"]


def test_a_removal_in_flight_withholds_the_lease_and_a_failed_one_renews_again():
    s, reg = supervisor(), chain("a", "b", "t")
    for node in ("a", "b", "t"):
        s.heartbeat(beat(node, reg, in_sync=True), reg.get("c"), now=2.0, confirmed_at=2.0)
    for node in ("a", "t"):
        s.heartbeat(beat(node, reg, in_sync=True), reg.get("c"), now=3.6, confirmed_at=3.6)
    (removal,) = s.removals(3.6, list(reg.chains.values()))
    assert s.heartbeat(beat("b", reg), reg.get("c"), now=3.7, confirmed_at=3.7) == Grant(reg.get("c"), 0.0)
    s.removal_failed(removal)
    assert s.heartbeat(beat("b", reg), reg.get("c"), now=3.8, confirmed_at=3.8) == Grant(reg.get("c"), LEASE)


def test_leader_evidence_must_be_shorter_than_the_new_leader_grace():
    with pytest.raises(ValueError):
        Supervisor(new_leader_grace=1.0, leader_evidence=1.0)


def test_quorum_evidence_dates_from_the_newest_answered_round_and_belongs_to_one_term():
    ev = QuorumEvidence("c1", interval=0.05)
    asked: list[bytes] = []
    ev.begin(0.0, asked.append)
    ev.begin(0.04, asked.append)  # one begun within the interval is in flight
    ev.begin(0.05, asked.append)
    r1, r2 = asked
    assert not ev.answered(b"other") and ev.confirmed_at is None
    assert ev.answered(r2) and ev.confirmed_at == 0.05
    assert not ev.answered(r1)  # answered by r2 already
    ev.reset()
    assert ev.confirmed_at is None and ev.due(1.0)


def test_a_round_the_raft_core_drops_is_not_begun():
    ev = QuorumEvidence("c1", interval=0.05)

    def follower(context: bytes) -> None:
        raise ProposalDropped("not the leader")

    ev.begin(0.0, follower)
    assert ev.rounds == {} and ev.due(0.0)


def test_the_core_loads_without_grpc_protobuf_or_asyncio():
    code = ("import sys, keychain.coordinator.supervision; "
            "print(sorted(m for m in ('grpc', 'google.protobuf', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "PYTHONSAFEPATH": "1"}).stdout
    assert out.strip() == "[]"


def test_storage_alarms_are_kept_from_heartbeats_handed_to_the_chain_and_cleared_when_no_longer_reported():
    s, reg = supervisor(), chain("a", "b", "c")
    state = reg.get("c")
    s.heartbeat(beat("a", reg), state, now=10.0, confirmed_at=9.9)
    s.heartbeat(beat("c", reg, storage_alarm=True), state, now=10.0, confirmed_at=9.9)
    assert s.storage_alarms(state) == ("c",)
    s.heartbeat(beat("b", reg, storage_alarm=True), state, now=10.1, confirmed_at=9.9)
    assert s.storage_alarms(state) == ("b", "c"), "in chain order"
    s.heartbeat(beat("c", reg), state, now=10.2, confirmed_at=9.9)
    assert s.storage_alarms(state) == ("b",), "space is back on c"
    assert s.storage_alarms(chain("a", "c").get("c")) == (), "an alarm leaves with its member"
    s.step_down()
    assert s.storage_alarms(state) == (), "soft state: a new leader hears it again within a heartbeat"


def test_the_chain_clean_point_is_the_lowest_commit_point_its_members_reported():
    s, reg = supervisor(), chain("a", "b", syncing=("c",))
    state = reg.get("c")
    s.heartbeat(Heartbeat("c", "a", state.epoch, committed_seq=40), state, now=10.0, confirmed_at=9.9)
    s.heartbeat(Heartbeat("c", "b", state.epoch, committed_seq=50), state, now=10.0, confirmed_at=9.9)
    assert s.clean_point(state) == 0, "c has not reported: nothing may be collected"
    s.heartbeat(Heartbeat("c", "c", state.epoch, committed_seq=45), state, now=10.0, confirmed_at=9.9)
    assert s.clean_point(state) == 40
    assert s.clean_point(chain("b", "c").get("c")) == 45, "only the chain's members count"
