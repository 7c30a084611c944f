"""The node driver keeps the Ready contract: a Ready's records are applied, then synced when the
Ready requires it, and only then do its messages and replies leave and the core advance."""

from __future__ import annotations

from keychain.node.core import ChainCore, Outbound, TransferStart, VersionQuery
from keychain.node.driver import NodeDriver
from keychain.node.messages import (
    OK,
    Ack,
    Batch,
    ChainConfig,
    Entry,
    EntryKind,
    Hello,
    Member,
    MemberState,
    OpKind,
    ReadReply,
    Welcome,
    WriteOp,
    WriteReply,
)
from keychain.node.versions import AppendEntries, MemoryVersionStore, Record

SOLO = ChainConfig("main", 1, (Member("solo", "", MemberState.ACTIVE),))


class Recorder:
    """Storage and Transport at once: every call the driver makes, in order."""

    def __init__(self) -> None:
        self.store = MemoryVersionStore()
        self.calls: list[str] = []

    def apply(self, records: list[Record]) -> None:
        self.store.apply(records)
        self.calls.append("apply " + " ".join(type(r).__name__ for r in records))

    def sync(self) -> None:
        self.calls.append("sync")

    def send_link(self, message: Outbound) -> None:
        self.calls.append(f"send {type(message.body).__name__}")

    def send_version_query(self, query: VersionQuery) -> None:
        self.calls.append("query")

    def start_transfer(self, start: TransferStart) -> None:
        self.calls.append("transfer")

    def release_reply(self, ticket: int, reply: WriteReply | ReadReply) -> None:
        self.calls.append(f"reply t{ticket} " + ("ok" if reply.error.ok else reply.error.code.name))

    def report_caught_up(self, through: int, epoch: int) -> None:
        self.calls.append(f"caught up {through} e{epoch}")


def solo_head() -> tuple[NodeDriver, Recorder]:
    rec = Recorder()
    driver = NodeDriver(ChainCore("solo", rec.store), rec, rec, lambda: 0.0)
    driver.core.configure(SOLO)
    driver.step_now()
    rec.calls.clear()
    return driver, rec


def put(driver: NodeDriver, ticket: int) -> None:
    assert driver.write(ticket, 1, [WriteOp(f"r{ticket}", b"k", OpKind.PUT, b"v")]) is None


def test_a_ready_that_must_be_synced_releases_nothing_before_its_sync():
    driver, rec = solo_head()
    put(driver, 1)
    step = driver.step()
    rd = next(step)
    assert [type(r) for r in rd.persist] == [AppendEntries]
    assert rec.calls == ["apply AppendEntries"]  # applied, not synced, nothing released
    assert driver.core.committed_seq == 0  # a tail commits only what a finished Ready made durable
    rec.sync()
    assert next(step, None) is None  # resumed: released and advanced, nothing more to sync
    # The advance commits what the sync made durable; the reply leaves at once, the Commit record
    # (which a crash may lose) with the next Ready.
    assert rec.calls == ["apply AppendEntries", "sync", "reply t1 ok"]
    driver.step_now()
    assert rec.calls == ["apply AppendEntries", "sync", "reply t1 ok", "apply Commit"]


def test_a_ready_of_commit_points_alone_is_released_without_a_sync():
    driver, rec = solo_head()
    put(driver, 1)
    driver.step_now()
    rec.calls.clear()
    assert list(driver.step()) == []  # never yields: no sync is due
    assert rec.calls == ["apply Commit"]
    assert driver.core.has_ready() is False


CHAIN = ChainConfig("main", 1, (Member("a", ""), Member("b", ""), Member("c", "")))


def entry(seq: int) -> Entry:
    return Entry(seq, f"r{seq}", b"k", EntryKind.PUT, b"v")


def linked_middle() -> tuple[NodeDriver, Recorder]:
    """Node b of a -> b -> c, its links up both ways and entry 1 persisted and forwarded to c."""
    rec = Recorder()
    driver = NodeDriver(ChainCore("b", rec.store), rec, rec, lambda: 0.0)
    core = driver.core
    core.configure(CHAIN)
    core.on_hello("a", Hello(1, "a"))
    driver.step_now()  # the configuration, the Welcome to a, the Hello to c
    core.on_welcome("c", Welcome(OK, 0, 0, epoch=1))
    core.on_batch("a", Batch(1, (entry(1),), 0))
    driver.step_now()
    rec.calls.clear()
    return driver, rec


def test_an_ack_goes_upstream_while_a_sync_it_does_not_need_runs():
    driver, rec = linked_middle()
    driver.core.on_batch("a", Batch(1, (entry(2),), 0))
    step = driver.step()
    next(step)  # entry 2 applied, its sync under way
    driver.core.on_ack("c", Ack(1, 1))  # c committed entry 1, which b made durable a Ready ago
    assert driver.release_early()
    assert rec.calls == ["apply AppendEntries", "send Ack"]  # not held for entry 2's sync
    rec.sync()
    assert next(step, None) is None
    assert rec.calls == ["apply AppendEntries", "send Ack", "sync", "send Batch"]


def test_nothing_overtakes_a_ready_that_carries_a_welcome():
    driver, rec = linked_middle()
    driver.core.on_hello("a", Hello(1, "a"))  # a opens its link again: the Welcome must come first
    driver.core.on_batch("a", Batch(1, (entry(2),), 0))
    step = driver.step()
    next(step)
    driver.core.on_ack("c", Ack(1, 1))
    assert not driver.release_early()
    rec.sync()
    assert next(step, None) is None
    assert rec.calls[:3] == ["apply AppendEntries", "sync", "send Welcome"]
    driver.step_now()
    assert "send Ack" in rec.calls[3:]  # the ack follows its Welcome



def test_a_configuration_is_synced_before_the_hello_leaves():
    rec = Recorder()
    driver = NodeDriver(ChainCore("a", rec.store), rec, rec, lambda: 0.0)
    driver.core.configure(ChainConfig("main", 1, (Member("a", ""), Member("b", ""))))
    assert driver.step_now()
    assert rec.calls == ["apply SaveConfig", "sync", "send Hello"]
    assert isinstance(rec.store.state().config, ChainConfig)
    assert not driver.step_now()  # nothing left


def test_a_lease_is_read_against_the_drivers_clock():
    rec = Recorder()
    now = [5.0]
    driver = NodeDriver(ChainCore("solo", rec.store), rec, rec, lambda: now[0])
    driver.core.configure(SOLO, lease_until=10.0)
    driver.step_now()
    put(driver, 1)  # within the lease: sequenced, the reply comes with its commit
    now[0] = 10.0
    reply = driver.write(2, 1, [WriteOp("r2", b"k", OpKind.PUT, b"w")])
    assert reply is not None and reply.error.code.name == "LEASE_EXPIRED"
