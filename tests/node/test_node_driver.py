"""The node driver keeps the Ready contract: a Ready's records are applied, then synced when the
Ready requires it, and only then do its messages and replies leave and the core advance."""

from __future__ import annotations

from keychain.node.core import ChainCore, Outbound, TransferStart, VersionQuery
from keychain.node.driver import NodeDriver
from keychain.node.messages import ChainConfig, Member, MemberState, OpKind, ReadReply, WriteOp, WriteReply
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
    driver.step_now()  # the commit the advance made, and the reply it releases
    assert rec.calls == ["apply AppendEntries", "sync", "apply Commit", "reply t1 ok"]


def test_a_ready_of_commit_points_alone_is_released_without_a_sync():
    driver, rec = solo_head()
    put(driver, 1)
    driver.step_now()
    rec.calls.clear()
    assert list(driver.step()) == []  # never yields: no sync is due
    assert rec.calls == ["apply Commit", "reply t1 ok"]
    assert driver.core.has_ready() is False


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
