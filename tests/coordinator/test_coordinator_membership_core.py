"""The pieces of coordinator membership below the shell: the Raft core's removal path, the address
book (a pure function of the applied membership changes), and its snapshot envelope."""

from __future__ import annotations

import random

import pytest
from keychain.coordinator.address_book import (
    AddressBook,
    AddressBookError,
    pack_snapshot,
    unpack_snapshot,
)
from keychain.coordinator.log import MemoryStorage
from keychain.coordinator.membership import ConfChange, ConfChangeError, ConfChangeOp, Membership
from keychain.coordinator.raft import ChangePending, RaftConfig, RaftCore, Role
from raft_harness import RaftNetwork


def test_the_removed_members_own_acknowledgement_may_commit_its_removal():
    net = RaftNetwork()
    for m in ("n1", "n2", "n3"):
        net.add(m, ["n1", "n2", "n3"], {}, seed=1)
    net.members["n1"].core.campaign()
    net.stabilize()
    leader = net.members["n1"].core
    assert leader.role is Role.LEADER
    leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE, "n3"))
    net.handle_ready("n1")
    net.deliver(sender="n1")
    net.handle_ready("n3")  # n3 answers first: its acknowledgement completes the quorum
    net.deliver(sender="n3")  # raised KeyError inside the core before the fix
    net.stabilize()
    assert leader.status().voters == ("n1", "n2")
    leader.propose(b"after")
    net.stabilize()
    assert net.members["n2"].applied[-1:] == ["after"]


def test_a_second_change_is_refused_as_pending_until_the_first_commits():
    storage = MemoryStorage()
    core = RaftCore(RaftConfig(id="n1"), storage, random.Random(1), peers=["n1"])
    core.campaign()
    rd = core.ready()
    rd.persist(storage)
    core.advance(rd)
    core.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n2", "h:2"))
    with pytest.raises(ChangePending):
        core.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n3", "h:3"))


def test_bootstrap_given_addresses_writes_them_into_the_log():
    core = RaftCore(RaftConfig(id="a"), MemoryStorage(), random.Random(1), peers={"a": "h:1", "b": "h:2"})
    (entry,) = core.ready().entries
    change = ConfChange.decode(entry.data)
    assert change.voters == ("a", "b") and dict(change.addresses) == {"a": "h:1", "b": "h:2"}


def test_the_book_follows_the_membership_changes_and_skips_what_the_core_skips():
    book = AddressBook()
    assert book.apply(ConfChange(ConfChangeOp.BOOTSTRAP, voters=("a", "b"), addresses=(("a", "h:1"), ("b", "h:2"))))
    assert book.apply(ConfChange(ConfChangeOp.ADD_LEARNER, "c", "h:3"))
    assert book.membership == Membership.of({"a", "b"}, {"c"})
    assert not book.apply(ConfChange(ConfChangeOp.ADD_LEARNER, "c", "h:9"))  # already a member: skipped
    assert book.address("c") == "h:3"
    assert book.apply(ConfChange(ConfChangeOp.PROMOTE, "c"))
    assert book.apply(ConfChange(ConfChangeOp.REMOVE, "a"))
    assert book.addresses() == {"b": "h:2", "c": "h:3"}
    assert book.membership == Membership.of({"b", "c"})


def test_the_snapshot_envelope_round_trips_and_reads_bare_data_as_an_empty_book():
    data = pack_snapshot(b'{"chains": {}}', {"b": "h:2", "a": "h:1"})
    assert unpack_snapshot(data) == (b'{"chains": {}}', {"a": "h:1", "b": "h:2"})
    assert unpack_snapshot(b'{"chains": {}}') == (b'{"chains": {}}', {})
    with pytest.raises(AddressBookError):
        unpack_snapshot(data[:12])
    with pytest.raises(AddressBookError):
        unpack_snapshot(pack_snapshot(b"", {})[:-2] + b"[]")


def test_a_malformed_bootstrap_is_refused():
    with pytest.raises(ConfChangeError):
        ConfChange.decode(b'{"op":"bootstrap","voters":["a"],"addresses":{"z":"h:1"}}')
    with pytest.raises(ConfChangeError):
        ConfChange.decode(b'{"op":"bootstrap","voters":["a"],"addresses":["a"]}')
