"""The core's contract with its shell: persist before send, one Ready at a time, bad input refused."""

import random

import pytest
from keychain.coordinator.log import Entry, EntryType, HardState, MemoryStorage
from keychain.coordinator.membership import ConfChange, ConfChangeError, ConfChangeOp
from keychain.coordinator.raft import ProposalDropped, RaftConfig, RaftCore, RaftError, Role


def single_member() -> tuple[RaftCore, MemoryStorage]:
    storage = MemoryStorage()
    core = RaftCore(RaftConfig("n1"), storage, random.Random(1), peers=["n1"])
    return core, storage


def drive(core: RaftCore, storage: MemoryStorage) -> list[Entry]:
    applied: list[Entry] = []
    while core.has_ready():
        rd = core.ready()
        rd.persist(storage)
        applied += rd.committed_entries
        core.advance(rd)
    return applied


def test_advancing_a_ready_that_was_not_persisted_is_refused():
    core, _ = single_member()
    rd = core.ready()
    assert rd.hard_state == HardState(term=1, vote="", commit=1) and rd.entries
    with pytest.raises(RaftError, match="not persisted"):
        core.advance(rd)


def test_only_one_ready_is_outstanding_at_a_time():
    core, storage = single_member()
    rd = core.ready()
    with pytest.raises(RaftError, match="not been advanced"):
        core.ready()
    rd.persist(storage)
    core.advance(rd)
    with pytest.raises(RaftError, match="most recently returned"):
        core.advance(rd)


def test_a_leader_counts_its_own_entry_only_once_it_is_persisted():
    core, storage = single_member()
    drive(core, storage)
    core.campaign()
    drive(core, storage)
    assert core.role is Role.LEADER
    core.propose(b"x")
    rd = core.ready()
    assert [e.data for e in rd.entries] == [b"x"] and not rd.committed_entries
    assert core.log.committed < rd.entries[-1].index  # not committed while only in memory
    rd.persist(storage)
    core.advance(rd)
    assert [e.data for e in drive(core, storage)] == [b"x"]


def test_a_stored_commit_index_beyond_the_stored_log_is_reported():
    storage = MemoryStorage()
    storage.append([Entry(1, 1, EntryType.NOOP)])
    storage.set_hard_state(HardState(term=1, vote="n1", commit=5))
    with pytest.raises(RaftError, match="commit index 5 lies outside the stored log"):
        RaftCore(RaftConfig("n1"), storage, random.Random(1))


def test_bad_configuration_and_bootstrap_are_refused():
    with pytest.raises(RaftError, match="election_tick"):
        RaftCore(RaftConfig("n1", election_tick=1, heartbeat_tick=1), MemoryStorage(), random.Random(1))
    with pytest.raises(RaftError, match="do not include this member"):
        RaftCore(RaftConfig("n1"), MemoryStorage(), random.Random(1), peers=["n2", "n3"])


def test_requests_without_a_leader_fail_retryably_and_bad_changes_are_refused():
    storage = MemoryStorage()
    core = RaftCore(RaftConfig("n1"), storage, random.Random(1), peers=["n1", "n2", "n3"])
    for request in (lambda: core.propose(b"x"), lambda: core.read_index(b"r"), lambda: core.transfer_leadership("n2")):
        with pytest.raises(ProposalDropped, match="no leader"):
            request()
    with pytest.raises(RaftError, match="context"):
        core.read_index(b"")
    with pytest.raises(ConfChangeError, match="bootstrap"):
        core.propose_conf_change(ConfChange(ConfChangeOp.BOOTSTRAP, voters=("n9",)))
    with pytest.raises(ConfChangeError, match="malformed"):
        ConfChange.decode(b"{not json")


def test_a_member_restarted_over_its_storage_resumes_its_log_and_membership():
    core, storage = single_member()
    drive(core, storage)
    core.campaign()
    drive(core, storage)
    core.propose(b"a")
    drive(core, storage)
    again = RaftCore(RaftConfig("n1"), storage, random.Random(2), peers=["n1"])
    assert (again.term, again.vote, again.log.committed) == (core.term, "n1", core.log.committed)
    assert again.status().voters == ("n1",)
    replayed = drive(again, storage)  # the state machine is rebuilt from the log
    assert [e.data for e in replayed if e.type is EntryType.NORMAL] == [b"a"]
